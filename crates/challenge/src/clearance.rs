//! Clearance tokens: what a client gets for a solved challenge, sent on
//! every protected request in `x-pc-clearance`.
//!
//! A compact binary token, base64url, HMAC-SHA256 under a keyring key
//! (see PROTOCOL.md for the layout). Revocation is the caller's: check
//! [`ClearanceClaims::cid`] against its revocation set.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Serialize;

use crate::env::Platform;
use crate::keys::{
    ClientBinding, IpPrefix, Keyring, NetworkBinding, Reader, SigningKey, split_tag,
    valid_device_id,
};

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"portcullis/v1/clearance\0";
/// Longest token accepted (base64url characters).
pub const MAX_TOKEN_LEN: usize = 256;

/// Errors minting or verifying a clearance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClearanceError {
    #[error("clearance token is malformed")]
    Malformed,
    #[error("clearance signature is invalid")]
    BadSignature,
    #[error("clearance expired")]
    Expired,
    #[error("clearance belongs to another device")]
    WrongDevice,
    #[error("clearance was issued to another network")]
    WrongNetwork,
    #[error("device id is invalid")]
    InvalidDeviceId,
}

impl ClearanceError {
    /// Stable snake_case code for events and JSON errors.
    pub fn code(&self) -> &'static str {
        match self {
            ClearanceError::Malformed => "clearance_malformed",
            ClearanceError::BadSignature => "clearance_bad_signature",
            ClearanceError::Expired => "clearance_expired",
            ClearanceError::WrongDevice => "clearance_wrong_device",
            ClearanceError::WrongNetwork => "clearance_wrong_network",
            ClearanceError::InvalidDeviceId => "invalid_device",
        }
    }

    /// HTTP status for a protected request refused for this reason: 401,
    /// which makes the SDK run the check again (PROTOCOL.md).
    pub fn http_status(&self) -> u16 {
        401
    }
}

/// Challenge id: 16 random bytes, shown as 22 base64url characters. It
/// names one clearance in every event, and is the request signature keyid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid(pub [u8; 16]);

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 22];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = ClearanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        if s.len() != 22 {
            return Err(ClearanceError::Malformed);
        }
        match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
            Ok(16) => Ok(Cid(out)),
            _ => Err(ClearanceError::Malformed),
        }
    }
}

impl Serialize for Cid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a clearance says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClearanceClaims {
    pub cid: Cid,
    pub key_id: u8,
    pub device_id: String,
    pub platform: Platform,
    #[serde(serialize_with = "display")]
    pub ip_prefix: IpPrefix,
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// Risk rank (0-4) at issue.
    pub risk: u8,
}

fn display<S: serde::Serializer>(v: &IpPrefix, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A freshly minted clearance: the token, and the signing key that is
/// handed to the client once and never again.
#[derive(Debug, Clone)]
pub struct MintedClearance {
    pub claims: ClearanceClaims,
    pub token: String,
    pub signing_key: SigningKey,
}

/// The JSON body of a successful `POST /.portcullis/verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyResponse {
    pub cid: String,
    pub clearance: String,
    /// base64url, 32 bytes.
    pub signing_key: String,
    pub expires: u64,
    pub risk: u8,
    pub server_time: u64,
}

impl MintedClearance {
    pub fn response(&self, now_ms: u64) -> VerifyResponse {
        VerifyResponse {
            cid: self.claims.cid.to_string(),
            clearance: self.token.clone(),
            signing_key: self.signing_key.to_base64url(),
            expires: self.claims.expires_ms,
            risk: self.claims.risk,
            server_time: now_ms,
        }
    }
}

/// Which bindings [`ClearanceAuthority::verify`] checks.
#[derive(Debug, Clone, Copy)]
pub struct ClearanceCheck<'a> {
    /// The device id the request carries (`x-pc-device`); `None` skips.
    pub device_id: Option<&'a str>,
    /// The client address; `None` skips the network check (e.g. a policy
    /// that tolerates mobile clients moving between networks).
    pub ip: Option<IpAddr>,
}

impl<'a> From<&ClientBinding<'a>> for ClearanceCheck<'a> {
    fn from(c: &ClientBinding<'a>) -> Self {
        Self {
            device_id: Some(c.device_id),
            ip: Some(c.ip),
        }
    }
}

/// Mints and verifies clearances.
#[derive(Debug, Clone)]
pub struct ClearanceAuthority {
    keys: Keyring,
    /// Lifetime (default 4 h: an app session).
    pub ttl_ms: u64,
    pub network: NetworkBinding,
}

