//! Layer 2 checks of a request on a core URL: its clearance (MAC, expiry,
//! device, network, revocation) and, where the policy asks, its signature
//! (RFC 9421), body digest (RFC 9530) and nonce (replay).

use std::time::Duration;

use http::HeaderMap;
use http::request::Parts;
use portcullis_challenge::signature::CLEARANCE_HEADER;
use portcullis_challenge::{ClearanceCheck, ClearanceError, RequestTarget, SignatureError};
use portcullis_config::ClearanceRequirement;
use portcullis_state::StateStore;

use super::{ClientTrust, DEVICE_COOKIE};
use crate::context::now_ms;
use crate::context::{ChallengeState, Demand, RequestContext};
use crate::http::headers::cookie;

/// The state key marking a revoked clearance.
pub fn revoked_key(cid: &str) -> String {
    format!("pc:revoked:{cid}")
}

/// The device id a request carries: the SDK's header (`x-pc-device` unless
/// `[identity]` names another), else the cookie the interstitial set.
pub fn device_of<'h>(headers: &'h HeaderMap, header: &str) -> Option<&'h str> {
    headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .or_else(|| cookie(headers, DEVICE_COOKIE))
        .filter(|d| portcullis_challenge::keys::valid_device_id(d))
}

/// What the policy asks of the client.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    pub clearance: ClearanceRequirement,
    pub signature: bool,
}

/// Checks the clearance and signature of a request, adding a signal for
/// every failure and recording what the client proved in `ctx`. `host` is
/// the request's authority; `body` is the whole body, or `None` when only a
/// prefix was read.
pub async fn check(
    trust: &ClientTrust,
    state: &dyn StateStore,
    ctx: &mut RequestContext,
    parts: &Parts,
    host: &str,
    body: Option<&[u8]>,
    need: Requirement,
) {
    if need.clearance == ClearanceRequirement::Off {
        return;
    }
    let required = need.clearance == ClearanceRequirement::Required;
    // Where a clearance is required, its absence or failure is a challenge;
    // where it is optional, evidence for the risk rank.
    let demand = |code| {
        if required {
            Demand::Challenge { code }
        } else {
            Demand::Tag
        }
    };
    let fail = |ctx: &mut RequestContext, code: &'static str, evidence: String| {
        ctx.add(code, evidence, demand(code));
    };
    let header_token = parts
        .headers
        .get(CLEARANCE_HEADER)
        .and_then(|v| v.to_str().ok());
    // The cookie the interstitial sets serves browser navigations only: a
    // script's call carries its clearance in the header, and signs.
    let cookie_token = || {
        crate::policy::is_navigation(&parts.headers)
            .then(|| cookie(&parts.headers, &trust.cookie))
            .flatten()
    };
    let (token, via_cookie) = match header_token {
        Some(token) => (token, false),
        None => match cookie_token() {
            Some(token) => (token, true),
            None => {
                let missing = demand("clearance_required");
                ctx.add("clearance_missing", "", missing);
                if need.signature {
                    // A route whose clients sign every call: this client does not.
                    ctx.add("signature_missing", "", Demand::Tag);
                }
                return;
            }
        },
    };
    let now = now_ms();
    let binding = ClearanceCheck {
        device_id: Some(ctx.device.as_deref().unwrap_or("")),
        // The network comes last (`network_check`), after the nonce.
        ip: None,
    };
    let claims = match trust.authority.verify(token, now, binding) {
        Ok(claims) => claims,
        Err(e) => {
            ctx.challenge = match e {
                ClearanceError::Expired => ChallengeState::Expired,
                _ => ChallengeState::Failed,
            };
            fail(ctx, e.code(), e.to_string());
            return;
        }
    };
    let cid = claims.cid.to_string();
    match state.get(&revoked_key(&cid)).await {
        Ok(Some(_)) => {
            ctx.challenge = ChallengeState::Failed;
            fail(ctx, "clearance_revoked", cid);
            return;
        }
        Ok(None) => {}
        // Fail open: a state outage must not lock every client out.
        Err(e) => tracing::warn!(error = %e, "cannot check clearance revocation"),
    }
    ctx.challenge = ChallengeState::Passed {
        age_s: now.saturating_sub(claims.issued_ms) / 1000,
    };
    let key = trust.authority.signing_key(&claims);
    ctx.clearance = Some(claims);
    if !need.signature {
        network_check(trust, ctx, required);
        return;
    }
    if via_cookie {
        // A navigation cannot sign: the cookie never stands in for a signature.
        refuse(
            ctx,
            403,
            "signature_missing",
            "a cookie clearance on a signed route".into(),
        );
        return;
    }
    let Ok(key) = key else {
        fail(ctx, "clearance_bad_signature", "retired key".into());
        return;
    };
    let Some(body) = body else {
        refuse(
            ctx,
            403,
            "digest_unverifiable",
            "body larger than inspect_body_bytes".into(),
        );
        return;
    };
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let scheme = parts.uri.scheme_str().unwrap_or("http");
    let target = RequestTarget::from_origin_form(parts.method.as_str(), scheme, host, target);
    let verified =
        trust
            .verifier
            .verify(&target, &parts.headers, Some(body), &key, &cid, now / 1000);
    match verified {
        Ok(signature) => {
            let ttl = Duration::from_millis(trust.verifier.replay_ttl_ms());
            match state.put_if_absent(&signature.replay_key(), b"", ttl).await {
                Ok(true) => network_check(trust, ctx, required),
                Ok(false) => refuse(ctx, 403, "signature_replayed", signature.nonce),
                // A nonce that cannot be recorded cannot be refused next time:
                // the signed route fails closed (`[state.redis] nonces_when_down`).
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record a signature nonce");
                    refuse(ctx, 503, "state_unavailable", e.to_string());
                }
            }
        }
        Err(e) => {
            let evidence = match e {
                SignatureError::Invalid(reason) => reason.to_string(),
                other => other.to_string(),
            };
            refuse(ctx, e.http_status(), e.code(), evidence);
        }
    }
}

