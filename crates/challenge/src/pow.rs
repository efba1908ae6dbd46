//! Stateless proof-of-work challenges (SHA-256 hashcash).
//!
//! The challenge token carries everything the server needs to check a
//! solution (nonce, difficulty, expiry, the client it was issued to, the
//! risk at issue) under an HMAC, so nothing is stored until it is solved.
//! A solved challenge is consumed through [`SeenStore`], which the caller
//! owns (memory or Redis).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::keys::{ClientBinding, Keyring, NetworkBinding, Reader, split_tag, valid_device_id};

/// The only algorithm: find `counter` such that
/// `SHA-256(nonce[16] || counter as u64 big-endian)` starts with
/// `difficulty` zero bits.
pub const ALGORITHM: &str = "sha256-hashcash";

const VERSION: u8 = 1;
const ALG_SHA256: u8 = 1;
const DOMAIN: &[u8] = b"portcullis/v1/challenge\0";

/// Hard upper bound on difficulty (bits); the SDK checks only the first
/// 32-bit word of the digest.
pub const MAX_DIFFICULTY: u8 = 32;

/// The caller's record of single-use ids (solved challenges, request
/// nonces). Backed by the state crate: memory or Redis.
pub trait SeenStore {
    /// Records `id` for `ttl_ms` milliseconds. Returns `true` the first time
    /// an id is seen, `false` if it is already recorded (a replay).
    fn first_use(&self, id: &[u8], ttl_ms: u64) -> bool;
}

/// Errors checking a challenge solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error("challenge token is malformed")]
    Malformed,
    #[error("challenge token signature is invalid")]
    BadSignature,
    #[error("challenge expired")]
    Expired,
    #[error("challenge was issued to another device")]
    WrongDevice,
    #[error("challenge was issued to another network")]
    WrongNetwork,
    #[error("solution does not meet the difficulty")]
    InsufficientWork,
    #[error("challenge was already solved")]
    Replayed,
    #[error("device id is invalid")]
    InvalidDeviceId,
}

impl PowError {
    /// Stable snake_case code for events and the JSON `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            PowError::Malformed => "malformed",
            PowError::BadSignature => "bad_signature",
            PowError::Expired => "expired",
            PowError::WrongDevice => "wrong_device",
            PowError::WrongNetwork => "wrong_network",
            PowError::InsufficientWork => "bad_solution",
            PowError::Replayed => "replayed",
            PowError::InvalidDeviceId => "invalid_device",
        }
    }

    /// HTTP status of the `/.portcullis/verify` answer (PROTOCOL.md).
    pub fn http_status(&self) -> u16 {
        match self {
            PowError::Malformed
            | PowError::BadSignature
            | PowError::Expired
            | PowError::InsufficientWork => 400,
            PowError::Replayed => 409,
            PowError::WrongDevice | PowError::WrongNetwork | PowError::InvalidDeviceId => 403,
        }
    }
}

/// How difficulty (leading zero bits) follows risk and load.
///
/// `difficulty(risk, load) = clamp(base + per_rank[risk] + load_extra, min, max)`
/// with `load_extra = round(load_bits * max(0, load - 0.5) / 0.5)`: nothing
/// until the gateway is half loaded, then up to `load_bits` more bits at
/// full load (`load` is a 0..1 utilisation figure; values above 1 count as 1).
/// Each extra bit doubles the expected client work; the server's cost per
/// verification does not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DifficultyPolicy {
    pub base: u8,
    /// Extra bits per risk rank 0..=4.
    pub per_rank: [u8; 5],
    pub load_bits: u8,
    pub min: u8,
    pub max: u8,
}

impl Default for DifficultyPolicy {
    /// base 17 bits: median 0.69 * 2^17 = 91k hashes, ~30-40 ms for the
    /// SDK's pure-JS SHA-256 in headless Chromium on this machine, roughly
    /// 0.3-0.5 s on a low-end phone (measurements in README.md).
    fn default() -> Self {
        Self {
            base: 17,
            per_rank: [0, 1, 2, 4, 6],
            load_bits: 4,
            min: 8,
            max: 26,
        }
    }
}

