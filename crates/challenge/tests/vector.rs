//! The shared test vector (testdata/signature-vector.json), also checked by
//! sdk/js/test and printed in PROTOCOL.md: Rust and the SDK must agree.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_challenge::signature::{self, DEFAULT_COMPONENTS, RequestTarget, SignParams};
use portcullis_challenge::*;
use rand::RngCore;

/// An RNG that returns fixed bytes (the vector's cid).
struct Fixed([u8; 16]);
impl RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.copy_from_slice(&self.0[..dst.len()]);
    }
}

const SECRET: &[u8] = b"portcullis-test-vector-secret-32";

fn vector() -> serde_json::Value {
    serde_json::from_str(include_str!("../testdata/signature-vector.json")).unwrap()
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k}"))
}

fn mint() -> MintedClearance {
    let auth = ClearanceAuthority::new(Keyring::new(1, SECRET).unwrap());
    let client = ClientBinding {
        ip: "203.0.113.7".parse().unwrap(),
        device_id: "dev-test-vector-0001",
    };
    let cid: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
    auth.mint_with(
        &client,
        Platform::Android,
        0,
        1_767_225_600_000,
        &mut Fixed(cid),
    )
    .unwrap()
}

fn build(
    m: &MintedClearance,
    body: &str,
) -> (
    String,
    Vec<(&'static str, String)>,
    SignatureHeaders,
    String,
) {
    let digest = signature::content_digest(body.as_bytes());
    let cid = m.claims.cid.to_string();
    let fields = vec![
        ("content-type", "application/json".to_owned()),
        ("content-digest", digest.clone()),
        ("x-pc-clearance", m.token.clone()),
        ("x-pc-device", "dev-test-vector-0001".to_owned()),
    ];
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let target = RequestTarget {
        method: "POST",
        scheme: "https",
        authority: "api.example.com",
        path: "/api/coupon/claim",
        query: Some("campaign=spring&n=1"),
    };
    let params = SignParams {
        components: &DEFAULT_COMPONENTS,
        created: 1_767_225_660,
        nonce: Some("bm9uY2UtdGVzdC0wMDAx"),
        keyid: &cid,
        alg: Some("hmac-sha256"),
    };
    let value = params.serialize().unwrap();
    let base =
        signature::signature_base(&DEFAULT_COMPONENTS, &value, &target, refs.as_slice()).unwrap();
    let headers = signature::sign(&m.signing_key, "pc", &params, &target, refs.as_slice()).unwrap();
    (digest, fields, headers, String::from_utf8(base).unwrap())
}

#[test]
#[ignore = "prints a fresh vector; run with --ignored --nocapture"]
fn print_vector() {
    let m = mint();
    let body = r#"{"sku":"A-100","qty":1}"#;
    let (digest, _, h, base) = build(&m, body);
    let v = serde_json::json!({
        "server_secret": std::str::from_utf8(SECRET).unwrap(),
        "cid": m.claims.cid.to_string(),
        "clearance": m.token,
        "signing_key": m.signing_key.to_base64url(),
        "device_id": "dev-test-vector-0001",
        "method": "POST",
        "url": "https://api.example.com/api/coupon/claim?campaign=spring&n=1",
        "body": body,
        "created": 1_767_225_660u64,
        "nonce": "bm9uY2UtdGVzdC0wMDAx",
        "content_digest": digest,
        "signature_base": base,
        "signature_input": h.signature_input,
        "signature": h.signature,
        "pow": {
            "nonce_hex": "000102030405060708090a0b0c0d0e0f",
            "difficulty": 16,
            "counter": 56427,
            "hash_hex": "0000c7995caa5cd15a3f8f393caac36a28bdf15cfcd4c73882f7d01f7cee7227"
        }
    });
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
}

#[test]
fn vector_matches() {
    let v = vector();
    let m = mint();
    assert_eq!(m.claims.cid.to_string(), s(&v, "cid"));
    assert_eq!(m.token, s(&v, "clearance"));
    assert_eq!(m.signing_key.to_base64url(), s(&v, "signing_key"));
    let (digest, fields, h, base) = build(&m, s(&v, "body"));
    assert_eq!(digest, s(&v, "content_digest"));
    assert_eq!(base, s(&v, "signature_base"));
    assert_eq!(h.signature_input, s(&v, "signature_input"));
    assert_eq!(h.signature, s(&v, "signature"));

    // The gateway side accepts it, with the headers as a client sends them.
    let mut all: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("signature-input", s(&v, "signature_input")));
    all.push(("signature", s(&v, "signature")));
    let target = RequestTarget::from_origin_form(
        "POST",
        "https",
        "api.example.com",
        "/api/coupon/claim?campaign=spring&n=1",
    );
    let verifier = SignatureVerifier::default();
    let ok = verifier
        .verify(
            &target,
            all.as_slice(),
            Some(s(&v, "body").as_bytes()),
            &m.signing_key,
            s(&v, "cid"),
            1_767_225_700,
        )
        .unwrap();
    assert_eq!(ok.nonce, s(&v, "nonce"));
    assert_eq!(ok.created, 1_767_225_660);

    // PROTOCOL.md shows the same vector.
    let protocol = include_str!("../PROTOCOL.md");
    for k in [
        "signature_input",
        "signature",
        "content_digest",
        "clearance",
        "signing_key",
    ] {
        assert!(protocol.contains(s(&v, k)), "PROTOCOL.md lacks {k}");
    }
    for line in s(&v, "signature_base").lines() {
        assert!(
            protocol.contains(line),
            "PROTOCOL.md lacks base line {line}"
        );
    }
    let key = URL_SAFE_NO_PAD.decode(s(&v, "signing_key")).unwrap();
    assert_eq!(key.len(), 32);
    assert!(STANDARD.decode(&s(&v, "signature")[4..48]).is_ok());
}

/// RFC 9421 appendix B.2.5: hmac-sha256 over "date", "@authority",
/// "content-type" of the RFC's test request, with test-shared-secret.
#[test]
fn rfc9421_b25() {
    let secret = STANDARD
        .decode("uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==")
        .unwrap();
    let fields = [
        ("Host", "example.com"),
        ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("Content-Type", "application/json"),
        (
            "Content-Digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("Content-Length", "18"),
    ];
    let target =
        RequestTarget::from_origin_form("POST", "https", "example.com", "/foo?param=Value&Pet=dog");
    let comps = ["date", "@authority", "content-type"];
    let params = SignParams {
        components: &comps,
        created: 1_618_884_473,
        nonce: None,
        keyid: "test-shared-secret",
        alg: None,
    };
    let value = params.serialize().unwrap();
    assert_eq!(
        value,
        r#"("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
    );
    let base = signature::signature_base(&comps, &value, &target, &fields).unwrap();
    assert_eq!(
        String::from_utf8(base.clone()).unwrap(),
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );
    let sig = signature::hmac_sha256(&secret, &base);
    assert_eq!(
        STANDARD.encode(sig),
        "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="
    );
}

/// The SDK's copy of the vector is the same file.
#[test]
fn sdk_copy_is_identical() {
    let sdk: serde_json::Value =
        serde_json::from_str(include_str!("../../../sdk/js/test/vector.json")).unwrap();
    assert_eq!(sdk, vector());
}
