//! Request signature verification: each rejection is its own error.

use std::cell::RefCell;
use std::collections::HashSet;

use portcullis_challenge::signature::{self, DEFAULT_COMPONENTS, RequestTarget, SignParams};
use portcullis_challenge::*;

struct Mem(RefCell<HashSet<Vec<u8>>>);
impl SeenStore for Mem {
    fn first_use(&self, id: &[u8], _ttl_ms: u64) -> bool {
        self.0.borrow_mut().insert(id.to_vec())
    }
}

const NOW: u64 = 1_767_225_600;
const KEYID: &str = "oKGio6SlpqeoqaqrrK2urw";

fn key() -> SigningKey {
    SigningKey::from_bytes([7u8; 32])
}

struct Req {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    target: String,
}

impl Req {
    fn fields(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
    fn target(&self) -> RequestTarget<'_> {
        RequestTarget::from_origin_form("POST", "https", "api.example.com", &self.target)
    }
    fn set(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_owned(), value.to_owned()));
    }
}

fn signed_with(components: &[&str], created: u64, nonce: &str, target: &str, body: &[u8]) -> Req {
    let mut r = Req {
        headers: vec![
            ("content-digest".into(), signature::content_digest(body)),
            ("x-pc-clearance".into(), "TOKEN".into()),
        ],
        body: body.to_vec(),
        target: target.into(),
    };
    let params = SignParams {
        components,
        created,
        nonce: Some(nonce),
        keyid: KEYID,
        alg: Some("hmac-sha256"),
    };
    let f = r.fields();
    if let Ok(h) = signature::sign(&key(), "pc", &params, &r.target(), f.as_slice()) {
        r.set("signature-input", &h.signature_input);
        r.set("signature", &h.signature);
    }
    r
}

fn signed() -> Req {
    signed_with(&DEFAULT_COMPONENTS, NOW, "n-1", "/api/x?a=1", b"{\"a\":1}")
}

fn verify(r: &Req, now: u64) -> Result<VerifiedSignature, SignatureError> {
    let f = r.fields();
    SignatureVerifier::default().verify(
        &r.target(),
        f.as_slice(),
        Some(&r.body),
        &key(),
        KEYID,
        now,
    )
}

fn inv(reason: InvalidReason) -> Result<VerifiedSignature, SignatureError> {
    Err(SignatureError::Invalid(reason))
}

#[test]
fn accepts_and_returns_nonce() {
    let r = signed();
    let v = verify(&r, NOW + 10).unwrap();
    assert_eq!(v.nonce, "n-1");
    assert_eq!(v.keyid, KEYID);
    assert_eq!(v.replay_key(), "pc:n:oKGio6SlpqeoqaqrrK2urw:n-1");
}

#[test]
fn replay_through_store() {
    let r = signed();
    let seen = Mem(RefCell::new(HashSet::new()));
    let f = r.fields();
    let ver = SignatureVerifier::default();
    let go = || {
        ver.verify_and_consume(
            &r.target(),
            f.as_slice(),
            Some(&r.body),
            &key(),
            KEYID,
            NOW,
            &seen,
        )
    };
    assert!(go().is_ok());
    assert_eq!(go(), Err(SignatureError::Replayed));
    assert_eq!(ver.replay_ttl_ms(), 330_000);
}

#[test]
fn missing() {
    let mut r = signed();
    r.headers.retain(|(k, _)| k != "signature");
    assert_eq!(verify(&r, NOW), Err(SignatureError::Missing));
    let mut r = signed();
    r.headers.retain(|(k, _)| k != "signature-input");
    assert_eq!(verify(&r, NOW), Err(SignatureError::Missing));
    let mut r = signed();
    let si = r
        .headers
        .iter()
        .find(|(k, _)| k == "signature-input")
        .unwrap()
        .1
        .replacen("pc=", "other=", 1);
    r.set("signature-input", &si);
    assert_eq!(verify(&r, NOW), Err(SignatureError::Missing));
}

