//! Hostile input never panics and never verifies: random and mutated
//! tokens, headers and reports (a cheap stand-in for fuzzing).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_challenge::signature::{self, DEFAULT_COMPONENTS, RequestTarget, SignParams};
use portcullis_challenge::*;
use rand::{Rng, RngCore};

const ALPHABET: &[u8] = b"pc=()\" ;:,*?@-_abcdefghijklmnopqrstuvwxyz0123456789=+/\\\t\x7f\xc3";

fn random_text(rng: &mut impl Rng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..max);
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

#[test]
fn tokens() {
    let keys = Keyring::new(1, &[4u8; 32]).unwrap();
    let auth = ClearanceAuthority::new(keys.clone());
    let issuer = ChallengeIssuer::new(keys.clone());
    let captcha = SliderCaptcha::new(keys);
    let client = ClientBinding {
        ip: "192.0.2.1".parse().unwrap(),
        device_id: "d",
    };
    let good = auth.mint(&client, Platform::Ios, 0, 0).unwrap().token;
    let ch = issuer.issue(&client, 0, 0.0, 0).unwrap().token;
    let pz = captcha.issue(&client, 0, &mut rand::rng()).unwrap().token;
    let mut rng = rand::rng();
    let answer = SliderAnswer {
        x: 50.0,
        trace: vec![],
    };
    for i in 0..20_000 {
        let t = match i % 3 {
            0 => {
                let mut b = vec![0u8; rng.random_range(0..220)];
                rng.fill_bytes(&mut b);
                URL_SAFE_NO_PAD.encode(b)
            }
            1 => {
                let src = [&good, &ch, &pz][rng.random_range(0..3)];
                let mut raw = URL_SAFE_NO_PAD.decode(src).unwrap();
                let at = rng.random_range(0..raw.len());
                match rng.random_range(0..3) {
                    0 => raw[at] ^= 1 << rng.random_range(0..8),
                    1 => raw.truncate(at),
                    _ => raw.insert(at, rng.random()),
                }
                URL_SAFE_NO_PAD.encode(raw)
            }
            _ => String::from_utf8_lossy(&random_text(&mut rng, 300)).into_owned(),
        };
        let unchecked = ClearanceCheck {
            device_id: None,
            ip: None,
        };
        assert!(auth.verify(&t, 1, unchecked).is_err(), "{t}");
        assert!(issuer.verify_solution(&t, 0, 1, &client).is_err());
        assert!(captcha.verify(&t, &answer, 1, &client).is_err());
        assert!(captcha.render(&t, 1).is_err());
    }
}

#[test]
fn signature_headers() {
    let key = SigningKey::from_bytes([1u8; 32]);
    let body = b"{}";
    let digest = signature::content_digest(body);
    let base = [("content-digest", digest.as_str()), ("x-pc-clearance", "T")];
    let target = RequestTarget::from_origin_form("POST", "https", "h", "/p?q");
    let params = SignParams {
        components: &DEFAULT_COMPONENTS,
        created: 1000,
        nonce: Some("n"),
        keyid: "k",
        alg: Some("hmac-sha256"),
    };
    let h = signature::sign(&key, "pc", &params, &target, &base).unwrap();
    let verifier = SignatureVerifier::default();
    let mut rng = rand::rng();
    for i in 0..20_000 {
        let (mut si, mut sg) = (
            h.signature_input.clone().into_bytes(),
            h.signature.clone().into_bytes(),
        );
        if i % 2 == 0 {
            si = random_text(&mut rng, 200);
            sg = random_text(&mut rng, 80);
        } else {
            let v = if rng.random() { &mut si } else { &mut sg };
            let at = rng.random_range(0..v.len());
            match rng.random_range(0..3) {
                0 => v[at] = ALPHABET[rng.random_range(0..ALPHABET.len())],
                1 => v.truncate(at),
                _ => v.insert(at, ALPHABET[rng.random_range(0..ALPHABET.len())]),
            }
        }
        let (si, sg) = (String::from_utf8_lossy(&si), String::from_utf8_lossy(&sg));
        if si == h.signature_input && sg == h.signature {
            continue;
        }
        let fields = [
            ("content-digest", digest.as_str()),
            ("x-pc-clearance", "T"),
            ("signature-input", &si),
            ("signature", &sg),
        ];
        let r = verifier.verify(&target, &fields, Some(body), &key, "k", 1000);
        if let Ok(v) = r {
            // Only a change the canonical re-serialization undoes can pass.
            assert_eq!(v.nonce, "n", "{si} / {sg}");
        }
        let _ = signature::verify_content_digest(&random_text(&mut rng, 80), body);
    }
}

#[test]
fn reports() {
    let mut rng = rand::rng();
    for _ in 0..5_000 {
        let text = random_text(&mut rng, 200);
        if let Ok(r) = serde_json::from_slice::<ClientReport>(&text) {
            let a = assess_with_work(&r, rng.random());
            assert!(a.risk <= 4);
        }
    }
    let mut r = ClientReport {
        solve_ms: u64::MAX,
        since_start_ms: u64::MAX,
        ..Default::default()
    };
    assert!(assess_with_work(&r, u64::MAX).risk <= 4);
    r.solve_ms = 0;
    assert!(assess_with_work(&r, u64::MAX).risk <= 4);
}

#[test]
fn shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Keyring>();
    assert_send_sync::<ChallengeIssuer>();
    assert_send_sync::<ClearanceAuthority>();
    assert_send_sync::<SignatureVerifier>();
    assert_send_sync::<SliderCaptcha>();
    assert_send_sync::<SigningKey>();
}