impl DifficultyPolicy {
    pub fn difficulty(&self, risk: u8, load: f32) -> u8 {
        let rank = usize::from(risk.min(4));
        let load = if load.is_finite() {
            load.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let over = ((load - 0.5).max(0.0) / 0.5) * f32::from(self.load_bits);
        let extra = over.round() as u8;
        let d = self
            .base
            .saturating_add(self.per_rank[rank])
            .saturating_add(extra);
        d.clamp(self.min, self.max.min(MAX_DIFFICULTY))
    }
}

/// A challenge as sent to the client (`GET /.portcullis/challenge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Challenge {
    /// Opaque token to send back with the solution.
    pub token: String,
    pub algorithm: &'static str,
    pub difficulty: u8,
    /// The 16-byte nonce the hash covers, base64url (also inside the token).
    pub nonce: String,
    /// Unix millis after which a solution is refused.
    pub expires: u64,
    /// The server clock (unix millis), for the SDK's clock offset.
    pub server_time: u64,
}

/// A verified solution. Record `id` in a [`SeenStore`] for `ttl_ms` before
/// honouring it (or call [`ChallengeIssuer::verify_and_consume`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolvedChallenge {
    /// Challenge id: the random nonce, unique per challenge.
    pub id: [u8; 16],
    pub difficulty: u8,
    /// Risk rank the challenge was issued for.
    pub risk: u8,
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// Time left until expiry: how long the id must stay recorded.
    pub ttl_ms: u64,
}

impl SolvedChallenge {
    /// `pc:c:<base64url id>`: the key to record (for `ttl_ms`) in the
    /// replay store (`StateStore::put_if_absent` or a [`SeenStore`]).
    pub fn replay_key(&self) -> String {
        format!("pc:c:{}", URL_SAFE_NO_PAD.encode(self.id))
    }
}

/// Mints and checks challenges. Cheap to clone; share one per config.
#[derive(Debug, Clone)]
pub struct ChallengeIssuer {
    keys: Keyring,
    pub policy: DifficultyPolicy,
    /// Lifetime of a challenge (default 120 s).
    pub ttl_ms: u64,
    pub network: NetworkBinding,
    /// Refuse a solution sent from another network than the challenge's
    /// (default off: a phone may change network between the two calls; the
    /// device id is the binding, PROTOCOL.md section 2).
    pub bind_network: bool,
}

impl ChallengeIssuer {
    pub fn new(keys: Keyring) -> Self {
        Self {
            keys,
            policy: DifficultyPolicy::default(),
            ttl_ms: 120_000,
            network: NetworkBinding::default(),
            bind_network: false,
        }
    }

    /// A fresh challenge for `client`, its difficulty from `risk` (0-4) and
    /// `load` (0..1) through the policy.
    pub fn issue(
        &self,
        client: &ClientBinding<'_>,
        risk: u8,
        load: f32,
        now_ms: u64,
    ) -> Result<Challenge, PowError> {
        let d = self.policy.difficulty(risk, load);
        self.issue_with(client, risk, d, now_ms, &mut rand::rng())
    }

    /// Like [`issue`](Self::issue) with an explicit difficulty and RNG.
    pub fn issue_with(
        &self,
        client: &ClientBinding<'_>,
        risk: u8,
        difficulty: u8,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> Result<Challenge, PowError> {
        if !valid_device_id(client.device_id) {
            return Err(PowError::InvalidDeviceId);
        }
        let difficulty = difficulty.min(MAX_DIFFICULTY);
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let expires = now_ms.saturating_add(self.ttl_ms);
        let key = self.keys.current();
        let mut body = Vec::with_capacity(64 + client.device_id.len() + 32);
        body.extend_from_slice(&[VERSION, key.id(), ALG_SHA256, difficulty]);
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&now_ms.to_be_bytes());
        body.extend_from_slice(&expires.to_be_bytes());
        body.extend_from_slice(&self.network.prefix(client.ip).to_wire());
        body.push(risk.min(4));
        body.push(client.device_id.len() as u8);
        body.extend_from_slice(client.device_id.as_bytes());
        let tag = key.tag(DOMAIN, &body);
        body.extend_from_slice(&tag);
        Ok(Challenge {
            token: URL_SAFE_NO_PAD.encode(&body),
            algorithm: ALGORITHM,
            difficulty,
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            expires,
            server_time: now_ms,
        })
    }

