//! Real tokens signed here with HS256, RS256 and ES256 keys (fixtures made
//! with openssl), verified and checked through the public API.

use std::path::Path;
use std::sync::Once;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_authz::{
    AuthzError, Denial, JwtVerifier, RequestView, TokenError, VerifiedToken, bearer_token,
};
use portcullis_config::{AuthConfig, JwtAlgorithm, JwtIssuerConfig, JwtRequirement};
use serde_json::{Value, json};

const NOW: u64 = 1_767_225_600;
const SECRET_ENV: &str = "PORTCULLIS_AUTHZ_TEST_SECRET";
const SECRET: &str = "test-secret-that-is-at-least-32-bytes!";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).expect("fixture")
}

fn secret_in_env() {
    static SET: Once = Once::new();
    // SAFETY: every test sets the same value once, before reading it.
    SET.call_once(|| unsafe { std::env::set_var(SECRET_ENV, SECRET) });
}

fn issuer(name: &str, algorithms: &[JwtAlgorithm]) -> JwtIssuerConfig {
    JwtIssuerConfig {
        name: name.into(),
        issuer: format!("https://{name}.example.com"),
        audiences: vec!["api".into()],
        algorithms: algorithms.to_vec(),
        secret_env: None,
        public_key_pem: None,
        public_key_file: None,
        jwks_file: None,
        leeway_s: 60,
    }
}

fn hs_issuer() -> JwtIssuerConfig {
    secret_in_env();
    let mut hs = issuer("hs", &[JwtAlgorithm::HS256]);
    hs.secret_env = Some(SECRET_ENV.into());
    hs
}

fn rs_issuer() -> JwtIssuerConfig {
    let mut rs = issuer("rs", &[JwtAlgorithm::RS256]);
    rs.public_key_pem = Some(fixture("rsa-public.pem"));
    rs
}

fn es_issuer() -> JwtIssuerConfig {
    let mut es = issuer("es", &[JwtAlgorithm::ES256]);
    es.public_key_file =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ec-public.pem"));
    es
}

fn verifier(issuers: Vec<JwtIssuerConfig>) -> JwtVerifier {
    JwtVerifier::new(&AuthConfig {
        jwt: issuers,
        ..AuthConfig::default()
    })
    .expect("verifier")
}

fn all_three() -> JwtVerifier {
    verifier(vec![hs_issuer(), rs_issuer(), es_issuer()])
}

fn hs_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET.as_bytes())
}
fn rs_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).expect("rsa key")
}
fn rs2_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture("rsa2-private.pem").as_bytes()).expect("rsa key")
}
fn es_key() -> EncodingKey {
    EncodingKey::from_ec_pem(fixture("ec-private.pem").as_bytes()).expect("ec key")
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": format!("https://{issuer}.example.com"),
        "aud": "api",
        "sub": "alice",
        "exp": NOW + 600,
        "nbf": NOW - 10,
        "iat": NOW - 10,
    })
}

