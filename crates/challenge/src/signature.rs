//! Request signatures: HTTP Message Signatures (RFC 9421) with
//! `hmac-sha256` and the per-clearance key, over a body digest
//! (`Content-Digest`, RFC 9530). See PROTOCOL.md for the wire format.
//!
//! The verifier parses `Signature-Input` / `Signature` as structured
//! fields (RFC 9651, `sfv`), rebuilds the signature base exactly per
//! RFC 9421 section 2.5, checks the HMAC in constant time, checks `created`
//! against a window, and returns the nonce for the caller's replay check.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use sfv::{BareItem, Dictionary, Integer, KeyRef, ListEntry, ListSerializer, Parser, StringRef};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::keys::{HmacSha256, SigningKey};
use crate::pow::SeenStore;

/// The signature label the SDK uses.
pub const LABEL: &str = "pc";
/// The only algorithm accepted.
pub const ALG: &str = "hmac-sha256";
/// Header carrying the clearance token.
pub const CLEARANCE_HEADER: &str = "x-pc-clearance";
/// Header carrying the device id.
pub const DEVICE_HEADER: &str = "x-pc-device";
/// Components the SDK covers, in this order.
pub const DEFAULT_COMPONENTS: [&str; 5] = [
    "@method",
    "@path",
    "@query",
    "content-digest",
    CLEARANCE_HEADER,
];

/// Why a signature is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// A header is not a valid structured field, or a member has the wrong type.
    Malformed,
    /// `alg` is absent or not `hmac-sha256`.
    Algorithm,
    /// A covered component this verifier does not support (component
    /// parameters, `@query-param`, `@status`, ...), or listed twice.
    UnsupportedComponent,
    /// A required component is not covered.
    NotCovered,
    /// `created`, `nonce` or `keyid` is absent or of the wrong type.
    MissingParameter,
    /// `keyid` is not the clearance's cid.
    KeyId,
    /// A covered header is absent from the request.
    MissingComponent,
    /// The HMAC does not match.
    Mismatch,
}

impl InvalidReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            InvalidReason::Malformed => "malformed",
            InvalidReason::Algorithm => "algorithm",
            InvalidReason::UnsupportedComponent => "unsupported_component",
            InvalidReason::NotCovered => "not_covered",
            InvalidReason::MissingParameter => "missing_parameter",
            InvalidReason::KeyId => "keyid",
            InvalidReason::MissingComponent => "missing_component",
            InvalidReason::Mismatch => "mismatch",
        }
    }
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors verifying a request signature. Each is its own signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("request signature missing")]
    Missing,
    #[error("request signature invalid: {0}")]
    Invalid(InvalidReason),
    #[error("signature timestamp outside the window")]
    Stale,
    #[error("body does not match Content-Digest")]
    DigestMismatch,
    /// Only from [`SignatureVerifier::verify_and_consume`]; callers doing
    /// their own replay check report it themselves.
    #[error("signature nonce seen before")]
    Replayed,
}

impl SignatureError {
    /// Stable snake_case code for events.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Invalid(_) => "signature_invalid",
            SignatureError::Stale => "signature_stale",
            SignatureError::DigestMismatch => "digest_mismatch",
            SignatureError::Replayed => "signature_replayed",
        }
    }

    /// HTTP status: 401 for `Stale` (the SDK resyncs its clock and retries
    /// once), 403 for the rest (PROTOCOL.md).
    pub fn http_status(&self) -> u16 {
        match self {
            SignatureError::Stale => 401,
            _ => 403,
        }
    }
}

fn invalid(r: InvalidReason) -> SignatureError {
    SignatureError::Invalid(r)
}

/// Access to request header fields (HTTP/1 or HTTP/2 alike).
pub trait Fields {
    /// Calls `f` with each value of the field `name` (given lowercase), in
    /// the order received.
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8]));
}

impl Fields for http::HeaderMap {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for v in self.get_all(name) {
            f(v.as_bytes());
        }
    }
}

impl Fields for [(&str, &str)] {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for (k, v) in self {
            if k.eq_ignore_ascii_case(name) {
                f(v.as_bytes());
            }
        }
    }
}

impl<const N: usize> Fields for [(&str, &str); N] {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        self.as_slice().for_each_value(name, f)
    }
}

