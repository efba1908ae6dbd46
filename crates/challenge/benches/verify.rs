//! Budgets (issue 4 / issue 6): signature verify + 1 KB body digest < 10 µs;
//! proof-of-work verify + clearance mint < 50 µs.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_challenge::signature::{self, DEFAULT_COMPONENTS, RequestTarget, SignParams};
use portcullis_challenge::*;

fn bench(c: &mut Criterion) {
    let keys = Keyring::new(1, &[3u8; 32]).expect("key");
    let auth = ClearanceAuthority::new(keys.clone());
    let issuer = ChallengeIssuer::new(keys);
    let client = ClientBinding {
        ip: "203.0.113.9".parse().expect("ip"),
        device_id: "Zm9vYmFyYmF6cXV4cXV1eA",
    };
    let minted = auth
        .mint(&client, Platform::Android, 0, 1_000)
        .expect("mint");
    let cid = minted.claims.cid.to_string();

    // A signed POST with a 1 KB body, as the SDK sends it.
    let body = vec![b'x'; 1024];
    let digest = signature::content_digest(&body);
    let mut headers: Vec<(&str, String)> = vec![
        ("content-type", "application/json".into()),
        ("content-digest", digest),
        ("x-pc-clearance", minted.token.clone()),
        ("x-pc-device", client.device_id.into()),
    ];
    let target = RequestTarget::from_origin_form(
        "POST",
        "https",
        "api.example.com",
        "/api/coupon/claim?campaign=spring&n=1",
    );
    let params = SignParams {
        components: &DEFAULT_COMPONENTS,
        created: 1_767_225_600,
        nonce: Some("cmFuZG9tLW5vbmNlLTEyMzQ"),
        keyid: &cid,
        alg: Some("hmac-sha256"),
    };
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let h = signature::sign(&minted.signing_key, "pc", &params, &target, refs.as_slice())
        .expect("sign");
    headers.push(("signature-input", h.signature_input));
    headers.push(("signature", h.signature));
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let verifier = SignatureVerifier::default();

    c.bench_function("signature_verify_1k_body", |b| {
        b.iter(|| {
            verifier
                .verify(
                    black_box(&target),
                    black_box(refs.as_slice()),
                    Some(black_box(&body)),
                    &minted.signing_key,
                    &cid,
                    1_767_225_610,
                )
                .expect("valid")
        })
    });

    c.bench_function("clearance_verify_and_key", |b| {
        b.iter(|| {
            let claims = auth
                .verify(black_box(&minted.token), 2_000, (&client).into())
                .expect("valid");
            auth.signing_key(&claims).expect("key")
        })
    });

    // Gateway layer-2 path: clearance verify + key + signature verify.
    c.bench_function("clearance_plus_signature_verify_1k", |b| {
        b.iter(|| {
            let claims = auth
                .verify(black_box(&minted.token), 2_000, (&client).into())
                .expect("valid");
            let key = auth.signing_key(&claims).expect("key");
            verifier
                .verify(
                    &target,
                    refs.as_slice(),
                    Some(&body),
                    &key,
                    &cid,
                    1_767_225_610,
                )
                .expect("valid")
        })
    });

    let ch = issuer
        .issue_with(&client, 0, 12, 1_000, &mut rand::rng())
        .expect("issue");
    let nonce = pow::decode_nonce(&ch.nonce).expect("nonce");
    let solution = pow::solve(&nonce, ch.difficulty);
    c.bench_function("pow_verify_plus_clearance_mint", |b| {
        b.iter(|| {
            let solved = issuer
                .verify_solution(black_box(&ch.token), solution, 2_000, &client)
                .expect("solved");
            auth.mint(&client, Platform::Android, solved.risk, 2_000)
                .expect("mint")
        })
    });

    c.bench_function("challenge_issue", |b| {
        b.iter(|| issuer.issue(&client, 0, 0.0, 1_000).expect("issue"))
    });

    let report: ClientReport = serde_json::from_str(
        r#"{"sdk":"js/0.1.0","runtime":"browser","webdriver":false,"headless_markers":[],"platform":"linux","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/131","solve_ms":40,"since_start_ms":800,"interactions":{"pointer":2},"screen":{"width":1280,"height":720,"dpr":1,"color_depth":24},"languages":["en-US"],"timezone":"UTC","touch":false,"max_touch_points":0,"cores":2}"#,
    )
    .expect("report");
    c.bench_function("report_parse_and_assess", |b| {
        b.iter(|| {
            let r: ClientReport = serde_json::to_value(black_box(&report))
                .and_then(serde_json::from_value)
                .expect("report");
            assess(&r)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