fn sign(algorithm: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

/// A token with hand-written header and payload and a signature of garbage.
fn raw_token(header: &Value, payload: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2ln", part(header), part(payload))
}

#[test]
fn tokens_of_each_algorithm_verify() {
    let v = all_three();
    for (issuer, algorithm, key) in [
        ("hs", Algorithm::HS256, hs_key()),
        ("rs", Algorithm::RS256, rs_key()),
        ("es", Algorithm::ES256, es_key()),
    ] {
        let token = sign(algorithm, None, &claims(issuer), &key);
        let verified = v
            .verify(&token, NOW)
            .unwrap_or_else(|e| panic!("{issuer}: {e}"));
        assert_eq!(verified.issuer_name, issuer);
        assert_eq!(verified.subject.as_deref(), Some("alice"));
        assert_eq!(verified.claims["aud"], "api");
    }
}

#[test]
fn verified_tokens_are_remembered_but_their_time_is_not() {
    let token = sign(Algorithm::ES256, None, &claims("es"), &es_key());
    let cached = all_three();
    let first = cached.verify(&token, NOW).expect("valid");
    assert_eq!(cached.cached_tokens(), 1);
    assert_eq!(cached.verify(&token, NOW + 1), Ok(first.clone()));
    assert_eq!(
        cached.cached_tokens(),
        1,
        "the second verification was a hit"
    );
    assert_eq!(cached.verify(&token, NOW + 661), Err(TokenError::Expired));
    // Refused tokens are not remembered.
    let other = sign(Algorithm::RS256, None, &claims("rs"), &rs2_key());
    assert_eq!(cached.verify(&other, NOW), Err(TokenError::BadSignature));
    assert_eq!(cached.cached_tokens(), 1);
    // Without the cache, every verification is done anew, with the same results.
    let uncached = JwtVerifier::new(&AuthConfig {
        jwt: vec![es_issuer()],
        cache_tokens: 0,
        ..AuthConfig::default()
    })
    .expect("verifier");
    assert_eq!(uncached.verify(&token, NOW), Ok(first));
    assert_eq!(uncached.cached_tokens(), 0);
    assert_eq!(uncached.verify(&token, NOW + 661), Err(TokenError::Expired));
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(bearer_token(None), Err(TokenError::Missing));
    assert_eq!(bearer_token(Some(b"Basic YTpi")), Err(TokenError::Missing));
    assert_eq!(bearer_token(Some(b"Bearer")), Err(TokenError::Missing));
    assert_eq!(bearer_token(Some(b"Bearer   ")), Err(TokenError::Missing));
    assert_eq!(bearer_token(Some(b"bEaReR  a.b.c ")), Ok("a.b.c"));
    assert_eq!(
        bearer_token(Some(b"Bearer \xff")),
        Err(TokenError::Malformed)
    );
}

#[test]
fn malformed_tokens() {
    let v = all_three();
    let good = sign(Algorithm::HS256, None, &claims("hs"), &hs_key());
    let mut no_exp = claims("hs");
    no_exp.as_object_mut().expect("object").remove("exp");
    let mut text_exp = claims("hs");
    text_exp["exp"] = json!("tomorrow");
    let mut crit = Header::new(Algorithm::HS256);
    crit.crit = Some(vec!["b64".into()]);
    let cases = [
        ("empty", String::new(), TokenError::Missing),
        ("one part", "abc".to_string(), TokenError::Malformed),
        ("two parts", "abc.def".to_string(), TokenError::Malformed),
        (
            "five parts (JWE)",
            "a.b.c.d.e".to_string(),
            TokenError::Malformed,
        ),
        ("not base64", "!!.??.**".to_string(), TokenError::Malformed),
        ("padded", good.replacen('.', "=.", 1), TokenError::Malformed),
        (
            "oversize",
            format!("{good}{}", "A".repeat(8 * 1024)),
            TokenError::Malformed,
        ),
        (
            "no exp",
            sign(Algorithm::HS256, None, &no_exp, &hs_key()),
            TokenError::Malformed,
        ),
        (
            "text exp",
            sign(Algorithm::HS256, None, &text_exp, &hs_key()),
            TokenError::Malformed,
        ),
        (
            "crit header",
            jsonwebtoken::encode(&crit, &claims("hs"), &hs_key()).expect("sign"),
            TokenError::Malformed,
        ),
        (
            "payload not an object",
            raw_token(&json!({"alg": "HS256"}), &json!([1, 2])),
            TokenError::Malformed,
        ),
        (
            "signature not base64",
            format!("{}.%%%", good.rsplit_once('.').expect("dot").0),
            TokenError::Malformed,
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(v.verify(&token, NOW).map(|_| ()), Err(expected), "{name}");
    }
}

#[test]
fn bad_signatures() {
    let v = all_three();
    let other_secret = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!");
    let cases = [
        sign(Algorithm::HS256, None, &claims("hs"), &other_secret),
        sign(Algorithm::RS256, None, &claims("rs"), &rs2_key()),
        // A token whose payload was changed after signing.
        {
            let token = sign(Algorithm::ES256, None, &claims("es"), &es_key());
            let mut parts: Vec<&str> = token.split('.').collect();
            let mut forged = claims("es");
            forged["sub"] = json!("mallory");
            let payload = URL_SAFE_NO_PAD.encode(forged.to_string());
            parts[1] = &payload;
            parts.join(".")
        },
    ];
    for token in cases {
        assert_eq!(v.verify(&token, NOW), Err(TokenError::BadSignature));
    }
}

#[test]
fn any_changed_character_is_refused() {
    let v = all_three();
    for (issuer, algorithm, key) in [
        ("hs", Algorithm::HS256, hs_key()),
        ("es", Algorithm::ES256, es_key()),
    ] {
        let token = sign(algorithm, None, &claims(issuer), &key);
        // Every position for HS256; a stride for the slower ES256.
        let stride = if issuer == "hs" { 1 } else { 7 };
        for i in (0..token.len()).step_by(stride) {
            let original = token.as_bytes()[i];
            if original == b'.' {
                continue;
            }
            let replacement = if original == b'A' { 'B' } else { 'A' };
            let mut changed = token.clone();
            changed.replace_range(i..=i, &replacement.to_string());
            assert!(
                v.verify(&changed, NOW).is_err(),
                "{issuer}: changed byte {i} still verifies"
            );
        }
    }
}

#[test]
fn time_claims_with_leeway() {
    let v = all_three();
    let token_with = |field: &str, value: u64| {
        let mut c = claims("rs");
        c[field] = json!(value);
        sign(Algorithm::RS256, None, &c, &rs_key())
    };
    assert_eq!(
        v.verify(&token_with("exp", NOW - 61), NOW),
        Err(TokenError::Expired)
    );
    assert!(
        v.verify(&token_with("exp", NOW - 30), NOW).is_ok(),
        "inside the leeway"
    );
    assert_eq!(
        v.verify(&token_with("nbf", NOW + 120), NOW),
        Err(TokenError::NotYetValid)
    );
    assert!(
        v.verify(&token_with("nbf", NOW + 30), NOW).is_ok(),
        "inside the leeway"
    );
    // The same token, later: expired.
    let token = sign(Algorithm::RS256, None, &claims("rs"), &rs_key());
    assert!(v.verify(&token, NOW).is_ok());
    assert_eq!(v.verify(&token, NOW + 661), Err(TokenError::Expired));
}

#[test]
fn audiences() {
    let v = all_three();
    let with_aud = |aud: Value| {
        let mut c = claims("es");
        c["aud"] = aud;
        sign(Algorithm::ES256, None, &c, &es_key())
    };
    assert_eq!(
        v.verify(&with_aud(json!("other")), NOW),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        v.verify(&with_aud(json!(null)), NOW),
        Err(TokenError::WrongAudience)
    );
    assert!(v.verify(&with_aud(json!(["other", "api"])), NOW).is_ok());
    // An issuer without audiences does not look at `aud`.
    let mut any_audience = es_issuer();
    any_audience.audiences.clear();
    let v = verifier(vec![any_audience]);
    assert!(v.verify(&with_aud(json!("other")), NOW).is_ok());
}

#[test]
fn issuers() {
    let v = all_three();
    let mut unknown = claims("hs");
    unknown["iss"] = json!("https://evil.example.com");
    assert_eq!(
        v.verify(&sign(Algorithm::HS256, None, &unknown, &hs_key()), NOW),
        Err(TokenError::WrongIssuer)
    );
    let mut none = claims("hs");
    none.as_object_mut().expect("object").remove("iss");
    assert_eq!(
        v.verify(&sign(Algorithm::HS256, None, &none, &hs_key()), NOW),
        Err(TokenError::WrongIssuer)
    );
}

#[test]
fn algorithms_not_accepted() {
    let v = all_three();
    // `alg: none` with an empty signature.
    let none = raw_token(&json!({"alg": "none"}), &claims("hs"));
    let none = format!("{}.", none.rsplit_once('.').expect("dot").0);
    assert_eq!(v.verify(&none, NOW), Err(TokenError::BadAlgorithm));
    let hs512 = sign(Algorithm::HS512, None, &claims("hs"), &hs_key());
    assert_eq!(v.verify(&hs512, NOW), Err(TokenError::BadAlgorithm));
    // Key confusion: HS256 "signed" with the RSA issuer's public key.
    let public_as_secret = EncodingKey::from_secret(fixture("rsa-public.pem").as_bytes());
    let confused = sign(Algorithm::HS256, None, &claims("rs"), &public_as_secret);
    assert_eq!(v.verify(&confused, NOW), Err(TokenError::BadAlgorithm));
    // An ES256 token presented to the RS256-only issuer.
    let es_for_rs = sign(Algorithm::ES256, None, &claims("rs"), &es_key());
    assert_eq!(v.verify(&es_for_rs, NOW), Err(TokenError::BadAlgorithm));
}

fn write_jwks(path: &Path, keys: &[(&str, &EncodingKey, Algorithm)]) {
    let set = JwkSet {
        keys: keys
            .iter()
            .map(|(kid, key, alg)| {
                let mut jwk = Jwk::from_encoding_key(key, *alg).expect("jwk");
                jwk.common.key_id = Some((*kid).into());
                jwk
            })
            .collect(),
    };
    std::fs::write(path, serde_json::to_vec(&set).expect("json")).expect("write jwks");
}

#[test]
fn jwks_keys_are_chosen_by_kid_and_reloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    write_jwks(
        &path,
        &[
            ("k1", &rs_key(), Algorithm::RS256),
            ("k2", &rs2_key(), Algorithm::RS256),
            ("e1", &es_key(), Algorithm::ES256),
        ],
    );
    let mut config = issuer("idp", &[JwtAlgorithm::RS256, JwtAlgorithm::ES256]);
    config.jwks_file = Some(path.clone());
    let v = verifier(vec![config.clone()]);
    assert_eq!(v.files(), std::slice::from_ref(&path));

    let c = claims("idp");
    let by_k1 = sign(Algorithm::RS256, Some("k1"), &c, &rs_key());
    let by_k2 = sign(Algorithm::RS256, Some("k2"), &c, &rs2_key());
    let by_e1 = sign(Algorithm::ES256, Some("e1"), &c, &es_key());
    for token in [&by_k1, &by_k2, &by_e1] {
        assert_eq!(v.verify(token, NOW).expect("valid").issuer_name, "idp");
    }
    // The right key id with the other key's signature.
    let mislabelled = sign(Algorithm::RS256, Some("k1"), &c, &rs2_key());
    assert_eq!(v.verify(&mislabelled, NOW), Err(TokenError::BadSignature));
    let unknown = sign(Algorithm::RS256, Some("k3"), &c, &rs_key());
    assert_eq!(v.verify(&unknown, NOW), Err(TokenError::UnknownKey));
    // Without a kid, two RS256 keys could be meant; one ES256 key cannot.
    let no_kid = sign(Algorithm::RS256, None, &c, &rs_key());
    assert_eq!(v.verify(&no_kid, NOW), Err(TokenError::UnknownKey));
    assert!(
        v.verify(&sign(Algorithm::ES256, None, &c, &es_key()), NOW)
            .is_ok()
    );

    // Rotation: k1 leaves the set; a verifier built from the new file
    // refuses it and keeps k2.
    write_jwks(&path, &[("k2", &rs2_key(), Algorithm::RS256)]);
    let rebuilt = verifier(vec![config]);
    assert_eq!(rebuilt.verify(&by_k1, NOW), Err(TokenError::UnknownKey));
    assert!(rebuilt.verify(&by_k2, NOW).is_ok());
}

#[test]
fn jwks_with_foreign_keys_keeps_the_usable_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    let rsa = Jwk::from_encoding_key(&rs_key(), Algorithm::RS256).expect("jwk");
    let mut rsa = serde_json::to_value(rsa).expect("json");
    rsa["kid"] = json!("k1");
    let text = json!({"keys": [
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA", "kid": "odd"},
        {"kty": "OKP", "crv": "X25519", "x": "AA", "kid": "x"},
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
        rsa,
    ]});
    std::fs::write(&path, text.to_string()).expect("write");
    let mut config = issuer("idp", &[JwtAlgorithm::RS256]);
    config.jwks_file = Some(path);
    let v = verifier(vec![config]);
    let token = sign(Algorithm::RS256, Some("k1"), &claims("idp"), &rs_key());
    assert!(v.verify(&token, NOW).is_ok());
    let debug = format!("{v:?}");
    assert!(debug.contains("(\"idp\", 1)"), "{debug}");
}

