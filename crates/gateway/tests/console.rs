//! The console against a running gateway: authentication (passwords,
//! sessions and CSRF, API tokens, the admin token, login limits), the audit
//! log, policy changes applied to live traffic and rolled back, file
//! reloads keeping the overlay, trial mode, and events found by cid.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{BROWSER, Origin, get, raw, status_of};
use portcullis_challenge::pow::{decode_nonce, solve};
use portcullis_config::Config;
use portcullis_gateway::{ConfigSource, Overrides, Running, Services};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-console-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration text of a gateway with store and console in `dir`.
fn config_text(dir: &Path, origin: &Origin, extra: &str) -> String {
    // One hash for every test: a new hash in a reloaded file would end the
    // sessions (a changed password does).
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| portcullis_console::hash_password(PASSWORD).unwrap());
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[events]
log = false
# Until the proxy asks `EventSink::wants_passed`, clean passes reach the
# store only when the log asks for them.
log_passed = true
[store]
path = "{events}"
batch_delay_ms = 20
[console]
path = "{console}"
admin_password_hash = "{hash}"
login_attempts = 3
[challenge]
difficulty = 8
[[upstreams]]
url = "{origin}"
{extra}"#,
        events = dir.join("events.db").display(),
        console = dir.join("console.db").display(),
        origin = origin.url(),
    )
}

async fn start(source: ConfigSource, admin_token: Option<&str>) -> Running {
    let config = source.load(&Overrides::default()).expect("valid config");
    let services = Services {
        admin_token: admin_token.map(str::to_owned),
        ..Services::open(&config).expect("store and console open")
    };
    portcullis_gateway::start_with(source, Overrides::default(), services)
        .await
        .expect("gateway starts")
}

async fn gateway(dir: &TempDir, origin: &Origin, extra: &str) -> Running {
    let config = Config::parse(&config_text(&dir.0, origin, extra)).expect("valid");
    start(ConfigSource::Fixed(Box::new(config)), None).await
}

/// An HTTP answer of the admin listener.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// A client of the admin API with a session or a bearer token.
#[derive(Clone, Default)]
struct Api {
    addr: Option<SocketAddr>,
    cookie: Option<String>,
    csrf: Option<String>,
    bearer: Option<String>,
}

impl Api {
    fn new(gw: &Running) -> Api {
        Api {
            addr: gw.admin,
            ..Api::default()
        }
    }

    fn with_bearer(&self, token: &str) -> Api {
        Api {
            addr: self.addr,
            bearer: Some(token.to_owned()),
            ..Api::default()
        }
    }