impl ClearanceAuthority {
    pub fn new(keys: Keyring) -> Self {
        Self {
            keys,
            ttl_ms: 4 * 3600 * 1000,
            network: NetworkBinding::default(),
        }
    }

    /// Mints a clearance for `client` with a random cid.
    pub fn mint(
        &self,
        client: &ClientBinding<'_>,
        platform: Platform,
        risk: u8,
        now_ms: u64,
    ) -> Result<MintedClearance, ClearanceError> {
        self.mint_with(client, platform, risk, now_ms, &mut rand::rng())
    }

    /// [`mint`](Self::mint) with an explicit RNG (deterministic tests).
    pub fn mint_with(
        &self,
        client: &ClientBinding<'_>,
        platform: Platform,
        risk: u8,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> Result<MintedClearance, ClearanceError> {
        if !valid_device_id(client.device_id) {
            return Err(ClearanceError::InvalidDeviceId);
        }
        let mut cid = [0u8; 16];
        rng.fill_bytes(&mut cid);
        let key = self.keys.current();
        let claims = ClearanceClaims {
            cid: Cid(cid),
            key_id: key.id(),
            device_id: client.device_id.to_owned(),
            platform,
            ip_prefix: self.network.prefix(client.ip),
            issued_ms: now_ms,
            expires_ms: now_ms.saturating_add(self.ttl_ms),
            risk: risk.min(4),
        };
        let mut body = Vec::with_capacity(64 + claims.device_id.len() + 32);
        body.extend_from_slice(&[VERSION, claims.key_id]);
        body.extend_from_slice(&cid);
        body.extend_from_slice(&claims.issued_ms.to_be_bytes());
        body.extend_from_slice(&claims.expires_ms.to_be_bytes());
        body.push(claims.risk);
        body.push(platform.to_wire());
        body.extend_from_slice(&claims.ip_prefix.to_wire());
        body.push(claims.device_id.len() as u8);
        body.extend_from_slice(claims.device_id.as_bytes());
        let tag = key.tag(DOMAIN, &body);
        body.extend_from_slice(&tag);
        Ok(MintedClearance {
            signing_key: key.signing_key(&cid),
            token: URL_SAFE_NO_PAD.encode(&body),
            claims,
        })
    }

    /// Verifies a token: format, MAC (constant time), expiry, then the
    /// device and network bindings that `check` asks for.
    pub fn verify(
        &self,
        token: &str,
        now_ms: u64,
        check: ClearanceCheck<'_>,
    ) -> Result<ClearanceClaims, ClearanceError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ClearanceError::Malformed);
        }
        let mut buf = [0u8; MAX_TOKEN_LEN];
        let n = URL_SAFE_NO_PAD
            .decode_slice(token, &mut buf)
            .map_err(|_| ClearanceError::Malformed)?;
        let (body, tag) = split_tag(&buf[..n]).ok_or(ClearanceError::Malformed)?;
        let mut r = Reader::new(body);
        let (Some(VERSION), Some(kid)) = (r.u8(), r.u8()) else {
            return Err(ClearanceError::Malformed);
        };
        let key = self.keys.get(kid).ok_or(ClearanceError::BadSignature)?;
        if !key.check(DOMAIN, body, tag) {
            return Err(ClearanceError::BadSignature);
        }
        let claims = (|| {
            let cid = Cid(r.array()?);
            let issued_ms = r.u64()?;
            let expires_ms = r.u64()?;
            let risk = r.u8()?;
            let platform = Platform::from_wire(r.u8()?)?;
            let ip_prefix = r.prefix()?;
            let device_id = r.device_id()?.to_owned();
            r.is_empty().then_some(ClearanceClaims {
                cid,
                key_id: kid,
                device_id,
                platform,
                ip_prefix,
                issued_ms,
                expires_ms,
                risk,
            })
        })()
        .ok_or(ClearanceError::Malformed)?;
        if now_ms >= claims.expires_ms {
            return Err(ClearanceError::Expired);
        }
        if let Some(dev) = check.device_id {
            let same: bool =
                subtle::ConstantTimeEq::ct_eq(dev.as_bytes(), claims.device_id.as_bytes()).into();
            if !same {
                return Err(ClearanceError::WrongDevice);
            }
        }
        if let Some(ip) = check.ip {
            if !claims.ip_prefix.contains(ip) {
                return Err(ClearanceError::WrongNetwork);
            }
        }
        Ok(claims)
    }

    /// The signing key of a verified clearance (re-derived, never stored).
    pub fn signing_key(&self, claims: &ClearanceClaims) -> Result<SigningKey, ClearanceError> {
        let key = self
            .keys
            .get(claims.key_id)
            .ok_or(ClearanceError::BadSignature)?;
        Ok(key.signing_key(&claims.cid.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> ClearanceAuthority {
        ClearanceAuthority::new(Keyring::new(1, &[5u8; 32]).unwrap())
    }

    fn client() -> ClientBinding<'static> {
        ClientBinding {
            ip: "192.0.2.10".parse().unwrap(),
            device_id: "dev-A",
        }
    }

    #[test]
    fn mint_and_verify() {
        let auth = authority();
        let m = auth.mint(&client(), Platform::Android, 1, 1_000).unwrap();
        assert!(m.token.len() < 200, "{}", m.token.len());
        let c = auth.verify(&m.token, 2_000, (&client()).into()).unwrap();
        assert_eq!(c, m.claims);
        assert_eq!(c.ip_prefix.to_string(), "192.0.2.0/24");
        assert_eq!(auth.signing_key(&c).unwrap(), m.signing_key);
        let cid: Cid = c.cid.to_string().parse().unwrap();
        assert_eq!(cid, c.cid);
        let json = serde_json::to_value(m.response(5)).unwrap();
        assert_eq!(json["cid"], c.cid.to_string());
        assert_eq!(json["signing_key"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn rejections() {
        let auth = authority();
        let m = auth.mint(&client(), Platform::Ios, 0, 1_000).unwrap();
        let ttl = auth.ttl_ms;
        assert_eq!(
            auth.verify(&m.token, 1_000 + ttl, (&client()).into()),
            Err(ClearanceError::Expired)
        );
        let other_dev = ClearanceCheck {
            device_id: Some("dev-B"),
            ip: None,
        };
        assert_eq!(
            auth.verify(&m.token, 2_000, other_dev),
            Err(ClearanceError::WrongDevice)
        );
        let other_net = ClearanceCheck {
            device_id: Some("dev-A"),
            ip: Some("192.0.3.10".parse().unwrap()),
        };
        assert_eq!(
            auth.verify(&m.token, 2_000, other_net),
            Err(ClearanceError::WrongNetwork)
        );
        let unchecked = ClearanceCheck {
            device_id: None,
            ip: None,
        };
        assert!(auth.verify(&m.token, 2_000, unchecked).is_ok());
        // flip one bit anywhere: bad signature or malformed, never accepted
        let raw = URL_SAFE_NO_PAD.decode(&m.token).unwrap();
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 0x10;
            let e = auth
                .verify(&URL_SAFE_NO_PAD.encode(&t), 2_000, unchecked)
                .unwrap_err();
            assert!(matches!(
                e,
                ClearanceError::BadSignature | ClearanceError::Malformed
            ));
        }
        assert_eq!(
            auth.verify("%%%", 2_000, unchecked),
            Err(ClearanceError::Malformed)
        );
        assert_eq!(
            auth.verify(&"A".repeat(300), 2_000, unchecked),
            Err(ClearanceError::Malformed)
        );
        let stranger = ClearanceAuthority::new(Keyring::new(1, &[6u8; 32]).unwrap());
        assert_eq!(
            stranger.verify(&m.token, 2_000, unchecked),
            Err(ClearanceError::BadSignature)
        );
    }

    #[test]
    fn key_rotation() {
        let mut ring = Keyring::new(1, &[5u8; 32]).unwrap();
        let old = ClearanceAuthority::new(ring.clone());
        let m_old = old.mint(&client(), Platform::Mac, 0, 0).unwrap();
        ring.add(2, &[8u8; 32]).unwrap();
        ring.set_current(2).unwrap();
        let new = ClearanceAuthority::new(ring.clone());
        let m_new = new.mint(&client(), Platform::Mac, 0, 0).unwrap();
        assert_eq!(m_new.claims.key_id, 2);
        assert!(new.verify(&m_old.token, 1, (&client()).into()).is_ok());
        assert!(new.verify(&m_new.token, 1, (&client()).into()).is_ok());
        assert_eq!(
            old.verify(&m_new.token, 1, (&client()).into()),
            Err(ClearanceError::BadSignature)
        );
        ring.remove(1).unwrap();
        let retired = ClearanceAuthority::new(ring);
        assert_eq!(
            retired.verify(&m_old.token, 1, (&client()).into()),
            Err(ClearanceError::BadSignature)
        );
    }
}