    /// Checks a solution: token MAC, expiry, device and network binding,
    /// then the work. Does not consume the challenge.
    pub fn verify_solution(
        &self,
        token: &str,
        solution: u64,
        now_ms: u64,
        client: &ClientBinding<'_>,
    ) -> Result<SolvedChallenge, PowError> {
        if token.len() > 256 {
            return Err(PowError::Malformed);
        }
        let mut buf = [0u8; 192];
        let n = URL_SAFE_NO_PAD
            .decode_slice(token, &mut buf)
            .map_err(|_| PowError::Malformed)?;
        let raw = &buf[..n];
        let (body, tag) = split_tag(raw).ok_or(PowError::Malformed)?;
        let mut r = Reader::new(body);
        let (ver, kid, alg, difficulty) = (r.u8(), r.u8(), r.u8(), r.u8());
        let (Some(VERSION), Some(kid), Some(ALG_SHA256), Some(difficulty)) =
            (ver, kid, alg, difficulty)
        else {
            return Err(PowError::Malformed);
        };
        let key = self.keys.get(kid).ok_or(PowError::BadSignature)?;
        if !key.check(DOMAIN, body, tag) {
            return Err(PowError::BadSignature);
        }
        let parsed = (|| {
            let nonce: [u8; 16] = r.array()?;
            let issued = r.u64()?;
            let expires = r.u64()?;
            let prefix = r.prefix()?;
            let risk = r.u8()?;
            let device = r.device_id()?;
            r.is_empty()
                .then_some((nonce, issued, expires, prefix, risk, device))
        })();
        let (nonce, issued, expires, prefix, risk, device) = parsed.ok_or(PowError::Malformed)?;
        if now_ms >= expires {
            return Err(PowError::Expired);
        }
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            device.as_bytes(),
            client.device_id.as_bytes(),
        )) {
            return Err(PowError::WrongDevice);
        }
        if self.bind_network && !prefix.contains(client.ip) {
            return Err(PowError::WrongNetwork);
        }
        if leading_zero_bits(&pow_hash(&nonce, solution)) < u32::from(difficulty) {
            return Err(PowError::InsufficientWork);
        }
        Ok(SolvedChallenge {
            id: nonce,
            difficulty,
            risk,
            issued_ms: issued,
            expires_ms: expires,
            ttl_ms: expires - now_ms,
        })
    }

    /// [`verify_solution`](Self::verify_solution), then records the id in
    /// `seen`; a second use is [`PowError::Replayed`].
    pub fn verify_and_consume(
        &self,
        token: &str,
        solution: u64,
        now_ms: u64,
        client: &ClientBinding<'_>,
        seen: &dyn SeenStore,
    ) -> Result<SolvedChallenge, PowError> {
        let solved = self.verify_solution(token, solution, now_ms, client)?;
        if !seen.first_use(solved.replay_key().as_bytes(), solved.ttl_ms) {
            return Err(PowError::Replayed);
        }
        Ok(solved)
    }
}

/// `SHA-256(nonce || counter_be)`: the hash the client grinds.
pub fn pow_hash(nonce: &[u8; 16], counter: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(counter.to_be_bytes());
    h.finalize().into()
}

