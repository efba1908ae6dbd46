//! PROTOCOL.md (crates/challenge) against the gateway: its two tables of
//! answers, the errors of the challenge endpoints and what each policy mode
//! answers on a core URL, are read from the document and every row is
//! played against a gateway started in-process. A row this file cannot
//! play fails the test, so the document cannot promise what is not checked.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{Origin, Reply, gateway, raw, send, status_of};
use portcullis_challenge::SigningKey;
use portcullis_challenge::pow::{decode_nonce, solve};
use portcullis_challenge::signature::{SdkCall, sdk_headers};
use portcullis_config::Config;
use portcullis_gateway::{ConfigSource, Overrides, Running, Services};
use serde_json::{Value, json};

const PROTOCOL: &str = include_str!("../../challenge/PROTOCOL.md");
const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)";
const BODY: &str = r#"{"sku":"A-100","qty":1}"#;
const ADMIN_TOKEN: &str = "protocol-test-admin-token";

/// A gateway whose console (and so its event store) is open, for the
/// actions only the console takes (revoking a clearance).
async fn gateway_with_console(origin: &Origin, extra: &str) -> Running {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[events]\nlog = false\n[[upstreams]]\nurl = \"{}\"\n{extra}",
        origin.url()
    );
    let config = Config::parse(&text).expect("test config is valid");
    let services = Services {
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        ..Services::open(&config).expect("store and console open")
    };
    let source = ConfigSource::Fixed(Box::new(config));
    portcullis_gateway::start_with(source, Overrides::default(), services)
        .await
        .expect("gateway starts")
}

/// The rows of the table after `<!-- protocol-test: {name} -->`, as cells
/// without backticks; `—` becomes an empty cell.
fn table(name: &str) -> Vec<Vec<String>> {
    let marker = format!("<!-- protocol-test: {name} -->");
    let start = PROTOCOL
        .find(&marker)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no table {marker}"));
    let rows: Vec<Vec<String>> = PROTOCOL[start + marker.len()..]
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().replace(['`', '—'], ""))
                .collect()
        })
        .collect();
    assert!(rows.len() >= 5, "table {name} has {} rows", rows.len());
    rows
}

type Headers = Vec<(&'static str, String)>;

/// The headers of an app on a phone: its device id, and the address it
/// is seen from (through the trusted proxy) when `from` is given.
fn phone(device: &str, from: Option<&str>) -> Headers {
    let mut headers = vec![
        ("user-agent", UA.to_owned()),
        ("accept", "application/json".to_owned()),
        ("accept-language", "zh-CN".to_owned()),
    ];
    if !device.is_empty() {
        headers.push(("x-pc-device", device.to_owned()));
    }
    if let Some(ip) = from {
        headers.push(("x-forwarded-for", ip.to_owned()));
    }
    headers
}

async fn challenge(addr: SocketAddr, headers: &Headers) -> Reply {
    send(addr, "GET", "/.portcullis/challenge", headers, "").await
}

/// The verify body for a challenge answer, with `solution`.
fn verify_body(challenge: &Value, solution: u64) -> String {
    json!({
        "token": challenge["token"],
        "solution": solution,
        "report": {"sdk": "js/0.1.0", "runtime": "miniprogram", "platform": "ios",
                   "user_agent": UA, "solve_ms": 40, "since_start_ms": 900},
    })
    .to_string()
}

fn solution(challenge: &Value) -> u64 {
    let nonce = decode_nonce(challenge["nonce"].as_str().expect("nonce")).expect("nonce");
    solve(
        &nonce,
        challenge["difficulty"].as_u64().expect("difficulty") as u8,
    )
}

/// A client that went through the check.
struct Cleared {
    device: String,
    cid: String,
    clearance: String,
    key: SigningKey,
}

async fn clear(addr: SocketAddr, device: &str, from: Option<&str>) -> Cleared {
    let headers = phone(device, from);
    let issued = challenge(addr, &headers).await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    let issued = issued.json();
    let body = verify_body(&issued, solution(&issued));
    let verified = send(addr, "POST", "/.portcullis/verify", &headers, &body).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    let v = verified.json();
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v["signing_key"].as_str().expect("signing key"))
        .expect("base64url");
    Cleared {
        device: device.to_owned(),
        cid: v["cid"].as_str().expect("cid").to_owned(),
        clearance: v["clearance"].as_str().expect("clearance").to_owned(),
        key: SigningKey::from_bytes(key.try_into().expect("32 bytes")),
    }
}

