//! Core URLs end to end: the challenge endpoints, clearances, signed
//! requests, replays and forgeries, risk headers, and the policy bands.

mod common;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{Origin, gateway, send};
use portcullis_challenge::SigningKey;
use portcullis_challenge::pow::{decode_nonce, solve};
use portcullis_challenge::signature::{SdkCall, sdk_headers};

const POLICY: &str = r#"
[challenge]
difficulty = 8
[[policies]]
name = "api"
path = "/api/"
clearance = "required"
signature = true
"#;

/// A client that went through the check: its device, clearance and key.
struct Cleared {
    device: String,
    cid: String,
    clearance: String,
    key: SigningKey,
}

async fn clear(addr: SocketAddr, device: &str) -> Cleared {
    let dev = [
        ("x-pc-device", device.to_owned()),
        (
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".to_owned(),
        ),
        ("accept", "application/json".to_owned()),
        ("accept-language", "zh-CN".to_owned()),
    ];
    let challenge = send(addr, "GET", "/.portcullis/challenge", &dev, "").await;
    assert_eq!(challenge.status, 200, "{}", challenge.body);
    let challenge = challenge.json();
    let nonce = decode_nonce(challenge["nonce"].as_str().unwrap()).unwrap();
    let solution = solve(&nonce, challenge["difficulty"].as_u64().unwrap() as u8);
    let body = serde_json::json!({
        "token": challenge["token"],
        "solution": solution,
        "report": {
            "sdk": "js/0.1.0", "runtime": "browser", "platform": "ios",
            "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
            "solve_ms": 40, "since_start_ms": 900, "languages": ["zh-CN"],
            "screen": {"width": 390, "height": 844, "dpr": 3, "color_depth": 24},
            "timezone": "Asia/Shanghai", "touch": true, "max_touch_points": 5,
        },
    })
    .to_string();
    let verified = send(addr, "POST", "/.portcullis/verify", &dev, &body).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    let again = send(addr, "POST", "/.portcullis/verify", &dev, &body).await;
    assert_eq!(again.status, 409, "a challenge is solved once");
    let v = verified.json();
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v["signing_key"].as_str().unwrap())
        .unwrap();
    Cleared {
        device: device.to_owned(),
        cid: v["cid"].as_str().unwrap().to_owned(),
        clearance: v["clearance"].as_str().unwrap().to_owned(),
        key: SigningKey::from_bytes(key.try_into().unwrap()),
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The headers of a request signed by `client` (with `nonce`).
fn signed(
    client: &Cleared,
    method: &str,
    target: &str,
    body: &str,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let call = SdkCall {
        method,
        target,
        body: body.as_bytes(),
        created: now_s(),
        nonce,
    };
    let signature = sdk_headers(&client.key, &client.cid, &client.clearance, &call).unwrap();
    let mut headers = vec![("x-pc-device", client.device.clone())];
    headers.extend(signature);
    headers.extend([
        ("user-agent", "Mozilla/5.0 (iPhone)".into()),
        ("accept", "application/json".into()),
        ("accept-language", "en".into()),
    ]);
    headers
}

#[tokio::test]
async fn without_a_clearance_api_clients_get_json_and_browsers_the_interstitial() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, POLICY).await;
    let api = send(
        gw.listen,
        "GET",
        "/api/orders",
        &[("accept", "application/json".into())],
        "",
    )
    .await;
    assert_eq!(api.status, 401);
    assert_eq!(api.header("x-pc-error"), Some("clearance_required"));
    assert_eq!(api.json()["challenge"], "/.portcullis/challenge");
    assert!(api.json()["request_id"].is_string());
    let page = send(
        gw.listen,
        "GET",
        "/api/orders",
        &[
            ("sec-fetch-mode", "navigate".into()),
            ("accept", "text/html".into()),
        ],
        "",
    )
    .await;
    assert_eq!(page.status, 401);
    assert!(
        page.body.contains("/.portcullis/sdk/index.js"),
        "{}",
        page.body
    );
    let sdk = send(gw.listen, "GET", "/.portcullis/sdk/index.js", &[], "").await;
    assert_eq!(sdk.status, 200);
    assert!(sdk.body.contains("getClearance"));
    let outside = send(gw.listen, "GET", "/static/app.js", &[], "").await;
    assert_eq!(outside.status, 200, "URLs no policy names pass untouched");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn a_signed_request_passes_with_risk_headers_and_forgeries_are_refused() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, POLICY).await;
    let alice = clear(gw.listen, "device-alice-0001").await;

    let body = r#"{"sku":"A-100","qty":1}"#;
    let headers = signed(&alice, "POST", "/api/coupon?x=1", body, "nonce-0001");
    let ok = send(gw.listen, "POST", "/api/coupon?x=1", &headers, body).await;
    assert_eq!(ok.status, 200, "{} {}", ok.head, ok.body);
    {
        let seen = origin.last_headers.lock();
        let rank: u8 = seen["x-wx-risk-rank"].to_str().unwrap().parse().unwrap();
        assert!(rank <= 1, "rank {rank}");
        assert_eq!(seen["x-wx-sub-session"], alice.cid.as_str());
        assert_eq!(seen["x-wx-platform"], "ios");
        assert_eq!(seen["x-wx-device"], "device-alice-0001");
    }
    let hits = origin.hits();

    let replay = send(gw.listen, "POST", "/api/coupon?x=1", &headers, body).await;
    assert_eq!(replay.status, 403);
    assert_eq!(replay.header("x-pc-error"), Some("signature_replayed"));

    let fresh = signed(&alice, "POST", "/api/coupon?x=1", body, "nonce-0002");
    let tampered = send(
        gw.listen,
        "POST",
        "/api/coupon?x=1",
        &fresh,
        r#"{"sku":"A-100","qty":9}"#,
    )
    .await;
    assert_eq!(tampered.status, 403);
    assert_eq!(tampered.header("x-pc-error"), Some("digest_mismatch"));

    let other_query = signed(&alice, "POST", "/api/coupon?x=1", body, "nonce-0003");
    let moved = send(gw.listen, "POST", "/api/coupon?x=2", &other_query, body).await;
    assert_eq!(moved.status, 403);
    assert_eq!(moved.header("x-pc-error"), Some("signature_invalid"));

    let bob = clear(gw.listen, "device-bob-00002").await;
    let mut stolen = signed(&alice, "POST", "/api/coupon?x=1", body, "nonce-0004");
    stolen[0].1 = bob.device.clone();
    let wrong_device = send(gw.listen, "POST", "/api/coupon?x=1", &stolen, body).await;
    assert_eq!(wrong_device.status, 401);
    assert_eq!(
        wrong_device.header("x-pc-error"),
        Some("clearance_wrong_device")
    );

    let mut unsigned = signed(&alice, "POST", "/api/coupon?x=1", body, "nonce-0005");
    unsigned.retain(|(name, _)| *name != "signature" && *name != "signature-input");
    let missing = send(gw.listen, "POST", "/api/coupon?x=1", &unsigned, body).await;
    assert_eq!(missing.status, 403);
    assert_eq!(missing.header("x-pc-error"), Some("signature_missing"));

    assert_eq!(origin.hits(), hits, "no refused request reached the origin");
}

