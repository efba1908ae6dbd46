//! The risk headers written for the origin (`x-wx-risk-rank` and its
//! companions, named as in the original product by default), and their
//! optional HMAC-SHA256 signature so an origin can tell the gateway's
//! verdict from a forged one. The format is in this crate's README.md.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_config::RiskConfig;
use sha2::Sha256;

use crate::RiskError;
use crate::score::{DeviceFacts, RiskAssessment, Windows};

type HmacSha256 = Hmac<Sha256>;

/// First line of the signed message; a new format gets a new label.
pub const SIGNATURE_LABEL: &str = "portcullis-risk-v1";
/// Shortest signing secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;
/// Values from clients (ids) are cut to this length.
const MAX_VALUE_BYTES: usize = 128;

/// What the headers say besides the assessment.
#[derive(Debug, Clone, Copy)]
pub struct HeaderFacts<'a> {
    /// From the clearance; `None` sends `unverified` as the security status.
    pub device: Option<DeviceFacts<'a>>,
    pub device_id: Option<&'a str>,
    /// Sent as the `uv` headers when the device id is known.
    pub accounts_per_device: Windows,
    /// The clearance id (`cid`).
    pub cid: Option<&'a str>,
    pub client_ip: IpAddr,
    pub request_id: &'a str,
    /// Method and target (path and query) as sent to the origin; signed.
    pub method: &'a str,
    pub target: &'a str,
    /// Add the reasons header (debug routes only).
    pub debug: bool,
    pub now: SystemTime,
}

/// Positions in [`RiskHeaders::names`], in the order the headers are written.
#[derive(Clone, Copy)]
enum Slot {
    RiskRank,
    DeviceRiskRank,
    Platform,
    SecurityStatus,
    Device,
    Uv1d,
    Uv7d,
    Uv30d,
    SubSession,
    ClientIp,
    CallId,
    Reasons,
    Signature,
}

/// The compiled header names and signing key.
#[derive(Clone)]
pub struct RiskHeaders {
    names: [HeaderName; 13],
    mac: Option<HmacSha256>,
}

impl fmt::Debug for RiskHeaders {
    // The key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiskHeaders")
            .field("names", &self.names)
            .field("signed", &self.mac.is_some())
            .finish()
    }
}

impl RiskHeaders {
    /// `secret` is required when `sign_headers` is on (see [`signing_secret`]).
    pub fn new(config: &RiskConfig, secret: Option<&[u8]>) -> Result<RiskHeaders, RiskError> {
        let mut names = Vec::with_capacity(13);
        for (_, name) in config.headers.all() {
            names.push(
                HeaderName::from_str(name).map_err(|_| RiskError::HeaderName(name.to_string()))?,
            );
        }
        let names = <[HeaderName; 13]>::try_from(names)
            .map_err(|_| RiskError::Config("risk.headers: 13 names expected".into()))?;
        let mac = match (config.sign_headers, secret) {
            (false, _) => None,
            (true, None) => {
                return Err(RiskError::MissingSecret(config.signing_secret_env.clone()));
            }
            (true, Some(secret)) => Some(keyed(secret)?),
        };
        Ok(RiskHeaders { names, mac })
    }

    /// Every header this writes, to remove client copies before writing.
    pub fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// Removes client-sent copies of every risk header: a client must never
    /// set its own risk.
    pub fn strip(&self, headers: &mut HeaderMap) {
        for name in &self.names {
            headers.remove(name);
        }
    }