/// `token` with one character near its end changed: still readable, its
/// MAC no longer matches.
fn forged(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() - 5;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// The headers of `client`'s call signed over `body` with `key`, made at `created`.
fn signed(client: &Cleared, key: &SigningKey, body: &str, created: u64, nonce: &str) -> Headers {
    let call = SdkCall {
        method: "POST",
        target: "/api/order",
        body: body.as_bytes(),
        created,
        nonce,
    };
    let signature = sdk_headers(key, &client.cid, &client.clearance, &call).expect("signs");
    let mut headers = phone(&client.device, None);
    headers.push(("content-type", "application/json".to_owned()));
    headers.extend(signature);
    headers
}

/// What a core URL row needs of the gateway beyond its policy.
fn core_config(clearance: &str, signature: bool, request: &str) -> String {
    let mut challenge = String::from("[challenge]\ndifficulty = 8\n");
    let mut policy = format!(
        "[[policies]]\nname = \"api\"\npath = \"/api/\"\nclearance = \"{clearance}\"\nsignature = {signature}\n"
    );
    let mut more = String::new();
    if request.starts_with("expired") {
        challenge.push_str("clearance_ttl_s = 1\n");
    }
    if request.contains("bind_network") {
        challenge.push_str("bind_network = true\n");
        more.push_str("[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n");
    }
    if request.contains("challenge_at") {
        policy.push_str("challenge_at = 0\n");
    }
    if request.contains("intercept_at") {
        policy.push_str("intercept_at = 0\n");
    }
    if request.starts_with("revoked") {
        // Revocation is a console action: the console needs its database.
        let dir = std::env::temp_dir().join(format!("portcullis-protocol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        more.push_str(&format!(
            "[store]\npath = \"{}\"\n[console]\npath = \"{}\"\n",
            dir.join("events.db").display(),
            dir.join("console.db").display()
        ));
    }
    if request.contains("inspect_body_bytes") {
        more.push_str("[limits]\ninspect_body_bytes = 1024\nmax_body_bytes = 1048576\n");
    }
    if request.contains("on_incomplete") {
        more.push_str("[detect]\non_incomplete = \"signal\"\n");
    }
    format!("{challenge}{more}{policy}")
}

/// Plays one core URL row; returns the answer.
async fn play_core(addr: SocketAddr, admin: Option<(SocketAddr, String)>, request: &str) -> Reply {
    let get = |headers: Headers| async move { send(addr, "GET", "/api/order", &headers, "").await };
    let with_clearance = |client: &Cleared, device: &str| {
        let mut headers = phone(device, None);
        headers.push(("x-pc-clearance", client.clearance.clone()));
        headers
    };
    let post = |headers: Headers, body: &'static str| async move {
        send(addr, "POST", "/api/order", &headers, body).await
    };
    match request {
        "no clearance"
        | "no clearance, rank at challenge_at"
        | "no clearance, rank at intercept_at" => get(phone("dev-protocol-01", None)).await,
        "no clearance, browser navigation" => {
            let mut headers = phone("dev-protocol-01", None);
            headers.push(("sec-fetch-mode", "navigate".into()));
            headers.push(("accept", "text/html".into()));
            let reply = get(headers).await;
            assert!(
                reply.body.contains("/.portcullis/sdk/index.js"),
                "the interstitial page: {}",
                reply.body
            );
            reply
        }
        "clearance of another device" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            get(with_clearance(&client, "dev-protocol-02")).await
        }
        "forged clearance" => {
            let mut client = clear(addr, "dev-protocol-01", None).await;
            client.clearance = forged(&client.clearance);
            get(with_clearance(&client, "dev-protocol-01")).await
        }
        "unreadable clearance" => {
            let mut headers = phone("dev-protocol-01", None);
            headers.push(("x-pc-clearance", "not*a*clearance".into()));
            get(headers).await
        }
        "expired clearance" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            tokio::time::sleep(Duration::from_millis(2100)).await;
            get(with_clearance(&client, "dev-protocol-01")).await
        }
        "revoked clearance" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            let (admin, auth) = admin.expect("the admin listener");
            let revoke = format!(
                "POST /api/clearances/{}/revoke HTTP/1.1\r\nHost: admin\r\n{auth}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
                client.cid
            );
            let revoked = raw(admin, revoke.as_bytes(), Duration::from_secs(5)).await;
            assert_eq!(status_of(&revoked), 200, "{revoked}");
            get(with_clearance(&client, "dev-protocol-01")).await
        }
        "clearance from another network, bind_network = true" => {
            let client = clear(addr, "dev-protocol-01", Some("198.51.100.7")).await;
            let mut headers = with_clearance(&client, "dev-protocol-01");
            headers.push(("x-forwarded-for", "203.0.113.9".into()));
            get(headers).await
        }
        "valid clearance"
        | "valid clearance, unsigned"
        | "valid clearance, rank at challenge_at"
        | "valid clearance, rank at intercept_at" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            get(with_clearance(&client, "dev-protocol-01")).await
        }
        "valid clearance, cookie of a browser navigation" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            get(vec![
                ("user-agent", UA.to_owned()),
                ("sec-fetch-mode", "navigate".to_owned()),
                ("accept", "text/html".to_owned()),
                (
                    "cookie",
                    format!(
                        "pc_clearance={}; pc_device={}",
                        client.clearance, client.device
                    ),
                ),
            ])
            .await
        }
        "signed" | "signed, replayed" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            let headers = signed(&client, &client.key, BODY, now_s(), "nonce-protocol-1");
            let first = post(headers.clone(), BODY).await;
            if request == "signed" {
                return first;
            }
            assert_eq!(first.status, 200, "{} {}", first.head, first.body);
            post(headers, BODY).await
        }
        "signed with another key" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            let other = SigningKey::from_bytes([7; 32]);
            post(
                signed(&client, &other, BODY, now_s(), "nonce-protocol-2"),
                BODY,
            )
            .await
        }
        "signed, created older than signature_max_age_s" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            let created = now_s() - 400;
            post(
                signed(&client, &client.key, BODY, created, "nonce-protocol-3"),
                BODY,
            )
            .await
        }
        "signed, body changed" => {
            let client = clear(addr, "dev-protocol-01", None).await;
            let headers = signed(&client, &client.key, BODY, now_s(), "nonce-protocol-4");
            post(headers, r#"{"sku":"A-100","qty":9}"#).await
        }
        "signed, body longer than limits.inspect_body_bytes"
        | "signed, body longer than limits.inspect_body_bytes, detect.on_incomplete = \"signal\"" =>
        {
            // Long enough to arrive in more than the inspected part.
            let long = format!(r#"{{"note":"{}"}}"#, "x".repeat(256 * 1024));
            let client = clear(addr, "dev-protocol-01", None).await;
            let headers = signed(&client, &client.key, &long, now_s(), "nonce-protocol-5");
            send(addr, "POST", "/api/order", &headers, &long).await
        }
        other => panic!("PROTOCOL.md documents {other:?}, which this test cannot play"),
    }
}