#[test]
fn tampering() {
    // body changed, digest header kept: the signature holds, the digest does not
    let mut r = signed();
    r.body = b"{\"a\":2}".to_vec();
    assert_eq!(verify(&r, NOW), Err(SignatureError::DigestMismatch));
    // body and digest changed together: the signature breaks
    let mut r = signed();
    r.body = b"{\"a\":2}".to_vec();
    r.set(
        "content-digest",
        &signature::content_digest(&r.body.clone()),
    );
    assert_eq!(verify(&r, NOW), inv(InvalidReason::Mismatch));
    // path, query, method, clearance
    let mut r = signed();
    r.target = "/api/y?a=1".into();
    assert_eq!(verify(&r, NOW), inv(InvalidReason::Mismatch));
    let mut r = signed();
    r.target = "/api/x?a=2".into();
    assert_eq!(verify(&r, NOW), inv(InvalidReason::Mismatch));
    let mut r = signed();
    r.target = "/api/x".into();
    assert_eq!(verify(&r, NOW), inv(InvalidReason::Mismatch));
    let mut r = signed();
    r.set("x-pc-clearance", "OTHER");
    assert_eq!(verify(&r, NOW), inv(InvalidReason::Mismatch));
    let r = signed();
    let f = r.fields();
    let get = RequestTarget::from_origin_form("GET", "https", "api.example.com", "/api/x?a=1");
    assert_eq!(
        SignatureVerifier::default().verify(&get, f.as_slice(), Some(&r.body), &key(), KEYID, NOW),
        inv(InvalidReason::Mismatch)
    );
    // another key
    assert_eq!(
        SignatureVerifier::default().verify(
            &r.target(),
            f.as_slice(),
            Some(&r.body),
            &SigningKey::from_bytes([8; 32]),
            KEYID,
            NOW
        ),
        inv(InvalidReason::Mismatch)
    );
    // another clearance's keyid
    assert_eq!(
        SignatureVerifier::default().verify(
            &r.target(),
            f.as_slice(),
            Some(&r.body),
            &key(),
            "AAAAAAAAAAAAAAAAAAAAAA",
            NOW
        ),
        inv(InvalidReason::KeyId)
    );
}

#[test]
fn window() {
    let r = signed();
    assert!(verify(&r, NOW + 300).is_ok());
    assert_eq!(verify(&r, NOW + 301), Err(SignatureError::Stale));
    assert!(verify(&r, NOW - 30).is_ok());
    assert_eq!(verify(&r, NOW - 31), Err(SignatureError::Stale));
}

#[test]
fn signatures_from_before_the_replay_record_are_stale() {
    let r = signed();
    let f = r.fields();
    let verifier = |not_before_s| SignatureVerifier {
        not_before_s,
        ..SignatureVerifier::default()
    };
    let check = |v: SignatureVerifier| {
        v.verify(
            &r.target(),
            f.as_slice(),
            Some(&r.body),
            &key(),
            KEYID,
            NOW + 5,
        )
    };
    assert!(check(verifier(NOW)).is_ok());
    assert_eq!(check(verifier(NOW + 1)), Err(SignatureError::Stale));
}

#[test]
fn structure() {
    let r = signed_with(
        &["@method", "@path", "content-digest", "x-pc-clearance"],
        NOW,
        "n",
        "/a",
        b"",
    );
    assert_eq!(verify(&r, NOW), inv(InvalidReason::NotCovered));
    let mut r = signed();
    r.set("signature", "pc=:not base64");
    assert_eq!(verify(&r, NOW), inv(InvalidReason::Malformed));
    let mut r = signed();
    r.set("signature", "pc=\"string\"");
    assert_eq!(verify(&r, NOW), inv(InvalidReason::Malformed));
    let mut r = signed();
    let si = r
        .headers
        .iter()
        .find(|(k, _)| k == "signature-input")
        .unwrap()
        .1
        .replace("hmac-sha256", "rsa-pss-sha512");
    r.set("signature-input", &si);
    assert_eq!(verify(&r, NOW), inv(InvalidReason::Algorithm));
    let mut r = signed();
    let si = r
        .headers
        .iter()
        .find(|(k, _)| k == "signature-input")
        .unwrap()
        .1
        .replace(";nonce=\"n-1\"", "");
    r.set("signature-input", &si);
    assert_eq!(verify(&r, NOW), inv(InvalidReason::MissingParameter));
    let mut r = signed();
    let si = r
        .headers
        .iter()
        .find(|(k, _)| k == "signature-input")
        .unwrap()
        .1
        .replace("\"@query\"", "\"@query\";req");
    r.set("signature-input", &si);
    assert_eq!(verify(&r, NOW), inv(InvalidReason::UnsupportedComponent));
    let r = signed_with(
        &[
            "@method",
            "@path",
            "@query",
            "content-digest",
            "x-pc-clearance",
            "x-absent",
        ],
        NOW,
        "n",
        "/a",
        b"",
    );
    // signing fails already: the header is absent
    assert!(r.headers.iter().all(|(k, _)| k != "signature"));
}