/// Appends the RFC 9421 field value: each value with leading and trailing
/// whitespace removed, joined with `", "`. `None` if the field is absent.
fn field_value(fields: &(impl Fields + ?Sized), name: &str, out: &mut Vec<u8>) -> Option<()> {
    let mut seen = false;
    fields.for_each_value(name, &mut |v| {
        if seen {
            out.extend_from_slice(b", ");
        }
        seen = true;
        out.extend_from_slice(v.trim_ascii());
    });
    seen.then_some(())
}

/// The request line parts the derived components come from.
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    /// As received; RFC 9421 applies no case change.
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host (and port if not default), from `:authority` or `Host`.
    pub authority: &'a str,
    /// The path as received, still percent-encoded; empty means `/`.
    pub path: &'a str,
    /// The query without `?`; `None` when the target has none.
    pub query: Option<&'a str>,
}

impl<'a> RequestTarget<'a> {
    /// Splits an origin-form request target (`/p?q`) into path and query.
    pub fn from_origin_form(
        method: &'a str,
        scheme: &'a str,
        authority: &'a str,
        target: &'a str,
    ) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        Self {
            method,
            scheme,
            authority,
            path,
            query,
        }
    }

    fn path(&self) -> &'a str {
        if self.path.is_empty() { "/" } else { self.path }
    }
}

/// Appends the value of one covered component to `out`.
fn component_value(
    name: &str,
    target: &RequestTarget<'_>,
    fields: &(impl Fields + ?Sized),
    out: &mut Vec<u8>,
) -> Result<(), SignatureError> {
    let lower = |out: &mut Vec<u8>, s: &str| out.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
    match name {
        "@method" => out.extend_from_slice(target.method.as_bytes()),
        "@path" => out.extend_from_slice(target.path().as_bytes()),
        "@query" => {
            out.push(b'?');
            out.extend_from_slice(target.query.unwrap_or("").as_bytes());
        }
        "@authority" => lower(out, target.authority),
        "@scheme" => lower(out, target.scheme),
        "@request-target" => {
            out.extend_from_slice(target.path().as_bytes());
            if let Some(q) = target.query {
                out.push(b'?');
                out.extend_from_slice(q.as_bytes());
            }
        }
        "@target-uri" => {
            lower(out, target.scheme);
            out.extend_from_slice(b"://");
            lower(out, target.authority);
            out.extend_from_slice(target.path().as_bytes());
            if let Some(q) = target.query {
                out.push(b'?');
                out.extend_from_slice(q.as_bytes());
            }
        }
        n if n.starts_with('@') || n.bytes().any(|b| b.is_ascii_uppercase()) || n.is_empty() => {
            return Err(invalid(InvalidReason::UnsupportedComponent));
        }
        field => {
            field_value(fields, field, out).ok_or(invalid(InvalidReason::MissingComponent))?;
        }
    }
    Ok(())
}

/// Builds the RFC 9421 signature base for `components` (plain component
/// names, no parameters) and the serialized `@signature-params` value.
pub fn signature_base(
    components: &[&str],
    params_value: &str,
    target: &RequestTarget<'_>,
    fields: &(impl Fields + ?Sized),
) -> Result<Vec<u8>, SignatureError> {
    let mut out = Vec::with_capacity(512);
    for (i, c) in components.iter().enumerate() {
        if components[..i].contains(c) || *c == "@signature-params" {
            return Err(invalid(InvalidReason::UnsupportedComponent));
        }
        out.push(b'"');
        out.extend_from_slice(c.as_bytes());
        out.extend_from_slice(b"\": ");
        component_value(c, target, fields, &mut out)?;
        out.push(b'\n');
    }
    out.extend_from_slice(b"\"@signature-params\": ");
    out.extend_from_slice(params_value.as_bytes());
    Ok(out)
}

/// HMAC-SHA256 of a signature base.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `Content-Digest` value for a body: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// The sha-256 digest named in a `Content-Digest` value.
pub fn parse_content_digest(value: &[u8]) -> Result<[u8; 32], SignatureError> {
    let dict: Dictionary = Parser::new(value)
        .parse()
        .map_err(|_| invalid(InvalidReason::Malformed))?;
    let Some(ListEntry::Item(item)) = dict.get("sha-256") else {
        return Err(invalid(InvalidReason::Malformed));
    };
    item.bare_item
        .as_byte_sequence()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(invalid(InvalidReason::Malformed))
}