    fn without_csrf(&self) -> Api {
        Api {
            csrf: None,
            ..self.clone()
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n");
        if let Some(cookie) = &self.cookie {
            request.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if let Some(csrf) = &self.csrf {
            request.push_str(&format!("X-CSRF-Token: {csrf}\r\n"));
        }
        if let Some(token) = &self.bearer {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let addr = self.addr.expect("admin listener");
        let text = raw(addr, request.as_bytes(), Duration::from_secs(10)).await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Answer {
            status: status_of(&text),
            head: head.to_owned(),
            json: serde_json::from_str(body).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body)).await
    }

    /// Logs in; the answer and, on success, a client with the session.
    async fn login(&self, user: &str, password: &str) -> (Answer, Api) {
        let answer = self
            .post(
                "/api/login",
                json!({ "username": user, "password": password }),
            )
            .await;
        let cookie = answer
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .map(str::to_owned);
        let api = Api {
            addr: self.addr,
            cookie,
            csrf: answer.json["csrf_token"].as_str().map(str::to_owned),
            bearer: None,
        };
        (answer, api)
    }
}

async fn admin_session(gw: &Running) -> Api {
    let (answer, api) = Api::new(gw).login("admin", PASSWORD).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    api
}

/// Polls `probe` until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(gw: &Running, target: &str) -> u16 {
    status_of(&get(gw.listen, target, BROWSER).await)
}

#[tokio::test]
async fn passwords_sessions_csrf_tokens_and_the_audit_log() {
    let dir = TempDir::new("auth");
    let origin = Origin::start().await;
    let config = Config::parse(&config_text(&dir.0, &origin, "")).unwrap();
    let gw = start(ConfigSource::Fixed(Box::new(config)), Some("admin-s3cret")).await;
    let anonymous = Api::new(&gw);

    assert_eq!(anonymous.get("/api/policies").await.status, 401);
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    let (wrong, _) = anonymous.login("admin", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let (nobody, _) = anonymous.login("nobody", PASSWORD).await;
    assert_eq!(nobody.status, 401, "same answer for an unknown user");

    let (answer, admin) = anonymous.login("admin", PASSWORD).await;
    assert_eq!(answer.status, 200);
    let cookie = answer.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert_eq!(admin.get("/api/session").await.json["user"], "admin");

    // A change under a session needs the CSRF token.
    let no_csrf = admin
        .without_csrf()
        .post("/api/tokens", json!({ "name": "ci" }))
        .await;
    assert_eq!(no_csrf.status, 403);
    let created = admin.post("/api/tokens", json!({ "name": "ci" })).await;
    assert_eq!(created.status, 201, "{created:?}");
    let token = created.json["token"].as_str().unwrap().to_owned();
    let token_id = created.json["info"]["id"].as_i64().unwrap();
    assert!(token.starts_with("pct_"));

    // The API token works without a session or CSRF token; so does the admin token.
    let robot = anonymous.with_bearer(&token);
    assert_eq!(robot.get("/api/policies").await.status, 200);
    let validated = robot.post("/api/policies/validate", json!({})).await;
    assert_eq!(validated.json["valid"], true);
    assert_eq!(robot.get("/api/session").await.json["user"], "token:ci");
    assert_eq!(robot.get("/metrics").await.status, 200);
    assert_eq!(
        anonymous.get("/metrics").await.status,
        401,
        "the admin token is set"
    );
    let root = anonymous.with_bearer("admin-s3cret");
    let metrics = root.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        anonymous
            .with_bearer("admin-s3creT")
            .get("/api/audit")
            .await
            .status,
        401
    );

    // A revoked token stops working at once.
    let revoked = admin
        .call("DELETE", &format!("/api/tokens/{token_id}"), None)
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(robot.get("/api/policies").await.status, 401);

    // Every change is in the audit log, with who and what.
    let audit = root.get("/api/audit").await.json;
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        &actions[..3],
        [
            ("token.revoke", "admin"),
            ("token.create", "admin"),
            ("login", "admin")
        ]
    );
    assert!(actions.contains(&("password.set", "config")));
    assert!(audit[0]["ip"].as_str().unwrap().starts_with("127.0.0.1"));

    // Logging out ends the session.
    assert_eq!(admin.post("/api/logout", json!({})).await.status, 204);
    assert_eq!(admin.get("/api/session").await.status, 401);

    // Failed logins are limited per address (3 in this configuration).
    let mut limited = 0;
    for _ in 0..4 {
        let (answer, _) = anonymous.login("admin", "guess").await;
        if answer.status == 429 {
            limited += 1;
            assert!(answer.header("retry-after").is_some());
        }
    }
    assert!(limited >= 1, "the fourth failure is refused");
    let (blocked, _) = anonymous.login("admin", PASSWORD).await;
    assert_eq!(
        blocked.status, 429,
        "even the right password, until the window ends"
    );
}

const COUPON: &str = r#"
[[policies]]
name = "coupon"
path = "/api/coupon"
"#;