#[test]
fn extra_components_and_multiple_labels() {
    let mut r = signed_with(
        &[
            "@method",
            "@authority",
            "@path",
            "@query",
            "content-digest",
            "x-pc-clearance",
            "content-type",
        ],
        NOW,
        "n-2",
        "/api/x",
        b"",
    );
    // content-type absent at signing: sign() refused, so add it and re-sign
    assert!(r.headers.iter().all(|(k, _)| k != "signature"));
    r.set("content-type", " application/json ");
    let params = SignParams {
        components: &[
            "@method",
            "@authority",
            "@path",
            "@query",
            "content-digest",
            "x-pc-clearance",
            "content-type",
        ],
        created: NOW,
        nonce: Some("n-2"),
        keyid: KEYID,
        alg: Some("hmac-sha256"),
    };
    let f = r.fields();
    let h = signature::sign(&key(), "pc", &params, &r.target(), f.as_slice()).unwrap();
    // another signature from an intermediary sits beside ours
    r.set(
        "signature-input",
        &format!("proxy=(\"@method\");created=1, {}", h.signature_input),
    );
    r.set("signature", &format!("proxy=:AAAA:, {}", h.signature));
    let v = verify(&r, NOW).unwrap();
    assert_eq!(v.nonce, "n-2");
}

#[test]
fn digest_helpers() {
    let d = signature::content_digest(b"");
    assert_eq!(d, "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
    assert!(signature::verify_content_digest(d.as_bytes(), b"").is_ok());
    assert_eq!(
        signature::verify_content_digest(d.as_bytes(), b"x"),
        Err(SignatureError::DigestMismatch)
    );
    let mut c =
        DigestCheck::new(b"sha-512=:AAAA:, sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")
            .unwrap();
    c.update(b"");
    assert!(c.finish().is_ok());
    assert!(DigestCheck::new(b"sha-512=:AAAA:").is_err());
}

#[test]
fn http_headermap_fields() {
    let r = signed();
    let mut map = http::HeaderMap::new();
    for (k, v) in &r.headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let v =
        SignatureVerifier::default().verify(&r.target(), &map, Some(&r.body), &key(), KEYID, NOW);
    assert!(v.is_ok());
}

#[test]
fn sdk_headers_sign_what_the_verifier_checks_on_any_authority() {
    let call = signature::SdkCall {
        method: "POST",
        target: "/api/order?id=7",
        body: br#"{"sku":1}"#,
        created: NOW,
        nonce: "n-sdk-1",
    };
    let headers = signature::sdk_headers(&key(), KEYID, "TOKEN", &call).expect("signs");
    let fields: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let target = RequestTarget::from_origin_form("POST", "https", "api.example.com", call.target);
    let verifier = SignatureVerifier::default();
    let verified = verifier
        .verify(
            &target,
            fields.as_slice(),
            Some(call.body),
            &key(),
            KEYID,
            NOW,
        )
        .expect("the SDK's headers verify");
    assert_eq!(verified.nonce, "n-sdk-1");
    assert!(
        verifier
            .verify(
                &target,
                fields.as_slice(),
                Some(b"{\"sku\":2}"),
                &key(),
                KEYID,
                NOW
            )
            .is_err(),
        "another body must not verify"
    );
    let elsewhere =
        RequestTarget::from_origin_form("POST", "https", "api.example.com", "/api/order?id=8");
    assert!(
        verifier
            .verify(
                &elsewhere,
                fields.as_slice(),
                Some(call.body),
                &key(),
                KEYID,
                NOW
            )
            .is_err(),
        "another query must not verify"
    );
}