/// Streaming check of a body against its `Content-Digest`, for a proxy
/// that forwards the body as it arrives and decides at the end.
#[derive(Clone)]
pub struct DigestCheck {
    expected: [u8; 32],
    hasher: Sha256,
}

impl DigestCheck {
    pub fn new(content_digest: &[u8]) -> Result<Self, SignatureError> {
        Ok(Self {
            expected: parse_content_digest(content_digest)?,
            hasher: Sha256::new(),
        })
    }
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }
    pub fn finish(self) -> Result<(), SignatureError> {
        let got: [u8; 32] = self.hasher.finalize().into();
        if bool::from(got.ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(SignatureError::DigestMismatch)
        }
    }
}

/// Checks a whole body against a `Content-Digest` value.
pub fn verify_content_digest(value: &[u8], body: &[u8]) -> Result<(), SignatureError> {
    let mut c = DigestCheck::new(value)?;
    c.update(body);
    c.finish()
}

/// Parameters a client signs with (the SDK's side, also used by tests
/// and by Rust clients).
#[derive(Debug, Clone, Copy)]
pub struct SignParams<'a> {
    pub components: &'a [&'a str],
    /// Unix seconds.
    pub created: u64,
    pub nonce: Option<&'a str>,
    pub keyid: &'a str,
    pub alg: Option<&'a str>,
}

impl SignParams<'_> {
    /// The serialized inner list: the `@signature-params` value, and the
    /// `Signature-Input` member value. Parameters in the order created,
    /// nonce, keyid, alg.
    pub fn serialize(&self) -> Result<String, SignatureError> {
        let bad = |_| invalid(InvalidReason::Malformed);
        let mut s = String::with_capacity(160);
        let mut ser = ListSerializer::with_buffer(&mut s);
        let mut il = ser.inner_list();
        for c in self.components {
            let _ = il.bare_item(StringRef::from_str(c).map_err(bad)?);
        }
        let created = Integer::try_from(
            i64::try_from(self.created).map_err(|_| invalid(InvalidReason::Malformed))?,
        )
        .map_err(bad)?;
        let mut p = il.finish().parameter(KeyRef::constant("created"), created);
        if let Some(n) = self.nonce {
            p = p.parameter(
                KeyRef::constant("nonce"),
                StringRef::from_str(n).map_err(bad)?,
            );
        }
        p = p.parameter(
            KeyRef::constant("keyid"),
            StringRef::from_str(self.keyid).map_err(bad)?,
        );
        if let Some(a) = self.alg {
            p = p.parameter(
                KeyRef::constant("alg"),
                StringRef::from_str(a).map_err(bad)?,
            );
        }
        let _ = p.finish();
        let _ = ser.finish();
        Ok(s)
    }
}

/// The headers a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `Signature-Input` value, e.g. `pc=("@method" ...);created=...`.
    pub signature_input: String,
    /// `Signature` value, e.g. `pc=:base64:`.
    pub signature: String,
}

/// Signs a request (client side). The `fields` must already hold every
/// covered header (`content-digest`, `x-pc-clearance`, ...).
pub fn sign(
    key: &SigningKey,
    label: &str,
    params: &SignParams<'_>,
    target: &RequestTarget<'_>,
    fields: &(impl Fields + ?Sized),
) -> Result<SignatureHeaders, SignatureError> {
    let value = params.serialize()?;
    let base = signature_base(params.components, &value, target, fields)?;
    let sig = hmac_sha256(key.as_bytes(), &base);
    Ok(SignatureHeaders {
        signature_input: format!("{label}={value}"),
        signature: format!("{label}=:{}:", STANDARD.encode(sig)),
    })
}

/// One call of the SDK to sign: its request line, its body, when it was
/// made (Unix seconds) and its nonce.
#[derive(Debug, Clone, Copy)]
pub struct SdkCall<'a> {
    pub method: &'a str,
    /// Origin form: path and query as sent.
    pub target: &'a str,
    pub body: &'a [u8],
    pub created: u64,
    pub nonce: &'a str,
}