/// Number of leading zero bits of a digest.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut n = 0;
    for &b in digest {
        if b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Reference solver (tests, benches, CLI tools): the first counter from 0
/// that meets `difficulty`.
pub fn solve(nonce: &[u8; 16], difficulty: u8) -> u64 {
    let mut c = 0u64;
    while leading_zero_bits(&pow_hash(nonce, c)) < u32::from(difficulty) {
        c += 1;
    }
    c
}

/// Decodes the base64url nonce of a [`Challenge`].
pub fn decode_nonce(nonce: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let n = URL_SAFE_NO_PAD.decode_slice(nonce, &mut out).ok()?;
    (n == 16).then_some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    /// An in-memory [`SeenStore`] for the tests of this crate.
    pub(crate) struct Mem(pub(crate) RefCell<HashSet<Vec<u8>>>);
    impl SeenStore for Mem {
        fn first_use(&self, id: &[u8], _ttl: u64) -> bool {
            self.0.borrow_mut().insert(id.to_vec())
        }
    }

    fn issuer() -> ChallengeIssuer {
        ChallengeIssuer::new(Keyring::new(1, &[42u8; 32]).unwrap())
    }

    fn client(ip: &str, dev: &'static str) -> ClientBinding<'static> {
        ClientBinding {
            ip: ip.parse().unwrap(),
            device_id: dev,
        }
    }

    #[test]
    fn difficulty_policy() {
        let p = DifficultyPolicy::default();
        assert_eq!(p.difficulty(0, 0.0), 17);
        assert_eq!(p.difficulty(0, 0.5), 17);
        assert_eq!(p.difficulty(0, 1.0), 21);
        assert_eq!(p.difficulty(0, 0.75), 19);
        assert_eq!(p.difficulty(1, 0.0), 18);
        assert_eq!(p.difficulty(3, 0.0), 21);
        assert_eq!(p.difficulty(4, 0.0), 23);
        assert_eq!(p.difficulty(9, 7.0), 26);
        assert_eq!(p.difficulty(4, f32::NAN), 26);
    }

    #[test]
    fn roundtrip_and_single_use() {
        let iss = issuer();
        let c = client("198.51.100.7", "dev_1");
        let ch = iss.issue_with(&c, 1, 10, 1_000, &mut rand::rng()).unwrap();
        let nonce = decode_nonce(&ch.nonce).unwrap();
        let sol = solve(&nonce, ch.difficulty);
        let seen = Mem(RefCell::new(HashSet::new()));
        let ok = iss
            .verify_and_consume(&ch.token, sol, 2_000, &c, &seen)
            .unwrap();
        assert_eq!(ok.id, nonce);
        assert_eq!(ok.risk, 1);
        assert_eq!(ok.ttl_ms, 119_000);
        assert_eq!(
            iss.verify_and_consume(&ch.token, sol, 2_000, &c, &seen),
            Err(PowError::Replayed)
        );
        // same /24 is fine
        let c2 = client("198.51.100.200", "dev_1");
        assert!(iss.verify_solution(&ch.token, sol, 2_000, &c2).is_ok());
    }

    #[test]
    fn rejections() {
        let iss = issuer();
        let c = client("198.51.100.7", "dev_1");
        let ch = iss.issue_with(&c, 0, 12, 1_000, &mut rand::rng()).unwrap();
        let nonce = decode_nonce(&ch.nonce).unwrap();
        let sol = solve(&nonce, 12);
        let bad = (0..).find(|&x| leading_zero_bits(&pow_hash(&nonce, x)) < 12);
        assert_eq!(
            iss.verify_solution(&ch.token, bad.unwrap(), 2_000, &c),
            Err(PowError::InsufficientWork)
        );
        assert_eq!(
            iss.verify_solution(&ch.token, sol, 121_000, &c),
            Err(PowError::Expired)
        );
        assert_eq!(
            iss.verify_solution(&ch.token, sol, 2_000, &client("198.51.100.7", "dev_2")),
            Err(PowError::WrongDevice)
        );
        // Another network: the device is the binding, unless asked otherwise.
        let moved = client("10.1.2.3", "dev_1");
        assert!(iss.verify_solution(&ch.token, sol, 2_000, &moved).is_ok());
        let strict = ChallengeIssuer {
            bind_network: true,
            ..iss.clone()
        };
        assert_eq!(
            strict.verify_solution(&ch.token, sol, 2_000, &moved),
            Err(PowError::WrongNetwork)
        );
        // tamper with the difficulty byte
        let mut raw = URL_SAFE_NO_PAD.decode(&ch.token).unwrap();
        raw[3] = 1;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            iss.verify_solution(&forged, 0, 2_000, &c),
            Err(PowError::BadSignature)
        );
        assert_eq!(
            iss.verify_solution("!!", 0, 2_000, &c),
            Err(PowError::Malformed)
        );
        assert_eq!(
            iss.verify_solution("AAAA", 0, 2_000, &c),
            Err(PowError::Malformed)
        );
        // another server secret
        let other = ChallengeIssuer::new(Keyring::new(1, &[1u8; 32]).unwrap());
        assert_eq!(
            other.verify_solution(&ch.token, sol, 2_000, &c),
            Err(PowError::BadSignature)
        );
        assert_eq!(
            iss.issue(&client("198.51.100.7", "bad id"), 0, 0.0, 0),
            Err(PowError::InvalidDeviceId)
        );
    }

    #[test]
    fn pow_vector() {
        // Shared with sdk/js/test: nonce 00 01 .. 0f, difficulty 16.
        let nonce: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            hex(&pow_hash(&nonce, 0)),
            "818638ad150c9042a99f4e43bfd0f1b48bc7691645acb2cf9bc774869cd62b09"
        );
        assert_eq!(solve(&nonce, 16), 56427);
        assert_eq!(
            hex(&pow_hash(&nonce, 56427)),
            "0000c7995caa5cd15a3f8f393caac36a28bdf15cfcd4c73882f7d01f7cee7227"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