    /// The headers for the origin, signature last when signing is on.
    pub fn build(
        &self,
        assessment: &RiskAssessment<'_>,
        facts: &HeaderFacts<'_>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(13);
        let mut push = |slot: Slot, value: Option<HeaderValue>| {
            if let Some(value) = value {
                out.push((self.names[slot as usize].clone(), value));
            }
        };
        push(Slot::RiskRank, Some(number(assessment.rank.into())));
        push(
            Slot::DeviceRiskRank,
            Some(number(assessment.device_rank.into())),
        );
        push(Slot::Platform, facts.device.and_then(|d| text(d.platform)));
        push(Slot::SecurityStatus, security_status(facts.device.as_ref()));
        push(Slot::Device, facts.device_id.and_then(text));
        if facts.device_id.is_some() {
            let uv = facts.accounts_per_device;
            push(Slot::Uv1d, Some(number(uv.d1)));
            push(Slot::Uv7d, Some(number(uv.d7)));
            push(Slot::Uv30d, Some(number(uv.d30)));
        }
        push(Slot::SubSession, facts.cid.and_then(text));
        push(Slot::ClientIp, text(&facts.client_ip.to_string()));
        push(Slot::CallId, text(facts.request_id));
        if facts.debug && !assessment.reasons.is_empty() {
            push(Slot::Reasons, reasons(assessment));
        }
        if let Some(mac) = &self.mac {
            let signature = sign_with(
                mac.clone(),
                unix_secs(facts.now),
                facts.method,
                facts.target,
                out.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            );
            if let Ok(value) = HeaderValue::from_str(&signature) {
                out.push((self.names[Slot::Signature as usize].clone(), value));
            }
        }
        out
    }
}

/// Reads the signing secret from the variable `signing_secret_env` names,
/// when `sign_headers` is on. The value is never logged.
pub fn signing_secret(config: &RiskConfig) -> Result<Option<Vec<u8>>, RiskError> {
    if !config.sign_headers {
        return Ok(None);
    }
    match std::env::var(&config.signing_secret_env) {
        Ok(value) if !value.is_empty() => Ok(Some(value.into_bytes())),
        _ => Err(RiskError::MissingSecret(config.signing_secret_env.clone())),
    }
}

fn keyed(secret: &[u8]) -> Result<HmacSha256, RiskError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(RiskError::WeakSecret);
    }
    HmacSha256::new_from_slice(secret).map_err(|_| RiskError::WeakSecret)
}

fn number(n: u32) -> HeaderValue {
    HeaderValue::from(n)
}

/// A header-safe copy: visible ASCII only (others become `_`), cut to 128 bytes.
fn text(value: &str) -> Option<HeaderValue> {
    let safe: Vec<u8> = value
        .bytes()
        .take(MAX_VALUE_BYTES)
        .map(|b| if (0x21..0x7f).contains(&b) { b } else { b'_' })
        .collect();
    if safe.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&safe).ok()
}

/// `unverified` without a clearance, `ok` with a clean one, else its flags.
fn security_status(device: Option<&DeviceFacts<'_>>) -> Option<HeaderValue> {
    let Some(device) = device else {
        return Some(HeaderValue::from_static("unverified"));
    };
    if device.flags.is_empty() {
        return Some(HeaderValue::from_static("ok"));
    }
    text(&device.flags.names().collect::<Vec<_>>().join(","))
}

/// `name:points` of the top reasons, comma-separated; names reduced to `[A-Za-z0-9_.-]`.
fn reasons(assessment: &RiskAssessment<'_>) -> Option<HeaderValue> {
    let mut value = String::with_capacity(96);
    for (i, reason) in assessment.reasons.iter().enumerate() {
        if i > 0 {
            value.push(',');
        }
        value.extend(reason.name.chars().take(48).map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        }));
        let _ = write!(value, ":{}", reason.points);
    }
    HeaderValue::from_str(&value).ok()
}

fn unix_secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The signature header value: `t=<unix s>;h=<names>;v1=<hex HMAC-SHA256>`
/// over the canonical message (README.md): the label, `t`, the method and
/// the target, each on its line, then `name:value` per signed header, every
/// line ending in `\n`.
pub fn sign<'h>(
    secret: &[u8],
    t: u64,
    method: &str,
    target: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
) -> Result<String, RiskError> {
    Ok(sign_with(keyed(secret)?, t, method, target, headers))
}