/// The headers with which the SDK signs a call (PROTOCOL.md section 3): the
/// clearance, the body's `Content-Digest`, and the `pc` signature over
/// [`DEFAULT_COMPONENTS`] with the clearance's key, `keyid` being its cid.
pub fn sdk_headers(
    key: &SigningKey,
    cid: &str,
    clearance: &str,
    call: &SdkCall<'_>,
) -> Result<[(&'static str, String); 4], SignatureError> {
    let digest = content_digest(call.body);
    let fields = [
        ("content-digest", digest.as_str()),
        (CLEARANCE_HEADER, clearance),
    ];
    let params = SignParams {
        components: &DEFAULT_COMPONENTS,
        created: call.created,
        nonce: Some(call.nonce),
        keyid: cid,
        alg: Some(ALG),
    };
    // The default components cover neither scheme nor authority.
    let target = RequestTarget::from_origin_form(call.method, "http", "", call.target);
    let signed = sign(key, LABEL, &params, &target, &fields)?;
    Ok([
        (CLEARANCE_HEADER, clearance.to_owned()),
        ("content-digest", digest),
        ("signature-input", signed.signature_input),
        ("signature", signed.signature),
    ])
}

/// A verified signature: record `replay_key()` for
/// [`SignatureVerifier::replay_ttl_ms`] in the replay store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    pub keyid: String,
    pub nonce: String,
    pub created: u64,
}

impl VerifiedSignature {
    /// `pc:n:<keyid>:<nonce>`: nonces are scoped to one clearance. Record
    /// it for [`SignatureVerifier::replay_ttl_ms`] in the replay store
    /// (`StateStore::put_if_absent` or a [`SeenStore`]).
    pub fn replay_key(&self) -> String {
        format!("pc:n:{}:{}", self.keyid, self.nonce)
    }
}

/// Verifies `Signature-Input` + `Signature` with a per-clearance key.
#[derive(Debug, Clone)]
pub struct SignatureVerifier {
    pub label: String,
    /// Components every signature must cover.
    pub required: Vec<String>,
    /// How old `created` may be (default 300 s).
    pub max_age_s: u64,
    /// How far in the future `created` may be (clock skew, default 30 s).
    pub max_future_s: u64,
    /// Signatures created before this (unix seconds) are `Stale`: the
    /// replay record does not reach back before it (a restarted gateway
    /// with in-memory state), so their nonces cannot be checked.
    pub not_before_s: u64,
}

impl Default for SignatureVerifier {
    fn default() -> Self {
        Self {
            label: LABEL.to_owned(),
            required: DEFAULT_COMPONENTS.iter().map(|s| (*s).to_owned()).collect(),
            max_age_s: 300,
            max_future_s: 30,
            not_before_s: 0,
        }
    }
}

impl SignatureVerifier {
    /// How long a nonce must be remembered: the whole acceptance window.
    pub fn replay_ttl_ms(&self) -> u64 {
        (self.max_age_s + self.max_future_s) * 1000
    }