#[test]
fn loading_errors() {
    let load = |config: JwtIssuerConfig| {
        JwtVerifier::new(&AuthConfig {
            jwt: vec![config],
            ..AuthConfig::default()
        })
        .map(|_| ())
    };
    let mut unset = issuer("a", &[JwtAlgorithm::HS256]);
    unset.secret_env = Some("PORTCULLIS_AUTHZ_TEST_UNSET_VARIABLE".into());
    assert!(matches!(load(unset), Err(AuthzError::MissingSecret { .. })));

    let mut missing_file = issuer("a", &[JwtAlgorithm::RS256]);
    missing_file.jwks_file = Some("/nonexistent/jwks.json".into());
    assert!(matches!(load(missing_file), Err(AuthzError::Read { .. })));

    let mut garbage = issuer("a", &[JwtAlgorithm::RS256]);
    garbage.public_key_pem = Some("not a key".into());
    assert!(matches!(load(garbage), Err(AuthzError::BadKey { .. })));

    // An EC key configured for RS256 only is not silently used.
    let mut wrong_type = issuer("a", &[JwtAlgorithm::RS256]);
    wrong_type.public_key_pem = Some(fixture("ec-public.pem"));
    assert!(matches!(load(wrong_type), Err(AuthzError::BadKey { .. })));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    write_jwks(&path, &[("e1", &es_key(), Algorithm::ES256)]);
    let mut nothing_usable = issuer("a", &[JwtAlgorithm::RS256]);
    nothing_usable.jwks_file = Some(path);
    assert!(matches!(
        load(nothing_usable),
        Err(AuthzError::BadKey { .. })
    ));
}

