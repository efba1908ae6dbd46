//! Verify + check of one bearer token per request: HS256, RS256 and ES256.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_authz::{JwtVerifier, RequestView};
use portcullis_config::{AuthConfig, JwtAlgorithm, JwtIssuerConfig, JwtRequirement};

const NOW: u64 = 1_767_225_600;
const SECRET_ENV: &str = "PORTCULLIS_AUTHZ_BENCH_SECRET";
const SECRET: &str = "bench-secret-that-is-at-least-32-bytes";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect("fixture")
}

fn issuer(name: &str, algorithm: JwtAlgorithm) -> JwtIssuerConfig {
    JwtIssuerConfig {
        name: name.into(),
        issuer: format!("https://{name}.example.com"),
        audiences: vec!["api".into()],
        algorithms: vec![algorithm],
        secret_env: None,
        public_key_pem: None,
        public_key_file: None,
        jwks_file: None,
        leeway_s: 60,
    }
}

fn token(name: &str, algorithm: Algorithm, key: &EncodingKey) -> String {
    let claims = serde_json::json!({
        "iss": format!("https://{name}.example.com"), "aud": "api", "sub": "alice",
        "exp": NOW + 600, "nbf": NOW - 10, "scope": "orders:read orders:write", "role": "user",
    });
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).expect("sign")
}

fn verifier(cache_tokens: usize) -> JwtVerifier {
    let mut hs = issuer("hs", JwtAlgorithm::HS256);
    hs.secret_env = Some(SECRET_ENV.into());
    let mut rs = issuer("rs", JwtAlgorithm::RS256);
    rs.public_key_pem = Some(fixture("rsa-public.pem"));
    let mut es = issuer("es", JwtAlgorithm::ES256);
    es.public_key_pem = Some(fixture("ec-public.pem"));
    JwtVerifier::new(&AuthConfig {
        jwt: vec![hs, rs, es],
        cache_tokens,
        ..AuthConfig::default()
    })
    .expect("verifier")
}

fn bench(c: &mut Criterion) {
    // SAFETY: single-threaded setup before any benchmark runs.
    unsafe { std::env::set_var(SECRET_ENV, SECRET) };
    let rsa = EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).expect("rsa");
    let ec = EncodingKey::from_ec_pem(fixture("ec-private.pem").as_bytes()).expect("ec");
    let tokens = [
        (
            "hs256",
            token(
                "hs",
                Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            ),
        ),
        ("rs256", token("rs", Algorithm::RS256, &rsa)),
        ("es256", token("es", Algorithm::ES256, &ec)),
    ];
    let requirement = JwtRequirement {
        scopes: vec!["orders:read".into()],
        claims: [(
            "role".to_string(),
            vec!["user".to_string(), "admin".to_string()],
        )]
        .into(),
        subject_in: Some("path:3".into()),
        ..JwtRequirement::default()
    };
    let view = RequestView {
        path: "/api/users/alice/orders",
        query: "page=2",
        json_body: None,
    };
    // First sight of a token (no cache), and the same token again (cached).
    for (label, verifier) in [("new token", verifier(0)), ("repeated", verifier(8192))] {
        for (name, token) in &tokens {
            c.bench_function(&format!("verify+check {name} {label}"), |b| {
                b.iter(|| {
                    let verified = verifier.verify(black_box(token), NOW).expect("valid");
                    verifier
                        .check(&verified, &requirement, &view)
                        .expect("allowed");
                    verified
                })
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