    /// Verifies the signature labelled [`Self::label`].
    ///
    /// Order: presence (`Missing`), structure and parameters (`Invalid`),
    /// `keyid == expected_keyid`, the `created` window (`Stale`), the HMAC
    /// over the rebuilt base (`Invalid(Mismatch)`), then, when `body` is
    /// given, the body against `Content-Digest` (`DigestMismatch`). Pass
    /// `body = None` to check the digest yourself while streaming
    /// ([`DigestCheck`]).
    pub fn verify(
        &self,
        target: &RequestTarget<'_>,
        fields: &(impl Fields + ?Sized),
        body: Option<&[u8]>,
        key: &SigningKey,
        expected_keyid: &str,
        now_s: u64,
    ) -> Result<VerifiedSignature, SignatureError> {
        let mut raw = Vec::with_capacity(256);
        field_value(fields, "signature-input", &mut raw).ok_or(SignatureError::Missing)?;
        let inputs: Dictionary = Parser::new(&raw)
            .parse()
            .map_err(|_| invalid(InvalidReason::Malformed))?;
        raw.clear();
        field_value(fields, "signature", &mut raw).ok_or(SignatureError::Missing)?;
        let sigs: Dictionary = Parser::new(&raw)
            .parse()
            .map_err(|_| invalid(InvalidReason::Malformed))?;
        let (Some(input), Some(sig)) = (
            inputs.get(self.label.as_str()),
            sigs.get(self.label.as_str()),
        ) else {
            return Err(SignatureError::Missing);
        };
        let ListEntry::InnerList(list) = input else {
            return Err(invalid(InvalidReason::Malformed));
        };
        let sig = match sig {
            ListEntry::Item(i) => i
                .bare_item
                .as_byte_sequence()
                .ok_or(invalid(InvalidReason::Malformed))?,
            ListEntry::InnerList(_) => return Err(invalid(InvalidReason::Malformed)),
        };

        // Covered components: plain strings without parameters.
        let mut components: Vec<&str> = Vec::with_capacity(list.items.len());
        for item in &list.items {
            if !item.params.is_empty() {
                return Err(invalid(InvalidReason::UnsupportedComponent));
            }
            let s = item
                .bare_item
                .as_string()
                .ok_or(invalid(InvalidReason::Malformed))?;
            components.push(s.as_str());
        }
        if !self
            .required
            .iter()
            .all(|r| components.contains(&r.as_str()))
        {
            return Err(invalid(InvalidReason::NotCovered));
        }

        let p = &list.params;
        let str_param = |k: &str| match p.get(k) {
            Some(BareItem::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let int_param = |k: &str| match p.get(k) {
            Some(BareItem::Integer(i)) => Some(i64::from(*i)),
            _ => None,
        };
        if str_param("alg") != Some(ALG) {
            return Err(invalid(InvalidReason::Algorithm));
        }
        let (Some(created), Some(nonce), Some(keyid)) =
            (int_param("created"), str_param("nonce"), str_param("keyid"))
        else {
            return Err(invalid(InvalidReason::MissingParameter));
        };
        if nonce.is_empty() || nonce.len() > 128 {
            return Err(invalid(InvalidReason::MissingParameter));
        }
        if !bool::from(keyid.as_bytes().ct_eq(expected_keyid.as_bytes())) {
            return Err(invalid(InvalidReason::KeyId));
        }
        let created = u64::try_from(created).map_err(|_| SignatureError::Stale)?;
        if created > now_s.saturating_add(self.max_future_s)
            || now_s.saturating_sub(created) > self.max_age_s
            || created < self.not_before_s
        {
            return Err(SignatureError::Stale);
        }
        if let Some(expires) = int_param("expires") {
            if u64::try_from(expires).map_or(true, |e| e <= now_s) {
                return Err(SignatureError::Stale);
            }
        }

        // @signature-params: the canonical serialization of the inner list.
        let mut params_value = String::with_capacity(200);
        let mut ser = ListSerializer::with_buffer(&mut params_value);
        ser.members(std::iter::once(input));
        let _ = ser.finish();
        let base = signature_base(&components, &params_value, target, fields)?;
        let expected = hmac_sha256(key.as_bytes(), &base);
        if !bool::from(expected.as_slice().ct_eq(sig)) {
            return Err(invalid(InvalidReason::Mismatch));
        }

        if let Some(body) = body {
            raw.clear();
            field_value(fields, "content-digest", &mut raw)
                .ok_or(invalid(InvalidReason::MissingComponent))?;
            verify_content_digest(&raw, body)?;
        }
        Ok(VerifiedSignature {
            keyid: keyid.to_owned(),
            nonce: nonce.to_owned(),
            created,
        })
    }

    /// [`verify`](Self::verify), then the nonce through `seen`.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_and_consume(
        &self,
        target: &RequestTarget<'_>,
        fields: &(impl Fields + ?Sized),
        body: Option<&[u8]>,
        key: &SigningKey,
        expected_keyid: &str,
        now_s: u64,
        seen: &dyn SeenStore,
    ) -> Result<VerifiedSignature, SignatureError> {
        let v = self.verify(target, fields, body, key, expected_keyid, now_s)?;
        if !seen.first_use(v.replay_key().as_bytes(), self.replay_ttl_ms()) {
            return Err(SignatureError::Replayed);
        }
        Ok(v)
    }
}
