//! Layer 3 settings: the policies of core URLs and the challenge service
//! that clears clients for them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A core URL: its requests get a risk rank and the policy's decision.
/// URLs that no policy names pass layer 3 untouched. The first matching
/// policy in file order applies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    /// Host names; empty means any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path pattern, as in `[[rate_limits]]`: a prefix (`/api/`), `*` for any
    /// run of characters, `$` at the end for an exact path.
    pub path: String,
    /// Methods; empty means any. GET covers HEAD (origins answer HEAD
    /// with their GET handler).
    #[serde(default)]
    pub methods: Vec<String>,
    /// How the path pattern compares with the canonical path: `insensitive`
    /// (the default) also covers origins that ignore case.
    #[serde(default)]
    pub path_case: PathCase,
    /// A request whose path carries an encoded separator (`%2F`, `%5C`):
    /// `decode` matches it as a `/` (the default), `refuse` answers 400.
    #[serde(default)]
    pub encoded_slash: EncodedSlash,
    /// Whether a request needs a clearance from the challenge service.
    #[serde(default)]
    pub clearance: ClearanceRequirement,
    /// Require an HTTP message signature (RFC 9421) made with the
    /// clearance's key, with a body digest and a fresh nonce. A clearance
    /// cookie never stands in for the signature.
    #[serde(default)]
    pub signature: bool,
    /// Require a verified JWT.
    #[serde(default)]
    pub jwt: Option<JwtRequirement>,
    /// The lowest risk rank that is challenged (none: never).
    #[serde(default)]
    pub challenge_at: Option<u8>,
    /// The lowest risk rank that is intercepted (none: never).
    #[serde(default)]
    pub intercept_at: Option<u8>,
    /// The answer to an intercepted request; the `[block.blocked]` response if unset.
    #[serde(default)]
    pub intercept: Option<CustomResponse>,
    /// Send the risk headers (`x-wx-risk-rank` and friends) to the origin.
    #[serde(default = "yes")]
    pub risk_headers: bool,
    /// Also send the top reasons of the rank (`x-wx-risk-reasons`).
    #[serde(default)]
    pub debug: bool,
    /// `log-only` records what the policy would do and passes the request:
    /// a trial before enforcing.
    #[serde(default)]
    pub mode: PolicyMode,
}

fn yes() -> bool {
    true
}

/// How a route's path pattern compares with the canonical path.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PathCase {
    /// `/API/x` matches `/api/`: safe in front of origins that ignore case.
    #[default]
    Insensitive,
    Sensitive,
}

/// What a route does with an encoded path separator.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodedSlash {
    /// Match and forward it as a separator, as most origins read it.
    #[default]
    Decode,
    /// Answer 400: for origins that keep `%2F` inside a segment.
    Refuse,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClearanceRequirement {
    /// Clearances are neither asked for nor checked.
    #[default]
    Off,
    /// Checked when present (their state feeds the risk rank), not required.
    Optional,
    /// A request without a valid clearance is challenged.
    Required,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    #[default]
    Enforce,
    LogOnly,
}

/// A response the gateway writes itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomResponse {
    pub status: u16,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Body; `{{request_id}}` is replaced with the request id.
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_content_type() -> String {
    "application/json".into()
}

/// What a route asks of the request's JWT (`Authorization: Bearer`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtRequirement {
    /// Issuers accepted (names of `[[auth.jwt]]` entries); empty means any configured.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Scopes that must all be present in the `scope` (space separated) or `scp` claim.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims that must have one of the listed values (`role = ["admin"]`).
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
    /// Where the request names the account it acts on; it must be the
    /// token's subject. `path:N` (the N-th path segment, from 1), `query:NAME`,
    /// `json:a.b` (a field of a JSON body).
    #[serde(default)]
    pub subject_in: Option<String>,
}

/// The challenge service under `/.portcullis/` and the clearances it mints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChallengeConfig {
    /// Environment variable holding the secret (at least 32 bytes, hex or
    /// base64) that signs challenges and clearances. Unset: a random secret
    /// per start, so clearances end with the process and are not shared
    /// between gateways.
    pub secret_env: String,
    /// Leading zero bits of the proof of work at risk rank 0 and no load.
    pub difficulty: u8,
    /// How long a challenge may be solved, in seconds.
    pub challenge_ttl_s: u64,
    /// How long a clearance lasts, in seconds (an app session).
    pub clearance_ttl_s: u64,
    /// Refuse a clearance (and a challenge solution) used from another /24
    /// (IPv4) or /64 (IPv6) than the one it was issued to. Off by default:
    /// the device's key is the binding, and a network change is evidence
    /// for the risk engine (`risk.limits.networks_per_device_1h`), since
    /// phones move between Wi-Fi and carrier networks whose NAT changes
    /// the address within a session.
    pub bind_network: bool,
    /// How old a signature's `created` may be, in seconds.
    pub signature_max_age_s: u64,
    /// Clients assessed at this rank or above get no clearance.
    pub refuse_at: u8,
    /// Browser navigations without a clearance get an HTML page that runs
    /// the check and returns to the URL; otherwise they get the JSON answer.
    pub interstitial: bool,
    /// Cookie that carries the clearance of a browser (navigations only).
    pub cookie: String,
    /// Web origins (`https://shop.example`) whose pages may call protected
    /// routes and the challenge service with the SDK: their CORS preflights
    /// are answered by the gateway for the SDK's headers.
    pub cors_origins: Vec<String>,
    /// Calls to the challenge endpoints per device id: sustained per minute,
    /// and burst. One device asking again and again is not NAT.
    pub device_per_minute: u32,
    pub device_burst: u32,
    /// Calls per client address: sustained per second, and burst. Hundreds
    /// of phones behind one NAT address start their app together, so this
    /// is the last resort; the difficulty rises first (below).
    pub ip_per_s: u32,
    pub ip_burst: u32,
    /// Challenges per minute from one address that cost no extra work;
    /// each doubling above adds one bit of difficulty (twice the work)...
    pub ip_quiet_per_minute: u32,
    /// ... up to this many bits.
    pub ip_max_extra_bits: u8,
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        ChallengeConfig {
            secret_env: "PORTCULLIS_CHALLENGE_SECRET".into(),
            difficulty: 17,
            challenge_ttl_s: 120,
            clearance_ttl_s: 4 * 3600,
            bind_network: false,
            signature_max_age_s: 300,
            refuse_at: 4,
            interstitial: true,
            cookie: "pc_clearance".into(),
            cors_origins: Vec::new(),
            device_per_minute: 12,
            device_burst: 6,
            ip_per_s: 50,
            ip_burst: 1000,
            ip_quiet_per_minute: 60,
            ip_max_extra_bits: 6,
        }
    }
}