#[test]
fn short_secret_is_refused() {
    const VAR: &str = "PORTCULLIS_AUTHZ_TEST_SHORT_SECRET";
    // SAFETY: only this test uses this variable.
    unsafe { std::env::set_var(VAR, "short") };
    let mut config = issuer("a", &[JwtAlgorithm::HS256]);
    config.secret_env = Some(VAR.into());
    let result = JwtVerifier::new(&AuthConfig {
        jwt: vec![config],
        ..AuthConfig::default()
    });
    let error = result.expect_err("short secret").to_string();
    assert!(error.contains(VAR) && !error.contains("short\""), "{error}");
}

// ---- permission checks ----

fn verified(extra: Value) -> (JwtVerifier, VerifiedToken) {
    let v = all_three();
    let mut c = claims("hs");
    for (k, value) in extra.as_object().expect("object") {
        c[k] = value.clone();
    }
    let token = sign(Algorithm::HS256, None, &c, &hs_key());
    let verified = v.verify(&token, NOW).expect("valid");
    (v, verified)
}

fn view<'a>(path: &'a str, query: &'a str, body: Option<&'a [u8]>) -> RequestView<'a> {
    RequestView {
        path,
        query,
        json_body: body,
    }
}

#[test]
fn scopes_from_scope_and_scp() {
    let needs = |scopes: &[&str]| JwtRequirement {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..JwtRequirement::default()
    };
    let anywhere = view("/api/x", "", None);
    let (v, spaced) = verified(json!({"scope": "orders:read  orders:write"}));
    assert!(
        v.check(&spaced, &needs(&["orders:read", "orders:write"]), &anywhere)
            .is_ok()
    );
    assert_eq!(
        v.check(&spaced, &needs(&["orders:read", "admin"]), &anywhere),
        Err(Denial::MissingScope {
            scope: "admin".into()
        })
    );
    let (v, array) = verified(json!({"scp": ["orders:read", "admin"]}));
    assert!(
        v.check(&array, &needs(&["admin", "orders:read"]), &anywhere)
            .is_ok()
    );
    let (v, scp_text) = verified(json!({"scp": "admin"}));
    assert!(v.check(&scp_text, &needs(&["admin"]), &anywhere).is_ok());
    // A scope that is only a prefix of a granted one is not granted.
    let (v, prefix) = verified(json!({"scope": "orders:readonly"}));
    let denial = v
        .check(&prefix, &needs(&["orders:read"]), &anywhere)
        .expect_err("missing scope");
    assert_eq!(denial.as_str(), "jwt_missing_scope");
}

