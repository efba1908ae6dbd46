//! Server secrets (a small keyring with key ids for rotation), the
//! per-clearance signing key, and the client binding (IP prefix + device id).

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Minimum length of a server secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Longest device id accepted, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// Salt of the HKDF that derives a per-clearance signing key.
const SIG_KEY_SALT: &[u8] = b"portcullis/v1/sig-key";

/// Errors building or changing a [`Keyring`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a server secret must be at least {MIN_SECRET_LEN} bytes")]
    TooShort,
    #[error("key id {0} is already in the keyring")]
    Duplicate(u8),
    #[error("key id {0} is not in the keyring")]
    Unknown(u8),
    #[error("the current key cannot be removed")]
    RemoveCurrent,
}

/// One server secret, kept only as precomputed HMAC states.
#[derive(Clone)]
pub(crate) struct ServerKey {
    id: u8,
    /// HMAC keyed with the secret: MACs of challenge and clearance tokens.
    token_mac: HmacSha256,
    /// HMAC keyed with the HKDF PRK: expands a cid into a signing key.
    sig_prk: HmacSha256,
}

impl ServerKey {
    fn new(id: u8, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort);
        }
        let token_mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::TooShort)?;
        // HKDF-Extract(salt, IKM = secret)
        let mut extract =
            HmacSha256::new_from_slice(SIG_KEY_SALT).map_err(|_| KeyError::TooShort)?;
        extract.update(secret);
        let prk = extract.finalize().into_bytes();
        let sig_prk = HmacSha256::new_from_slice(&prk).map_err(|_| KeyError::TooShort)?;
        Ok(Self {
            id,
            token_mac,
            sig_prk,
        })
    }

    pub(crate) fn id(&self) -> u8 {
        self.id
    }

    /// HMAC-SHA256(secret, domain || body).
    pub(crate) fn tag(&self, domain: &[u8], body: &[u8]) -> [u8; 32] {
        let mut mac = self.token_mac.clone();
        mac.update(domain);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a token tag.
    pub(crate) fn check(&self, domain: &[u8], body: &[u8], tag: &[u8]) -> bool {
        let expected = self.tag(domain, body);
        expected.ct_eq(tag).into()
    }

    /// HKDF-SHA256-Expand(PRK, info = "portcullis/v1/sig-key" || cid, L = 32).
    pub(crate) fn signing_key(&self, cid: &[u8; 16]) -> SigningKey {
        let mut mac = self.sig_prk.clone();
        mac.update(SIG_KEY_SALT);
        mac.update(cid);
        mac.update(&[1u8]);
        SigningKey(mac.finalize().into_bytes().into())
    }
}

/// The server secrets, each with a one-byte key id. New tokens are signed
/// with the current key; tokens signed with any key still in the ring verify.
///
/// Rotation: `add` the new secret, wait until every node has it, then
/// `set_current` to it, and `remove` the old one once its tokens expired.
#[derive(Clone)]
pub struct Keyring {
    current: u8,
    keys: Vec<ServerKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|k| k.id).collect();
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("key_ids", &ids)
            .finish()
    }
}

impl Keyring {
    /// A keyring holding one secret, which is current.
    pub fn new(id: u8, secret: &[u8]) -> Result<Self, KeyError> {
        Ok(Self {
            current: id,
            keys: vec![ServerKey::new(id, secret)?],
        })
    }

    /// Adds a secret that verifies tokens but does not sign new ones yet.
    pub fn add(&mut self, id: u8, secret: &[u8]) -> Result<(), KeyError> {
        if self.get(id).is_some() {
            return Err(KeyError::Duplicate(id));
        }
        self.keys.push(ServerKey::new(id, secret)?);
        Ok(())
    }

    /// Makes key `id` the one that signs new tokens.
    pub fn set_current(&mut self, id: u8) -> Result<(), KeyError> {
        if self.get(id).is_none() {
            return Err(KeyError::Unknown(id));
        }
        self.current = id;
        Ok(())
    }

    /// Removes a retired key: tokens it signed no longer verify.
    pub fn remove(&mut self, id: u8) -> Result<(), KeyError> {
        if id == self.current {
            return Err(KeyError::RemoveCurrent);
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.id != id);
        if self.keys.len() == before {
            return Err(KeyError::Unknown(id));
        }
        Ok(())
    }

    /// The id of the key that signs new tokens.
    pub fn current_id(&self) -> u8 {
        self.current
    }

    pub(crate) fn current(&self) -> &ServerKey {
        // The constructor and `set_current` keep `current` in the ring.
        self.get(self.current).unwrap_or(&self.keys[0])
    }