#[tokio::test]
async fn every_documented_answer_on_a_core_url() {
    let origin = Origin::start().await;
    for row in table("core URL answers") {
        let [clearance, signature, request, status, code] = &row[..] else {
            panic!("a row of five cells: {row:?}");
        };
        let signature = match signature.as_str() {
            "on" => true,
            "off" => false,
            other => panic!("signature {other:?}"),
        };
        let config = core_config(clearance, signature, request);
        let gw = if request.starts_with("revoked") {
            gateway_with_console(&origin, &config).await
        } else {
            gateway(&origin, &config).await
        };
        let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
        let admin = gw.admin.map(|addr| (addr, auth));
        let reply = play_core(gw.listen, admin, request).await;
        let what = format!("clearance {clearance}, signature {signature}, {request}");
        assert_eq!(
            reply.status.to_string(),
            *status,
            "{what}: {} {}",
            reply.head,
            reply.body
        );
        assert_eq!(
            reply.header("x-pc-error").unwrap_or(""),
            code,
            "{what}: {}",
            reply.head
        );
        if reply.status == 401 && !request.contains("navigation") && code != "signature_stale" {
            assert_eq!(
                reply.json()["challenge"],
                "/.portcullis/challenge",
                "{what}"
            );
        }
        if reply.status == 200 {
            assert_eq!(reply.body, "origin ok", "{what}");
        }
    }
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("portcullis-protocol-{}", std::process::id())),
    );
}