#[test]
fn claims_must_have_an_allowed_value() {
    let needs = |claim: &str, allowed: &[&str]| JwtRequirement {
        claims: [(
            claim.to_string(),
            allowed.iter().map(|s| s.to_string()).collect(),
        )]
        .into(),
        ..JwtRequirement::default()
    };
    let anywhere = view("/", "", None);
    let (v, t) =
        verified(json!({"role": "user", "roles": ["user", "admin"], "tier": 3, "staff": true}));
    assert!(v.check(&t, &needs("roles", &["admin"]), &anywhere).is_ok());
    assert!(v.check(&t, &needs("tier", &["2", "3"]), &anywhere).is_ok());
    assert!(v.check(&t, &needs("staff", &["true"]), &anywhere).is_ok());
    let denial = v
        .check(&t, &needs("role", &["admin"]), &anywhere)
        .expect_err("over-privileged");
    assert_eq!(
        denial,
        Denial::ClaimNotAllowed {
            claim: "role".into(),
            found: Some("user".into())
        }
    );
    assert_eq!(denial.as_str(), "jwt_claim_not_allowed");
    assert!(denial.to_string().contains("\"user\""), "{denial}");
    assert_eq!(
        v.check(&t, &needs("department", &["sales"]), &anywhere),
        Err(Denial::ClaimNotAllowed {
            claim: "department".into(),
            found: None
        })
    );
}