#[tokio::test]
async fn risk_bands_intercept_with_the_policy_response_or_only_record_in_trial() {
    let origin = Origin::start().await;
    let config = r#"
[traffic.automation]
action = "tag"
[[policies]]
name = "vote"
path = "/api/vote"
intercept_at = 2
debug = true
intercept = { status = 451, body = '{"error":"vote not counted","id":"{{request_id}}"}', headers = { x-reason = "risk" } }
[[policies]]
name = "trial"
path = "/api/trial"
intercept_at = 2
mode = "log-only"
"#;
    let gw = gateway(&origin, config).await;
    let script = [("user-agent", "python-requests/2.31".to_owned())];
    let blocked = send(gw.listen, "POST", "/api/vote", &script, "").await;
    assert_eq!(blocked.status, 451, "{}", blocked.body);
    assert_eq!(blocked.header("x-reason"), Some("risk"));
    let id = blocked.header("x-request-id").unwrap().to_owned();
    assert!(blocked.body.contains(&id));
    assert_eq!(origin.hits(), 0);

    let trial = send(gw.listen, "POST", "/api/trial", &script, "").await;
    assert_eq!(trial.status, 200, "log-only passes");
    assert_eq!(origin.hits(), 1);
    let seen = origin.last_headers.lock();
    let rank: u8 = seen["x-wx-risk-rank"].to_str().unwrap().parse().unwrap();
    assert!(rank >= 2);
}