fn coupon_overlay(extra: Value) -> Value {
    let mut policy = json!({ "name": "coupon", "path": "/api/coupon" });
    if let (Some(p), Some(e)) = (policy.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({ "policies": [policy] })
}

async fn status_within(gw: &Running, target: &str, want: u16, limit: Duration) -> bool {
    eventually(limit, || async {
        (status(gw, target).await == want).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn policy_changes_apply_to_live_traffic_and_roll_back() {
    let dir = TempDir::new("policy");
    let origin = Origin::start().await;
    let file = dir.0.join("portcullis.toml");
    std::fs::write(&file, config_text(&dir.0, &origin, COUPON)).unwrap();
    let gw = start(ConfigSource::File(file.clone()), None).await;
    let admin = admin_session(&gw).await;
    assert_eq!(status(&gw, "/api/coupon").await, 200);

    // Errors name their field, and nothing is applied.
    let bad = coupon_overlay(json!({ "intercept_at": 7 }));
    let checked = admin.post("/api/policies/validate", bad.clone()).await;
    assert_eq!(checked.json["valid"], false);
    assert_eq!(
        checked.json["errors"][0]["field"],
        "policies[0].intercept_at"
    );
    let refused = admin
        .post("/api/policies/apply", json!({ "document": bad }))
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(
        refused.json["errors"][0]["field"],
        "policies[0].intercept_at"
    );

    // Intercept every request of the route with a custom answer.
    let strict = coupon_overlay(json!({
        "intercept_at": 0,
        "intercept": { "status": 451, "body": "{\"error\":\"closed\",\"id\":\"{{request_id}}\"}" }
    }));
    let started = Instant::now();
    let applied = admin
        .post(
            "/api/policies/apply",
            json!({ "document": strict, "comment": "close coupons", "base_version": null }),
        )
        .await;
    assert_eq!(applied.status, 200, "{applied:?}");
    assert_eq!(applied.json["version"], 1);
    assert!(
        applied.json["summary"]
            .as_str()
            .unwrap()
            .contains("coupon changed (intercept: unset"),
        "{applied:?}"
    );
    assert!(status_within(&gw, "/api/coupon", 451, Duration::from_secs(5)).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status(&gw, "/other").await, 200, "other routes untouched");

    // A stale base version is refused.
    let stale = admin
        .post(
            "/api/policies/apply",
            json!({ "document": {}, "base_version": 0 }),
        )
        .await;
    assert_eq!(stale.status, 409);

    // A change of the file is reloaded with the overlay still in force.
    let with_extra = format!("{COUPON}\n[[policies]]\nname = \"vote\"\npath = \"/api/vote\"\n");
    std::fs::write(&file, config_text(&dir.0, &origin, &with_extra)).unwrap();
    let reloaded = eventually(Duration::from_secs(5), || async {
        let current = admin.get("/api/policies").await.json;
        (current["file"]["policies"].as_array().map(Vec::len) == Some(2)).then_some(current)
    })
    .await
    .expect("the file is reloaded");
    assert_eq!(
        reloaded["effective"]["policies"].as_array().unwrap().len(),
        1
    );
    assert_eq!(reloaded["overlay_version"], 1);
    assert_eq!(reloaded["in_force"], true);
    assert_eq!(status(&gw, "/api/coupon").await, 451);

    // Back to the file: version 0.
    let back = admin
        .post("/api/policies/rollback", json!({ "version": 0 }))
        .await;
    assert_eq!(back.status, 200, "{back:?}");
    assert_eq!(back.json["version"], 2);
    assert!(status_within(&gw, "/api/coupon", 200, Duration::from_secs(5)).await);
    let history = admin.get("/api/policies/history").await.json;
    assert_eq!(history[0]["version"], 2);
    assert_eq!(history[1]["comment"], "close coupons");
    let v1 = admin.get("/api/policies/history/1").await.json;
    assert_eq!(v1["document"]["policies"][0]["intercept_at"], 0);

    // Rolling forward to version 1 again.
    let again = admin
        .post("/api/policies/rollback", json!({ "version": 1 }))
        .await;
    assert_eq!(again.json["version"], 3);
    assert!(status_within(&gw, "/api/coupon", 451, Duration::from_secs(5)).await);

    // The deny list is part of the same versioned document.
    let denied = admin
        .call(
            "PUT",
            "/api/lists",
            Some(json!({ "allow": null, "deny": ["127.0.0.1/32"] })),
        )
        .await;
    assert_eq!(denied.status, 200, "{denied:?}");
    assert!(status_within(&gw, "/other", 403, Duration::from_secs(5)).await);
    let lists = admin.get("/api/lists").await.json;
    assert_eq!(lists["deny_source"], "console");
    let current = admin.get("/api/policies").await.json;
    assert_eq!(
        current["document"]["policies"][0]["intercept_at"], 0,
        "the lists change kept the policies"
    );
    admin
        .call(
            "PUT",
            "/api/lists",
            Some(json!({ "allow": null, "deny": null })),
        )
        .await;
    assert!(status_within(&gw, "/other", 200, Duration::from_secs(5)).await);

    let audit = admin.get("/api/audit").await.json;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        &actions[..5],
        [
            "lists.update",
            "lists.update",
            "policy.rollback",
            "policy.rollback",
            "policy.apply"
        ]
    );
}

#[tokio::test]
async fn log_only_policies_count_what_they_would_have_stopped() {
    let dir = TempDir::new("trial");
    let origin = Origin::start().await;
    let gw = gateway(&dir, &origin, COUPON).await;
    let admin = admin_session(&gw).await;
    let trial = coupon_overlay(json!({ "intercept_at": 0, "mode": "log-only" }));
    let applied = admin
        .post("/api/policies/apply", json!({ "document": trial }))
        .await;
    assert_eq!(applied.status, 200, "{applied:?}");
    for _ in 0..3 {
        assert_eq!(status(&gw, "/api/coupon").await, 200, "log-only passes");
    }
    let counted = eventually(Duration::from_secs(5), || async {
        let trial = admin.get("/api/policies/trial?window=hour").await.json;
        let events = trial["counts"][0]["events"].as_u64().unwrap_or(0);
        (events >= 3).then_some(trial)
    })
    .await
    .expect("the trial is counted");
    assert_eq!(counted["counts"][0]["route"], "coupon");
    assert_eq!(counted["counts"][0]["would"], "intercept");
    assert_eq!(counted["policies"][0]["name"], "coupon");
    let listed = admin.get("/api/events?trial=true&route=coupon").await.json;
    assert_eq!(listed["events"][0]["would"], "intercept");
    assert_eq!(listed["events"][0]["action"], "pass");
}

/// Solves the gateway's proof of work; returns the clearance and its cid.
async fn clearance(addr: SocketAddr) -> (String, String) {
    let head = "x-pc-device: dev-console-1\r\nUser-Agent: Mozilla/5.0 (iPhone)\r\nAccept: application/json\r\nAccept-Language: zh-CN\r\n";
    let challenge = get(addr, "/.portcullis/challenge", head).await;
    let body = challenge.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let challenge: Value = serde_json::from_str(body).expect("challenge JSON");
    let nonce = decode_nonce(challenge["nonce"].as_str().unwrap()).unwrap();
    let solution = solve(&nonce, challenge["difficulty"].as_u64().unwrap() as u8);
    let report = json!({
        "token": challenge["token"],
        "solution": solution,
        "report": { "sdk": "js/0.1.0", "runtime": "browser", "platform": "ios",
                    "user_agent": "Mozilla/5.0 (iPhone)", "solve_ms": 40,
                    "since_start_ms": 900, "languages": ["zh-CN"], "touch": true },
    })
    .to_string();
    let request = format!(
        "POST /.portcullis/verify HTTP/1.1\r\nHost: test\r\n{head}Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{report}",
        report.len()
    );
    let verified = raw(addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&verified), 200, "{verified}");
    let body = verified.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body).unwrap();
    (
        v["clearance"].as_str().unwrap().to_owned(),
        v["cid"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn intercepted_requests_are_found_by_cid_and_counted() {
    let dir = TempDir::new("events");
    let origin = Origin::start().await;
    let shop = "[[policies]]\nname = \"shop\"\npath = \"/api/shop\"\nclearance = \"optional\"\nintercept_at = 0\n";
    let gw = gateway(&dir, &origin, shop).await;
    let admin = admin_session(&gw).await;
    let (clearance, cid) = clearance(gw.listen).await;
    let headers = format!("{BROWSER}x-pc-device: dev-console-1\r\nx-pc-clearance: {clearance}\r\n");
    let answer = get(gw.listen, "/api/shop", &headers).await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    for _ in 0..5 {
        assert_eq!(status(&gw, "/plain").await, 200);
    }

    // The verify answer carries the cid too, and may be stored first.
    let found = eventually(Duration::from_secs(5), || async {
        let page = admin.get(&format!("/api/events?cid={cid}")).await.json;
        page["events"]
            .as_array()?
            .iter()
            .find(|event| event["status"] == 403)
            .cloned()
    })
    .await
    .expect("the intercepted request is found by its cid");
    assert_eq!(found["route"], "shop");
    assert_eq!(found["status"], 403);
    assert_eq!(found["layer"], "policy");
    assert_eq!(found["device_id"], "dev-console-1");
    assert!(found["signals"].as_array().is_some_and(|s| !s.is_empty()));
    let request_id = found["request_id"].as_str().unwrap();
    assert!(
        answer.contains(request_id),
        "the answer carries the request id"
    );

    let by_request = admin
        .get(&format!("/api/events/request/{request_id}"))
        .await;
    assert_eq!(by_request.json["cid"], cid.as_str());
    let id: i64 = found["id"]
        .as_str()
        .expect("ids are strings")
        .parse()
        .unwrap();
    assert_eq!(
        admin.get(&format!("/api/events/{id}")).await.json["request_id"],
        request_id
    );
    assert_eq!(admin.get("/api/events/1").await.status, 404);

    // Every request counts on the dashboard, passes included.
    let summary = eventually(Duration::from_secs(5), || async {
        let s = admin.get("/api/dashboard/summary?window=hour").await.json;
        (s["totals"]["requests"].as_u64() >= Some(6)).then_some(s)
    })
    .await
    .expect("the requests are counted");
    assert!(summary["totals"]["intercepts"].as_u64() >= Some(1));
    assert!(summary["totals"]["passes"].as_u64() >= Some(5));
    assert!(summary["store"]["written"].as_u64() >= Some(6));
    let by_layer = admin
        .get("/api/dashboard/series?window=hour&group=layer&kind=intercept")
        .await
        .json;
    assert_eq!(by_layer["series"][0]["key"], "policy");
    let top = admin
        .get("/api/dashboard/top?window=day&field=route&order=intercepts")
        .await
        .json;
    assert_eq!(top[0]["key"], "shop");
    let metrics = admin.get("/metrics").await;
    assert_eq!(metrics.status, 200, "a console session reads the metrics");
    let anonymous = Api::new(&gw).get("/metrics").await;
    assert_eq!(anonymous.status, 401, "no admin token set, still closed");
}

#[tokio::test]
async fn a_revoked_clearance_is_challenged_again() {
    let dir = TempDir::new("revoke");
    let origin = Origin::start().await;
    let vip = "[[policies]]\nname = \"vip\"\npath = \"/api/vip\"\nclearance = \"required\"\n";
    let gw = gateway(&dir, &origin, vip).await;
    let admin = admin_session(&gw).await;
    let (clearance, cid) = clearance(gw.listen).await;
    let headers = format!("{BROWSER}x-pc-device: dev-console-1\r\nx-pc-clearance: {clearance}\r\n");
    assert_eq!(status_of(&get(gw.listen, "/api/vip", &headers).await), 200);

    assert_eq!(
        admin
            .post("/api/clearances/not-a-cid/revoke", json!({}))
            .await
            .status,
        400
    );
    let revoked = admin
        .post(&format!("/api/clearances/{cid}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.json);
    let answer = get(gw.listen, "/api/vip", &headers).await;
    assert_eq!(status_of(&answer), 401, "{answer}");
    assert!(answer.contains("x-pc-error: clearance_revoked"), "{answer}");
    let audit = admin.get("/api/audit").await.json;
    assert!(audit.to_string().contains("clearance.revoke"), "{audit}");
}

/// Every answer of the check is an event with its reason, in the store (so
/// the interception log and the solve rate), and in the metrics.
#[tokio::test]
async fn answers_of_the_check_are_events_counted_in_the_solve_rate() {
    let dir = TempDir::new("checks");
    let origin = Origin::start().await;
    let vip = "[[policies]]\nname = \"vip\"\npath = \"/api/vip\"\nclearance = \"required\"\n";
    let gw = gateway(&dir, &origin, vip).await;
    let admin = admin_session(&gw).await;
    let device = format!("{BROWSER}x-pc-device: dev-console-1\r\n");
    let challenged = get(gw.listen, "/api/vip", &device).await;
    assert_eq!(status_of(&challenged), 401, "{challenged}");
    let malformed = format!(
        "POST /.portcullis/verify HTTP/1.1\r\nHost: test\r\n{device}Content-Type: application/json\r\nConnection: close\r\nContent-Length: 5\r\n\r\nnot j"
    );
    let refused = raw(gw.listen, malformed.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&refused), 400, "{refused}");
    clearance(gw.listen).await;

    let routes = eventually(Duration::from_secs(5), || async {
        let reply = admin
            .get("/api/dashboard/challenges?window=hour")
            .await
            .json;
        let routes = reply["routes"].as_array()?.clone();
        let solved = |i: usize| routes.get(i)?["total"]["solved"].as_u64();
        (routes.len() == 2 && solved(0) == Some(1) && solved(1) == Some(1)).then_some(routes)
    })
    .await
    .expect("the challenge, its solution and the failure are counted");
    let check = &routes[0]["total"];
    assert_eq!(routes[0]["route"], "");
    assert_eq!(
        (check["challenged"].as_u64(), check["failed"].as_u64()),
        (Some(1), Some(1))
    );
    let vip = &routes[1]["total"];
    assert_eq!(routes[1]["route"], "vip");
    assert_eq!(vip["challenged"], 1);
    assert_eq!(vip["solve_rate"], 1.0);

    for (rule, path, evidence) in [
        ("portal_issued", "/.portcullis/challenge", "difficulty"),
        ("portal_solved", "/.portcullis/verify", "risk"),
        ("portal_failed", "/.portcullis/verify", "malformed"),
    ] {
        let page = admin.get(&format!("/api/events?rule={rule}")).await.json;
        let event = &page["events"][0];
        assert_eq!(event["path"], path, "{rule}: {page}");
        assert_eq!(event["device_id"], "dev-console-1");
        let signal = event["signals"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == rule))
            .unwrap_or_else(|| panic!("{rule}: {event}"));
        assert!(
            signal["evidence"]
                .as_str()
                .is_some_and(|e| e.contains(evidence)),
            "{signal}"
        );
    }
    let metrics = raw_metrics(&gw, &admin).await;
    for line in [
        r#"portcullis_challenge_answers_total{outcome="issued",reason=""} 1"#,
        r#"portcullis_challenge_answers_total{outcome="solved",reason=""} 1"#,
        r#"portcullis_challenge_answers_total{outcome="failed",reason="malformed"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// The metrics text, read with the console session.
async fn raw_metrics(gw: &Running, admin: &Api) -> String {
    let cookie = admin.cookie.clone().expect("a session");
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    let addr = gw.admin.expect("admin listener");
    raw(addr, request.as_bytes(), Duration::from_secs(5)).await
}