/// What an endpoint row needs of the gateway.
fn endpoint_config(error: &str, status: &str) -> String {
    let mut challenge = String::from("[challenge]\ndifficulty = 8\n");
    let mut more = String::new();
    match (error, status) {
        ("expired", _) => challenge.push_str("challenge_ttl_s = 1\n"),
        ("wrong_network", _) => {
            challenge.push_str("bind_network = true\n");
            more.push_str("[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n");
        }
        ("captcha_required", _) => challenge.push_str("refuse_at = 0\n"),
        ("rate_limited", _) => challenge.push_str("device_per_minute = 1\ndevice_burst = 1\n"),
        _ => {}
    }
    format!("{challenge}{more}")
}

/// Plays one endpoint row; returns the answer.
async fn play_endpoint(addr: SocketAddr, endpoint: &str, status: &str, error: &str) -> Reply {
    let device = phone("dev-protocol-01", None);
    let verify = |headers: Headers, body: String| async move {
        send(addr, "POST", "/.portcullis/verify", &headers, &body).await
    };
    let issued = || async {
        challenge(addr, &phone("dev-protocol-01", None))
            .await
            .json()
    };
    match (endpoint, status, error) {
        ("verify", "400", "malformed") => verify(device, "not json".into()).await,
        ("verify", "413", "malformed") => verify(device, "x".repeat(17 * 1024)).await,
        ("verify", _, "bad_signature") => {
            let mut issued = issued().await;
            let answer = solution(&issued);
            issued["token"] = Value::String(forged(issued["token"].as_str().expect("token")));
            verify(device, verify_body(&issued, answer)).await
        }
        ("verify", _, "expired") => {
            let issued = issued().await;
            let answer = solution(&issued);
            tokio::time::sleep(Duration::from_millis(2100)).await;
            verify(device, verify_body(&issued, answer)).await
        }
        ("verify", _, "bad_solution") => loop {
            // Every counter below the first solution falls short.
            let issued = issued().await;
            let answer = solution(&issued);
            if answer > 0 {
                break verify(device, verify_body(&issued, answer - 1)).await;
            }
        },
        ("verify", _, "replayed") => {
            let issued = issued().await;
            let body = verify_body(&issued, solution(&issued));
            let first = verify(device.clone(), body.clone()).await;
            assert_eq!(first.status, 200, "{}", first.body);
            verify(device, body).await
        }
        ("verify", _, "wrong_device") => {
            let issued = issued().await;
            verify(
                phone("dev-protocol-02", None),
                verify_body(&issued, solution(&issued)),
            )
            .await
        }
        ("verify", _, "invalid_device") => {
            let issued = issued().await;
            verify(phone("", None), verify_body(&issued, solution(&issued))).await
        }
        ("verify", _, "wrong_network") => {
            let issued = challenge(addr, &phone("dev-protocol-01", Some("198.51.100.7"))).await;
            let issued = issued.json();
            let moved = phone("dev-protocol-01", Some("203.0.113.9"));
            verify(moved, verify_body(&issued, solution(&issued))).await
        }
        ("challenge", _, "invalid_device") => challenge(addr, &phone("", None)).await,
        ("challenge", _, "captcha_required") => challenge(addr, &device).await,
        ("challenge", _, "rate_limited") => {
            let first = challenge(addr, &device).await;
            assert_eq!(first.status, 200, "{}", first.body);
            let limited = challenge(addr, &device).await;
            assert!(limited.header("retry-after").is_some(), "{}", limited.head);
            limited
        }
        other => panic!("PROTOCOL.md documents {other:?}, which this test cannot play"),
    }
}

#[tokio::test]
async fn every_documented_error_of_the_challenge_endpoints() {
    let origin = Origin::start().await;
    for row in table("endpoint errors") {
        let [endpoint, status, error, ..] = &row[..] else {
            panic!("a row of five cells: {row:?}");
        };
        let gw = gateway(&origin, &endpoint_config(error, status)).await;
        let reply = play_endpoint(gw.listen, endpoint, status, error).await;
        let what = format!("{endpoint} {status} {error}");
        assert_eq!(reply.status.to_string(), *status, "{what}: {}", reply.body);
        assert_eq!(
            reply.json()["error"],
            error.as_str(),
            "{what}: {}",
            reply.body
        );
        assert!(
            reply.json()["request_id"].is_string(),
            "{what}: {}",
            reply.body
        );
        assert!(
            reply
                .header("cache-control")
                .is_some_and(|v| v.contains("no-store")),
            "{what}: {}",
            reply.head
        );
    }
}