#[test]
fn requirement_may_limit_issuers() {
    let (v, t) = verified(json!({}));
    let only_rs = JwtRequirement {
        issuers: vec!["rs".into()],
        ..JwtRequirement::default()
    };
    assert_eq!(
        v.check(&t, &only_rs, &view("/", "", None)),
        Err(Denial::IssuerNotAllowed {
            issuer: "hs".into()
        })
    );
}

fn subject_in(location: &str) -> JwtRequirement {
    JwtRequirement {
        subject_in: Some(location.into()),
        ..JwtRequirement::default()
    }
}

#[test]
fn subject_in_path() {
    let (v, t) = verified(json!({}));
    let req = subject_in("path:3");
    assert!(
        v.check(&t, &req, &view("/api/users/alice/orders", "", None))
            .is_ok()
    );
    assert!(
        v.check(&t, &req, &view("/api/users/al%69ce", "", None))
            .is_ok()
    );
    let denial = v
        .check(&t, &req, &view("/api/users/bob/orders", "", None))
        .expect_err("another account");
    assert_eq!(
        denial,
        Denial::SubjectMismatch {
            location: "path:3".into(),
            found: Some("bob".into()),
            subject: Some("alice".into())
        }
    );
    assert_eq!(denial.as_str(), "jwt_subject_mismatch");
    // An empty segment moves the account; it is not skipped.
    assert!(
        v.check(&t, &req, &view("/api/users//alice", "", None))
            .is_err()
    );
    assert!(v.check(&t, &req, &view("/api/users", "", None)).is_err());
}