/// Under `challenge.bind_network`, a clearance used from another network
/// than its own fails. Checked after the signature's nonce, so that a
/// replay is refused as a replay wherever it comes from.
fn network_check(trust: &ClientTrust, ctx: &mut RequestContext, required: bool) {
    let Some(claims) = &ctx.clearance else {
        return;
    };
    if !trust.bind_network || claims.ip_prefix.contains(ctx.client_ip) {
        return;
    }
    let code = "clearance_wrong_network";
    let evidence = format!("issued to {}", claims.ip_prefix);
    let demand = if required {
        Demand::Challenge { code }
    } else {
        Demand::Tag
    };
    ctx.clearance = None;
    ctx.challenge = ChallengeState::Failed;
    ctx.add(code, evidence, demand);
}

fn refuse(ctx: &mut RequestContext, status: u16, code: &'static str, evidence: String) {
    ctx.add(code, evidence, Demand::Refuse { status, code });
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use portcullis_challenge::signature::{SdkCall, sdk_headers};
    use portcullis_challenge::{ClientBinding, MintedClearance, Platform};
    use portcullis_config::ChallengeConfig;
    use portcullis_state::{MemoryStore, MemoryStoreOptions};

    use super::*;

    const DEVICE: &str = "dGVzdC1kZXZpY2UtaWQtMDE";
    const BODY: &[u8] = br#"{"campaign":"spring"}"#;

    fn trust() -> ClientTrust {
        let config = ChallengeConfig {
            bind_network: true,
            ..ChallengeConfig::default()
        };
        ClientTrust::new(&config).expect("challenge config")
    }

    /// A coupon claim signed with `minted`'s key under `nonce`.
    fn claim(minted: &MintedClearance, nonce: &str) -> Parts {
        let cid = minted.claims.cid.to_string();
        let call = SdkCall {
            method: "POST",
            target: "/api/claim",
            body: BODY,
            created: now_ms() / 1000,
            nonce,
        };
        let headers = sdk_headers(&minted.signing_key, &cid, &minted.token, &call).expect("sign");
        let mut request = http::Request::post("/api/claim");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(()).expect("request");
        request.into_parts().0
    }

    async fn checked(
        trust: &ClientTrust,
        state: &MemoryStore,
        ip: IpAddr,
        parts: &Parts,
    ) -> RequestContext {
        let mut ctx = RequestContext::new("rid".into(), ip, ip);
        ctx.device = Some(DEVICE.into());
        let need = Requirement {
            clearance: ClearanceRequirement::Optional,
            signature: true,
        };
        check(trust, state, &mut ctx, parts, "gateway", Some(BODY), need).await;
        ctx
    }

    fn names(ctx: &RequestContext) -> Vec<&'static str> {
        ctx.signals.iter().map(|s| s.name).collect()
    }

    #[tokio::test]
    async fn a_replay_from_another_network_is_refused_as_a_replay() {
        let trust = trust();
        let state = MemoryStore::new(MemoryStoreOptions::default());
        let phone: IpAddr = "27.10.1.5".parse().expect("ip");
        let client = ClientBinding {
            ip: phone,
            device_id: DEVICE,
        };
        let minted = trust
            .authority
            .mint(&client, Platform::Ios, 0, now_ms())
            .expect("mint");
        let parts = claim(&minted, "bm9uY2UtMDAwMDAwMDE");
        let ctx = checked(&trust, &state, phone, &parts).await;
        assert!(!ctx.is_stopped(), "{:?}", names(&ctx));
        assert!(ctx.clearance.is_some());

        // The captured request, sent again from another network: its nonce
        // is checked before its network, so it is refused as what it is.
        let elsewhere: IpAddr = "112.5.1.1".parse().expect("ip");
        let ctx = checked(&trust, &state, elsewhere, &parts).await;
        assert!(ctx.is_stopped());
        assert_eq!(names(&ctx), ["signature_replayed"]);

        // A fresh signature from the other network is a network change.
        let moved = claim(&minted, "bm9uY2UtMDAwMDAwMDI");
        let ctx = checked(&trust, &state, elsewhere, &moved).await;
        assert_eq!(names(&ctx), ["clearance_wrong_network"]);
        assert!(
            !ctx.is_stopped(),
            "optional clearance: evidence, not a refusal"
        );
    }
}