#[tokio::test]
async fn the_highest_risk_gets_the_captcha_instead_of_the_work() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "[challenge]\nrefuse_at = 0\n").await;
    let dev = [("x-pc-device", "device-carol-003".to_owned())];
    let challenge = send(gw.listen, "GET", "/.portcullis/challenge", &dev, "").await;
    assert_eq!(challenge.status, 403);
    assert_eq!(challenge.json()["error"], "captcha_required");
    let puzzle = send(gw.listen, "GET", "/.portcullis/captcha", &dev, "").await;
    assert_eq!(puzzle.status, 200, "{}", puzzle.body);
    let token = puzzle.json()["token"].as_str().unwrap().to_owned();
    let image = send(
        gw.listen,
        "GET",
        &format!("/.portcullis/captcha/bg?token={token}"),
        &dev,
        "",
    )
    .await;
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    let robot = serde_json::json!({
        "captcha": token,
        "answer": {"x": 3.0, "trace": [[0, 0, 0], [10, 3, 0]]},
    });
    let answer = send(
        gw.listen,
        "POST",
        "/.portcullis/verify",
        &dev,
        &robot.to_string(),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(matches!(
        answer.json()["error"].as_str(),
        Some("wrong_answer" | "robot_trace")
    ));
}

#[tokio::test]
async fn the_endpoints_are_limited_per_device_and_a_nat_address_is_not_refused() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let dev = [("x-pc-device", "device-dave-0004".to_owned())];
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(
            send(gw.listen, "GET", "/.portcullis/challenge", &dev, "")
                .await
                .status,
        );
    }
    // The default burst of one device is 6 calls.
    assert!(statuses.iter().take(6).all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == 429), "{statuses:?}");
    // 150 phones behind the same address each get their challenge, with
    // more work as the address's rate rises.
    let mut difficulties = Vec::new();
    for i in 0..150 {
        let phone = [("x-pc-device", format!("campus-phone-{i:04}"))];
        let answer = send(gw.listen, "GET", "/.portcullis/challenge", &phone, "").await;
        assert_eq!(answer.status, 200, "phone {i}");
        difficulties.push(answer.json()["difficulty"].as_u64().unwrap_or(0));
    }
    assert!(difficulties[149] > difficulties[0], "{difficulties:?}");
    assert_eq!(
        origin.hits(),
        0,
        "the origin never sees the gateway's endpoints"
    );
}

#[tokio::test]
async fn business_decision_example_passes_everything_with_the_gateways_own_risk_headers() {
    let origin = Origin::start().await;
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/business-decision.toml"
    ))
    .unwrap();
    let gw = gateway(&origin, &example).await;
    let script = [
        ("user-agent", "python-requests/2.31".to_owned()),
        ("x-wx-risk-rank", "0".to_owned()),
        ("x-wx-device-risk-rank", "0".to_owned()),
        ("x-account-id", "acct-1".to_owned()),
    ];
    let reply = send(gw.listen, "POST", "/api/coupon/claim", &script, "{}").await;
    assert_eq!(
        reply.status, 200,
        "business decision passes: {}",
        reply.body
    );
    let seen = origin.last_headers.lock().clone();
    let rank: u8 = seen["x-wx-risk-rank"].to_str().unwrap().parse().unwrap();
    assert!(
        rank >= 2,
        "the forged rank 0 was replaced by the gateway's: {rank}"
    );
    assert_eq!(seen.get_all("x-wx-risk-rank").iter().count(), 1);
    assert_eq!(seen["x-wx-client-ip"], "127.0.0.1");
    assert!(seen.contains_key("x-wx-call-id"));
    let phone = [
        (
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".to_owned(),
        ),
        ("accept", "application/json".to_owned()),
        ("accept-language", "zh-CN".to_owned()),
        ("x-account-id", "acct-2".to_owned()),
    ];
    let reply = send(gw.listen, "GET", "/api/feed", &phone, "").await;
    assert_eq!(reply.status, 200);
    let seen = origin.last_headers.lock().clone();
    let rank: u8 = seen["x-wx-risk-rank"].to_str().unwrap().parse().unwrap();
    assert!(rank <= 1, "an ordinary request: {rank}");
}