#[test]
fn subject_in_query() {
    let (v, t) = verified(json!({}));
    let req = subject_in("query:uid");
    assert!(
        v.check(&t, &req, &view("/api/orders", "page=2&uid=alice", None))
            .is_ok()
    );
    assert!(
        v.check(&t, &req, &view("/api/orders", "u%69d=%61lice", None))
            .is_ok()
    );
    assert!(
        v.check(&t, &req, &view("/api/orders", "uid=bob", None))
            .is_err()
    );
    // A second uid cannot ride along with the right one.
    let denial = v
        .check(&t, &req, &view("/api/orders", "uid=alice&uid=bob", None))
        .expect_err("smuggled account");
    assert!(matches!(denial, Denial::SubjectMismatch { found: Some(ref f), .. } if f == "bob"));
    assert!(
        v.check(&t, &req, &view("/api/orders", "page=2", None))
            .is_err()
    );
}

#[test]
fn subject_in_json_body() {
    let (v, t) = verified(json!({}));
    let req = subject_in("json:order.account");
    let mine = br#"{"order":{"account":"alice","sku":"A-1"}}"#;
    let theirs = br#"{"order":{"account":"bob","sku":"A-1"}}"#;
    assert!(
        v.check(&t, &req, &view("/api/orders", "", Some(mine)))
            .is_ok()
    );
    assert!(
        v.check(&t, &req, &view("/api/orders", "", Some(theirs)))
            .is_err()
    );
    assert!(v.check(&t, &req, &view("/api/orders", "", None)).is_err());
    assert!(
        v.check(&t, &req, &view("/api/orders", "", Some(b"{\"order\":")))
            .is_err()
    );
    // Numeric account ids compare as text.
    let (v, numeric) = verified(json!({"sub": "42"}));
    let body = br#"{"order":{"account":42}}"#;
    assert!(v.check(&numeric, &req, &view("/", "", Some(body))).is_ok());
}

#[test]
fn token_without_subject_cannot_act_on_an_account() {
    let v = all_three();
    let mut c = claims("hs");
    c.as_object_mut().expect("object").remove("sub");
    let t = v
        .verify(&sign(Algorithm::HS256, None, &c, &hs_key()), NOW)
        .expect("valid");
    assert_eq!(t.subject, None);
    assert!(
        v.check(&t, &subject_in("query:uid"), &view("/", "uid=", None))
            .is_err()
    );
}

#[test]
fn account_claim_as_text() {
    let (_, t) = verified(json!({"uid": 1234, "flags": [1]}));
    assert_eq!(t.claim_text("sub").as_deref(), Some("alice"));
    assert_eq!(t.claim_text("uid").as_deref(), Some("1234"));
    assert_eq!(t.claim_text("flags"), None);
    assert_eq!(t.claim_text("missing"), None);
}

#[test]
fn random_inputs_are_refused_without_panicking() {
    let v = all_three();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=%+/ \x7f";
    for _ in 0..3000 {
        let len = (next() % 300) as usize;
        let token: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
            .collect();
        assert!(v.verify(&token, NOW).is_err(), "{token}");
    }
    // Well-formed parts around hostile payloads: deep nesting, huge
    // numbers, wrong types for every registered claim.
    let payloads = [
        json!({"iss": "https://hs.example.com", "exp": -1}),
        json!({"iss": "https://hs.example.com", "exp": 1e308, "nbf": "soon"}),
        json!({"iss": ["https://hs.example.com"], "exp": NOW + 60}),
        json!({"iss": "https://hs.example.com", "exp": NOW + 60, "aud": {"a": 1}}),
        serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).expect("json"),
    ];
    for payload in payloads {
        let token = raw_token(&json!({"alg": "HS256"}), &payload);
        assert!(v.verify(&token, NOW).is_err(), "{payload}");
    }
}