    pub(crate) fn get(&self, id: u8) -> Option<&ServerKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// The per-clearance HMAC-SHA256 key a client signs requests with. Derived
/// from the server secret and the cid, handed to the client once at mint.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(pub(crate) [u8; 32]);

impl SigningKey {
    /// A key from raw bytes (tests, SDK test vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// base64url without padding, as sent to the client.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// A network prefix a token is bound to. IPv4 addresses are kept as
/// IPv4-mapped IPv6 so one type covers both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    bytes: [u8; 16],
    /// Prefix length in the 128-bit (mapped) space.
    bits: u8,
}

impl IpPrefix {
    /// The prefix of `ip`: `v4_bits` of an IPv4 address (24 by default), or
    /// `v6_bits` of an IPv6 one (64 by default). IPv4-mapped IPv6 addresses
    /// count as IPv4.
    pub fn of(ip: IpAddr, v4_bits: u8, v6_bits: u8) -> Self {
        let (bytes, bits) = match ip.to_canonical() {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 96 + v4_bits.min(32)),
            IpAddr::V6(v6) => (v6.octets(), v6_bits.min(128)),
        };
        Self {
            bytes: mask(bytes, bits),
            bits,
        }
    }

    /// Whether `ip` falls inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let full = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        mask(full, self.bits) == self.bytes
    }

    pub(crate) fn to_wire(self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = self.bits;
        out[1..].copy_from_slice(&self.bytes);
        out
    }

    pub(crate) fn from_wire(bits: u8, bytes: [u8; 16]) -> Option<Self> {
        if bits > 128 || mask(bytes, bits) != bytes {
            return None;
        }
        Some(Self { bytes, bits })
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = std::net::Ipv6Addr::from(self.bytes);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.bits >= 96 => write!(f, "{v4}/{}", self.bits - 96),
            _ => write!(f, "{v6}/{}", self.bits),
        }
    }
}

fn mask(mut bytes: [u8; 16], bits: u8) -> [u8; 16] {
    for (i, b) in bytes.iter_mut().enumerate() {
        let start = (i * 8) as u32;
        let bits = u32::from(bits);
        if bits >= start + 8 {
            continue;
        }
        if bits <= start {
            *b = 0;
        } else {
            *b &= 0xffu8 << (8 - (bits - start));
        }
    }
    bytes
}

/// Who is asking: the client's address and the device id it sent in
/// `x-pc-device`. Challenges and clearances are bound to both.
#[derive(Debug, Clone, Copy)]
pub struct ClientBinding<'a> {
    pub ip: IpAddr,
    pub device_id: &'a str,
}

/// How tokens bind to the network: the prefix lengths kept at issue time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkBinding {
    pub v4_bits: u8,
    pub v6_bits: u8,
}

impl Default for NetworkBinding {
    fn default() -> Self {
        Self {
            v4_bits: 24,
            v6_bits: 64,
        }
    }
}

impl NetworkBinding {
    pub fn prefix(&self, ip: IpAddr) -> IpPrefix {
        IpPrefix::of(ip, self.v4_bits, self.v6_bits)
    }
}

/// A device id is 1 to 64 bytes of `[A-Za-z0-9_-]` (the SDK sends 22
/// base64url characters of randomness).
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A tiny cursor over token bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn prefix(&mut self) -> Option<IpPrefix> {
        let bits = self.u8()?;
        IpPrefix::from_wire(bits, self.array()?)
    }
    pub(crate) fn device_id(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u8()?);
        let id = std::str::from_utf8(self.bytes(n)?).ok()?;
        valid_device_id(id).then_some(id)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Splits a decoded token into body and 32-byte tag.
pub(crate) fn split_tag(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    if raw.len() < 33 {
        return None;
    }
    Some(raw.split_at(raw.len() - 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let ip: IpAddr = "203.0.113.77".parse().unwrap();
        let p = IpPrefix::of(ip, 24, 64);
        assert_eq!(p.to_string(), "203.0.113.0/24");
        assert!(p.contains("203.0.113.1".parse().unwrap()));
        assert!(p.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert!(!p.contains("203.0.114.1".parse().unwrap()));
        let v6 = IpPrefix::of("2001:db8:1:2:3::9".parse().unwrap(), 24, 64);
        assert_eq!(v6.to_string(), "2001:db8:1:2::/64");
        assert!(v6.contains("2001:db8:1:2:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:1:3::1".parse().unwrap()));
        assert!(!v6.contains(ip));
        let w = p.to_wire();
        assert_eq!(
            IpPrefix::from_wire(w[0], w[1..].try_into().unwrap()),
            Some(p)
        );
    }

    #[test]
    fn keyring_rotation() {
        let mut ring = Keyring::new(1, &[7u8; 32]).unwrap();
        assert_eq!(Keyring::new(1, &[7u8; 8]).unwrap_err(), KeyError::TooShort);
        ring.add(2, &[9u8; 32]).unwrap();
        assert_eq!(ring.add(2, &[9u8; 32]), Err(KeyError::Duplicate(2)));
        assert_eq!(ring.current_id(), 1);
        ring.set_current(2).unwrap();
        assert_eq!(ring.remove(2), Err(KeyError::RemoveCurrent));
        ring.remove(1).unwrap();
        assert!(ring.get(1).is_none());
        assert!(!format!("{ring:?}").contains("7, 7"));
    }

    #[test]
    fn device_ids() {
        assert!(valid_device_id("AbC_-09"));
        assert!(!valid_device_id(""));
        assert!(!valid_device_id("a b"));
        assert!(!valid_device_id(&"a".repeat(65)));
    }
}