fn sign_with<'h>(
    mut mac: HmacSha256,
    t: u64,
    method: &str,
    target: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
) -> String {
    feed(&mut mac, t, method, target, headers.clone());
    let tag = mac.finalize().into_bytes();
    let mut out = format!("t={t};h=");
    for (i, (name, _)) in headers.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
    }
    out.push_str(";v1=");
    for byte in tag {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn feed<'h>(
    mac: &mut HmacSha256,
    t: u64,
    method: &str,
    target: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
) {
    for line in [SIGNATURE_LABEL, &t.to_string(), method, target] {
        mac.update(line.as_bytes());
        mac.update(b"\n");
    }
    for (name, value) in headers {
        mac.update(name.as_bytes());
        mac.update(b":");
        mac.update(value);
        mac.update(b"\n");
    }
}

/// Why an origin should not trust a set of risk headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("risk signature is missing or malformed")]
    Malformed,
    #[error("risk signature is older than allowed (or from the future)")]
    Stale,
    #[error("signed header {0} is missing or repeated")]
    MissingHeader(String),
    #[error("risk signature does not match")]
    Mismatch,
}

/// Checks a signature header value against the request's headers, as an
/// origin written in Rust would. `max_age` bounds clock skew both ways.
/// Only the headers listed in the signature's `h=` are vouched for.
pub fn verify_signature(
    secret: &[u8],
    signature: &str,
    method: &str,
    target: &str,
    headers: &HeaderMap,
    now: SystemTime,
    max_age: Duration,
) -> Result<(), VerifyError> {
    let (mut t, mut names, mut tag) = (None, None, None);
    for part in signature.split(';') {
        match part.split_once('=') {
            Some(("t", v)) if t.is_none() => t = Some(v.parse::<u64>().ok()),
            Some(("h", v)) if names.is_none() => names = Some(v),
            Some(("v1", v)) if tag.is_none() => tag = Some(v),
            _ => return Err(VerifyError::Malformed),
        }
    }
    let (Some(Some(t)), Some(names), Some(tag)) = (t, names, tag) else {
        return Err(VerifyError::Malformed);
    };
    let tag = decode_hex(tag).ok_or(VerifyError::Malformed)?;
    if unix_secs(now).abs_diff(t) > max_age.as_secs() {
        return Err(VerifyError::Stale);
    }
    let mut signed = Vec::new();
    for name in names.split(',') {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => signed.push((name, value.as_bytes())),
            _ => return Err(VerifyError::MissingHeader(name.to_string())),
        }
    }
    let mut mac = keyed(secret).map_err(|_| VerifyError::Mismatch)?;
    feed(&mut mac, t, method, target, signed);
    mac.verify_slice(&tag).map_err(|_| VerifyError::Mismatch)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some((hex_digit(*hi)? << 4) | hex_digit(*lo)?),
            _ => None,
        })
        .collect()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{DeviceFlags, Evidence, Reason, RiskEngine, RiskInput, SignalRef};

    const SECRET: &[u8] = b"portcullis-risk-readme-test-vector-secret";

    fn facts<'a>() -> HeaderFacts<'a> {
        HeaderFacts {
            device: Some(DeviceFacts {
                platform: "ios",
                flags: DeviceFlags::empty(),
                risk_at_issue: 0,
            }),
            device_id: Some("d-4f1c2a9e"),
            accounts_per_device: Windows {
                d1: 1,
                d7: 2,
                d30: 2,
            },
            cid: Some("q3JxV0hZc2VjcmV0Y2lkMQ"),
            client_ip: IpAddr::from([203, 0, 113, 7]),
            request_id: "01HF3K9Z6T",
            method: "POST",
            target: "/api/coupon/claim?id=7",
            debug: false,
            now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    fn signed_config() -> RiskConfig {
        RiskConfig {
            sign_headers: true,
            ..RiskConfig::default()
        }
    }

    fn to_map(headers: &[(HeaderName, HeaderValue)]) -> HeaderMap {
        headers.iter().cloned().collect()
    }

    fn assessment<'a>() -> RiskAssessment<'a> {
        let engine = RiskEngine::new(&RiskConfig::default()).expect("valid");
        let signals = [SignalRef {
            name: "rate_limit",
            weight: 30,
            evidence: "coupon-per-device",
        }];
        let input = RiskInput {
            signals: &signals,
            ..RiskInput::default()
        };
        let a = engine.assess(&input);
        // Detach from the local signals: the headers only need the rank and names.
        RiskAssessment {
            reasons: Default::default(),
            ..a
        }
    }

    #[test]
    fn headers_use_the_original_names_and_order() {
        let writer = RiskHeaders::new(&RiskConfig::default(), None).expect("valid");
        let headers = writer.build(&assessment(), &facts());
        let lines: Vec<String> = headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
            .collect();
        assert_eq!(
            lines,
            [
                "x-wx-risk-rank: 1",
                "x-wx-device-risk-rank: 0",
                "x-wx-platform: ios",
                "x-wx-device-security-status: ok",
                "x-wx-device: d-4f1c2a9e",
                "x-wx-device-uv-1d: 1",
                "x-wx-device-uv-7d: 2",
                "x-wx-device-uv-30d: 2",
                "x-wx-sub-session: q3JxV0hZc2VjcmV0Y2lkMQ",
                "x-wx-client-ip: 203.0.113.7",
                "x-wx-call-id: 01HF3K9Z6T",
            ]
        );
    }

    #[test]
    fn without_clearance_the_device_is_unverified_and_ids_are_sanitised() {
        let writer = RiskHeaders::new(&RiskConfig::default(), None).expect("valid");
        let f = HeaderFacts {
            device: None,
            device_id: None,
            cid: None,
            request_id: "id with spaces\r\nx-wx-risk-rank: 0",
            ..facts()
        };
        let map = to_map(&writer.build(&assessment(), &f));
        assert_eq!(map["x-wx-device-security-status"], "unverified");
        assert!(!map.contains_key("x-wx-platform"));
        assert!(!map.contains_key("x-wx-device-uv-1d"));
        assert_eq!(map["x-wx-call-id"], "id_with_spaces__x-wx-risk-rank:_0");
        assert_eq!(map.get_all("x-wx-risk-rank").iter().count(), 1);
    }

    #[test]
    fn flags_show_in_the_security_status() {
        let writer = RiskHeaders::new(&RiskConfig::default(), None).expect("valid");
        let f = HeaderFacts {
            device: Some(DeviceFacts {
                platform: "android",
                flags: DeviceFlags::EMULATOR.union(DeviceFlags::HOOK),
                risk_at_issue: 3,
            }),
            ..facts()
        };
        let map = to_map(&writer.build(&assessment(), &f));
        assert_eq!(map["x-wx-device-security-status"], "emulator,hook");
    }

    #[test]
    fn reasons_only_on_debug_routes_and_header_safe() {
        let writer = RiskHeaders::new(&RiskConfig::default(), None).expect("valid");
        let mut a = assessment();
        let engine = RiskEngine::new(&RiskConfig::default()).expect("valid");
        let signals = [("sqli", 5, "x"), ("weird name\n", 7, "y")];
        let scored = engine.assess(&RiskInput {
            signals: &signals,
            ..RiskInput::default()
        });
        a.reasons = scored.reasons;
        let plain = to_map(&writer.build(&a, &facts()));
        assert!(!plain.contains_key("x-wx-risk-reasons"));
        let debug = to_map(&writer.build(
            &a,
            &HeaderFacts {
                debug: true,
                ..facts()
            },
        ));
        assert_eq!(debug["x-wx-risk-reasons"], "sqli:100,weird_name_:7");
        assert_eq!(
            scored.reasons[0],
            Reason {
                name: "sqli",
                points: 100,
                evidence: Evidence::Text("x")
            }
        );
    }

    #[test]
    fn strip_removes_client_copies_of_every_header() {
        let writer = RiskHeaders::new(&RiskConfig::default(), None).expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert("x-wx-risk-rank", HeaderValue::from_static("0"));
        headers.append("x-wx-risk-rank", HeaderValue::from_static("0"));
        headers.insert("x-wx-risk-signature", HeaderValue::from_static("t=1"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        writer.strip(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn configured_names_are_used() {
        let mut config = RiskConfig::default();
        config.headers.risk_rank = "x-risk".into();
        let writer = RiskHeaders::new(&config, None).expect("valid");
        let map = to_map(&writer.build(&assessment(), &facts()));
        assert_eq!(map["x-risk"], "1");
        assert!(!map.contains_key("x-wx-risk-rank"));
    }

    #[test]
    fn signing_requires_a_strong_secret() {
        assert!(matches!(
            RiskHeaders::new(&signed_config(), None),
            Err(RiskError::MissingSecret(_))
        ));
        assert!(matches!(
            RiskHeaders::new(&signed_config(), Some(b"short")),
            Err(RiskError::WeakSecret)
        ));
        let writer = RiskHeaders::new(&signed_config(), Some(SECRET)).expect("valid");
        assert!(!format!("{writer:?}").contains("readme"));
    }

    #[test]
    fn signed_headers_verify_and_any_change_is_caught() {
        let writer = RiskHeaders::new(&signed_config(), Some(SECRET)).expect("valid");
        let f = facts();
        let headers = to_map(&writer.build(&assessment(), &f));
        let signature = headers["x-wx-risk-signature"].to_str().expect("ascii");
        let check = |headers: &HeaderMap, method: &str, target: &str, now_s: u64, secret: &[u8]| {
            verify_signature(
                secret,
                signature,
                method,
                target,
                headers,
                UNIX_EPOCH + Duration::from_secs(now_s),
                Duration::from_secs(300),
            )
        };
        let now = 1_700_000_100;
        assert_eq!(check(&headers, f.method, f.target, now, SECRET), Ok(()));
        let mut forged = headers.clone();
        forged.insert("x-wx-risk-rank", HeaderValue::from_static("0"));
        assert_eq!(
            check(&forged, f.method, f.target, now, SECRET),
            Err(VerifyError::Mismatch)
        );
        let mut doubled = headers.clone();
        doubled.append("x-wx-risk-rank", HeaderValue::from_static("0"));
        assert!(matches!(
            check(&doubled, f.method, f.target, now, SECRET),
            Err(VerifyError::MissingHeader(_))
        ));
        assert_eq!(
            check(&headers, "POST", "/api/other", now, SECRET),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(&headers, f.method, f.target, now + 400, SECRET),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check(
                &headers,
                f.method,
                f.target,
                now,
                b"another-secret-of-at-least-32-bytes!!"
            ),
            Err(VerifyError::Mismatch)
        );
        for bad in [
            "",
            "t=1",
            "t=x;h=a;v1=00",
            "t=1;h=a;v1=0g",
            "t=1;t=2;h=a;v1=00",
        ] {
            assert_eq!(
                verify_signature(
                    SECRET,
                    bad,
                    "GET",
                    "/",
                    &headers,
                    f.now,
                    Duration::from_secs(300)
                ),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn readme_test_vector_is_what_the_signer_writes() {
        let vector = crate::readme_vector::parse();
        let writer =
            RiskHeaders::new(&signed_config(), Some(vector.secret.as_bytes())).expect("valid");
        let f = HeaderFacts {
            method: vector.method,
            target: vector.target,
            now: UNIX_EPOCH + Duration::from_secs(vector.now),
            ..facts()
        };
        let built: Vec<(String, String)> = writer
            .build(&assessment(), &f)
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        let expected: Vec<(String, String)> = vector
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(built, expected);
    }
}
