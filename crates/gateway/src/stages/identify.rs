//! Who the request says it is: the device id (`x-pc-device` or the device
//! cookie) and the account (header, cookie, or a verified JWT claim). Not
//! proven yet; rate limits count by them and the trust stage checks them.
//! Runs after the address checks, so a denied client costs no token
//! verification.

use http::{HeaderMap, header};

use super::{Exchange, Flow, Stage};
use crate::context::Layer;
use crate::http::headers::cookie;
use crate::runtime::Runtime;
use crate::trust::check::device_of;

/// Longer account ids are ignored rather than stored in every table.
const MAX_ACCOUNT_ID: usize = 128;

pub struct Identify;

impl Stage for Identify {
    const NAME: &'static str = "identify";
    const LAYER: Layer = Layer::Clean;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let identity = &ex.rt.config.identity;
        let headers = &ex.parts.headers;
        let ctx = &mut ex.ctx;
        ctx.device = device_of(headers, &identity.device_header).map(str::to_owned);
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        ctx.account = identity
            .account_header
            .as_deref()
            .and_then(header)
            .or_else(|| {
                identity
                    .account_cookie
                    .as_deref()
                    .and_then(|name| cookie(headers, name))
            })
            .filter(|a| usable_account(a))
            .map(str::to_owned);
        if let Some(claim) = &identity.account_claim {
            let verified = verified_token(ex.rt, headers);
            if let Ok(token) = &verified
                && let Some(account) = token.claim_text(claim).filter(|a| usable_account(a))
            {
                ctx.account = Some(account);
            }
            ctx.jwt = Some(verified);
        }
        Flow::Continue
    }
}

fn usable_account(account: &str) -> bool {
    !account.is_empty() && account.len() <= MAX_ACCOUNT_ID
}

/// The request's bearer token, verified.
pub fn verified_token(
    rt: &Runtime,
    headers: &HeaderMap,
) -> Result<portcullis_authz::VerifiedToken, portcullis_authz::TokenError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let token = portcullis_authz::bearer_token(authorization)?;
    rt.jwt.verify(token, crate::context::now_ms() / 1000)
}
