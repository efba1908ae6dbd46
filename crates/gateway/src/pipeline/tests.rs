//! The pipeline without sockets: a request in, its signals, decision and
//! forwarded target out. One test per class of bypass found from outside.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Request;
use portcullis_challenge::{ClientBinding, Platform};
use portcullis_config::{Config, Overlay};
use portcullis_state::{MemoryStore, MemoryStoreOptions, StateStore};

use super::{STAGE_NAMES, run};
use crate::bans::Bans;
use crate::context::{Action, Answer, RequestContext};
use crate::control::{ConfigSource, Control, Overrides};
use crate::edge::conn::ConnLimiter;
use crate::events::{EventOutputs, EventSink};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::shared::Shared;
use crate::stages::{Exchange, InspectedBody, RequestBody, Target, raw_target};

const CHALLENGE: &str = r#"
[[upstreams]]
url = "http://127.0.0.1:9"
[[policies]]
name = "api"
path = "/api/"
hosts = ["api.local"]
clearance = "required"
signature = true
"#;

struct Harness {
    shared: Shared,
    rt: Arc<Runtime>,
}

/// What the pipeline made of one request.
struct Outcome {
    ctx: RequestContext,
    action: Action,
    target: Target,
    /// The origin-form target the origin would receive.
    forwarded: String,
    answered: Option<u16>,
}

impl Outcome {
    fn signals(&self) -> Vec<&'static str> {
        self.ctx.signals.iter().map(|s| s.name).collect()
    }

    fn challenged(&self) -> bool {
        matches!(self.action, Action::Intercept(Answer::Challenge { .. }))
    }
}

/// The shared state of a gateway over `config` without listeners, its
/// events going to `outputs`.
pub(crate) fn shared_without_sockets(
    config: &Config,
    outputs: EventOutputs,
) -> (Shared, Arc<Runtime>) {
    let rt = Arc::new(Runtime::build(config.clone(), 1).expect("runtime"));
    let metrics = Arc::new(Metrics::new(1, STAGE_NAMES));
    let state: Arc<dyn StateStore> = Arc::new(MemoryStore::new(MemoryStoreOptions::default()));
    let shared = Shared {
        runtime: ArcSwap::new(Arc::clone(&rt)),
        state: Arc::clone(&state),
        events: EventSink::start(outputs, 65_536, Arc::clone(&metrics)),
        metrics,
        conns: Arc::new(ConnLimiter::default()),
        bans: Arc::new(Bans::new(state)),
        admin_token: None,
        control: Control::new(
            ConfigSource::Fixed(Box::new(config.clone())),
            Overrides::default(),
            config.clone(),
            Overlay::default(),
        ),
        console_db: None,
        alerts: None,
    };
    (shared, rt)
}

impl Harness {
    fn new(toml: &str) -> Harness {
        let config = Config::parse(toml).expect("valid test config");
        let (shared, rt) = shared_without_sockets(&config, EventOutputs::default());
        Harness { shared, rt }
    }

    async fn send(&self, request: Request<&'static str>) -> Outcome {
        self.send_from("198.51.100.7".parse().unwrap(), request)
            .await
    }

    async fn send_from(&self, ip: IpAddr, request: Request<&'static str>) -> Outcome {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_static(body.as_bytes());
        let mut ex = Exchange {
            shared: &self.shared,
            rt: &self.rt,
            ctx: RequestContext::new("rid".into(), ip, ip),
            target: Target::provisional(),
            raw_target: raw_target(&parts.uri),
            parts,
            body: RequestBody::Read(InspectedBody::whole(body)),
            answer: None,
            tls: false,
            framing_conflict: false,
        };
        run(&mut ex).await;
        let (action, _) = ex.ctx.decide();
        Outcome {
            forwarded: ex.parts.uri.to_string(),
            answered: ex.answer.as_ref().map(|a| a.status().as_u16()),
            target: ex.target,
            ctx: ex.ctx,
            action,
        }
    }
}

fn get(target: &str, host: &str) -> Request<&'static str> {
    Request::get(target)
        .header("host", host)
        .header("accept", "application/json")
        .body("")
        .expect("request")
}

#[tokio::test]
async fn every_spelling_of_a_core_url_meets_its_policy() {
    let h = Harness::new(CHALLENGE);
    for target in [
        "/api/x",
        "/%61pi/x",
        "/ap%69/x",
        "//api/x",
        "/./api/x",
        "/%2e/api/x",
        "/api%2fx",
        "/%2fapi/x",
        "/API/x",
        "/Api/x",
        "/api;/x",
        "/api;jsessionid=1/x",
        "/x/..;/api/x",
        "/api%5cx",
        "/;/api/x",
        "/;jsessionid=1/api/x",
        "/%3b/api/x",
    ] {
        let out = h.send(get(target, "api.local")).await;
        // Challenged by the policy, or refused first as a traversal trick:
        // never through without a clearance.
        let blocked = out.action == Action::Intercept(Answer::Blocked);
        assert!(out.challenged() || blocked, "{target}: {:?}", out.signals());
        assert_eq!(out.target.path().to_lowercase(), "/api/x", "{target}");
    }
}

#[tokio::test]
async fn a_path_that_origins_would_route_to_a_core_url_never_passes_unchallenged() {
    let h = Harness::new(CHALLENGE);
    for target in [
        "/api",
        "/API",
        "/%2561pi/x",
        "/%EF%BD%81%EF%BD%90%EF%BD%89/x",
        "/api./x",
        "/api%2e/x",
        "/api%20/x",
        "/%20api/x",
        "/api%09/x",
        "/api%23/x",
        "/x%EF%BC%8F%EF%BC%8E%EF%BC%8E%EF%BC%8Fapi/x",
        "/ap%C4%B1/x",
        "/api%C2%85/x",
        "/api%E2%80%8B/x",
    ] {
        let out = h.send(get(target, "api.local")).await;
        let blocked = out.action == Action::Intercept(Answer::Blocked);
        assert!(out.challenged() || blocked, "{target}: {:?}", out.signals());
    }
    // Paths that every origin reads alike keep passing.
    for target in [
        "/apix",
        "/static/app.min.js",
        "/%E6%96%87%E7%AB%A0/x",
        "/a%20b/c",
    ] {
        let out = h.send(get(target, "api.local")).await;
        assert_eq!(out.action, Action::Pass, "{target}: {:?}", out.signals());
    }
}

#[tokio::test]
async fn a_method_override_cannot_step_around_a_method_policy() {
    let h = Harness::new(
        r#"
[[upstreams]]
url = "http://127.0.0.1:9"
[[policies]]
name = "deletes"
path = "/orders/"
methods = ["DELETE"]
clearance = "required"
"#,
    );
    let overridden = Request::post("/orders/7")
        .header("host", "shop.local")
        .header("x-http-method-override", "delete")
        .body("")
        .unwrap();
    let out = h.send(overridden).await;
    assert_eq!(
        out.action,
        Action::Intercept(Answer::Blocked),
        "{:?}",
        out.signals()
    );
    // An override that meets the same policy is the client's business.
    let harmless = Request::post("/cart/7")
        .header("host", "shop.local")
        .header("x-http-method-override", "PATCH")
        .body("")
        .unwrap();
    assert_eq!(h.send(harmless).await.action, Action::Pass);
    // Every other place a framework reads an override from.
    let post = |target: &str, headers: &[(&str, &str)], media: &str, body: &'static str| {
        let mut request = Request::post(target)
            .header("host", "shop.local")
            .header("content-type", media);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body).unwrap()
    };
    let form = "application/x-www-form-urlencoded";
    for (what, request) in [
        (
            "underscores",
            post(
                "/orders/7",
                &[("x_http_method_override", "DELETE")],
                form,
                "",
            ),
        ),
        (
            "mixed",
            post(
                "/orders/7",
                &[("x-http-method_override", "DELETE")],
                form,
                "",
            ),
        ),
        (
            "a list",
            post(
                "/orders/7",
                &[("x-http-method-override", "GET, DELETE")],
                form,
                "",
            ),
        ),
        ("the query", post("/orders/7?_method=DELETE", &[], form, "")),
        (
            "an encoded query",
            post("/orders/7?%5Fmethod=delete", &[], form, ""),
        ),
        (
            "a form body",
            post("/orders/7", &[], form, "a=1&_method=DELETE"),
        ),
        // PHP and Rack read the last of several fields.
        (
            "the last of two query fields",
            post("/orders/7?_method=POST&_method=DELETE", &[], form, ""),
        ),
        (
            "the last of two form fields",
            post("/orders/7", &[], form, "_method=POST&_method=DELETE"),
        ),
        (
            "a JSON body",
            post(
                "/orders/7",
                &[],
                "application/json",
                r#"{"_method":"DELETE"}"#,
            ),
        ),
        (
            "a JSON body, escaped",
            post(
                "/orders/7",
                &[],
                "application/json",
                r#"{"\u005fmethod":"delete"}"#,
            ),
        ),
        (
            "a multipart field",
            post(
                "/orders/7",
                &[],
                "multipart/form-data; boundary=b",
                "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n",
            ),
        ),
        (
            "the last of two multipart fields",
            post(
                "/orders/7",
                &[],
                "multipart/form-data; boundary=b",
                "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nPOST\r\n--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n",
            ),
        ),
    ] {
        let out = h.send(request).await;
        assert_eq!(
            out.action,
            Action::Intercept(Answer::Blocked),
            "{what}: {:?}",
            out.signals()
        );
    }
    let plain = post("/orders/7", &[], form, "a=1&method_of_payment=card");
    assert_eq!(h.send(plain).await.action, Action::Pass);
}

#[tokio::test]
async fn a_get_policy_covers_head() {
    let h = Harness::new(
        r#"
[[upstreams]]
url = "http://127.0.0.1:9"
[[policies]]
name = "reads"
path = "/g/"
methods = ["GET"]
clearance = "required"
"#,
    );
    let head = Request::head("/g/x")
        .header("host", "shop.local")
        .body("")
        .unwrap();
    let out = h.send(head).await;
    assert!(out.challenged(), "{:?}", out.signals());
}

#[tokio::test]
async fn the_origin_receives_the_target_that_was_matched() {
    // Routing alone: detection refuses some of these spellings as traversal.
    let h =
        Harness::new("[[upstreams]]\nurl = \"http://127.0.0.1:9\"\n[detect]\nenabled = false\n");
    for (target, forwarded) in [
        ("/%61pi//x?q=%61", "/api/x?q=%61"),
        ("/./a/../api/x", "/api/x"),
        ("/x/..;/api/x", "/api/x"),
        ("/api;v=1/x", "/api;v=1/x"),
        ("/plain/path?a=1", "/plain/path?a=1"),
    ] {
        let out = h.send(get(target, "api.local")).await;
        assert_eq!(out.action, Action::Pass, "{target}: {:?}", out.signals());
        assert_eq!(out.forwarded, forwarded, "{target}");
    }
}

#[tokio::test]
async fn rate_limits_count_the_canonical_path() {
    let h = Harness::new(
        r#"
[[upstreams]]
url = "http://127.0.0.1:9"
[[rate_limits]]
name = "api"
path = "/api/"
rate = 1.0
burst = 3
"#,
    );
    let spellings = [
        "/api/x", "/%61pi/x", "//api/x", "/API/x", "/api;/x", "/./api/x",
    ];
    let mut limited = 0;
    for target in spellings {
        let out = h.send(get(target, "shop.local")).await;
        if matches!(out.action, Action::Intercept(Answer::TooMany { .. })) {
            limited += 1;
        }
    }
    assert!(limited >= 2, "{limited} of {} limited", spellings.len());
}

#[tokio::test]
async fn one_authority_or_a_refusal() {
    let h = Harness::new(CHALLENGE);
    // An absolute-form target naming another host than the Host header.
    let out = h
        .send(
            Request::get("http://other.local/api/x")
                .header("host", "api.local")
                .body("")
                .unwrap(),
        )
        .await;
    assert_eq!(out.signals(), ["host_mismatch"]);
    assert!(matches!(
        out.action,
        Action::Intercept(Answer::BadRequest { status: 400 })
    ));
    // A trailing dot is the same host: the policy applies.
    let out = h.send(get("/api/x", "api.local.")).await;
    assert!(out.challenged(), "{:?}", out.signals());
    assert_eq!(out.target.authority, "api.local");
    let out = h.send(get("/api/x", "API.LOCAL:80")).await;
    assert!(out.challenged(), "{:?}", out.signals());
    // Two Host headers.
    let out = h
        .send(
            Request::get("/api/x")
                .header("host", "api.local")
                .header("host", "other.local")
                .body("")
                .unwrap(),
        )
        .await;
    assert_eq!(out.signals(), ["host_repeated"]);
    // No host at all, or a name a host-bound policy would not recognise.
    let out = h.send(Request::get("/api/x").body("").unwrap()).await;
    assert_eq!(out.signals(), ["host_missing"]);
    for host in ["api.local..", ".api.local", "api.local..:80"] {
        let out = h.send(get("/api/x", host)).await;
        assert_eq!(out.signals(), ["bad_authority"], "{host}");
    }
}

#[tokio::test]
async fn a_cookie_clearance_never_stands_in_for_a_signature() {
    let h = Harness::new(CHALLENGE);
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    let device = "device-cookie-0001";
    let minted =
        h.rt.trust
            .authority
            .mint(
                &ClientBinding {
                    ip,
                    device_id: device,
                },
                Platform::Ios,
                0,
                crate::context::now_ms(),
            )
            .expect("mint");
    let cookie: &'static str =
        Box::leak(format!("pc_clearance={}; pc_device={device}", minted.token).into_boxed_str());
    // A script's call with the cookie: as if it had no clearance.
    let script = Request::post("/api/coupon")
        .header("host", "api.local")
        .header("sec-fetch-mode", "cors")
        .header("content-type", "application/json")
        .header("cookie", cookie)
        .body("{\"claim\":1}")
        .unwrap();
    let out = h.send_from(ip, script).await;
    assert!(out.challenged(), "{:?}", out.signals());
    assert!(out.ctx.clearance.is_none());
    // A navigation with the cookie proves the clearance, but cannot sign.
    let navigation = Request::get("/api/page")
        .header("host", "api.local")
        .header("sec-fetch-mode", "navigate")
        .header("cookie", cookie)
        .body("")
        .unwrap();
    let out = h.send_from(ip, navigation).await;
    assert!(
        matches!(
            out.action,
            Action::Intercept(Answer::Refuse {
                code: "signature_missing",
                ..
            })
        ),
        "{:?}",
        out.signals()
    );
}

#[tokio::test]
async fn special_targets_are_answered_by_the_gateway() {
    let h = Harness::new("[[upstreams]]\nurl = \"http://127.0.0.1:9\"\n");
    let options = Request::options("*").header("host", "a").body("").unwrap();
    let out = h.send(options).await;
    assert_eq!(out.answered, Some(204));
    let get_star = Request::get("*").header("host", "a").body("").unwrap();
    let out = h.send(get_star).await;
    assert_eq!(out.signals(), ["bad_target"]);
    let connect = Request::connect("example.com:443")
        .header("host", "example.com:443")
        .body("")
        .unwrap();
    let out = h.send(connect).await;
    assert!(matches!(
        out.action,
        Action::Intercept(Answer::BadRequest { status: 405 })
    ));
}

#[tokio::test]
async fn a_denied_address_costs_no_later_stage() {
    // SAFETY: set before any thread of this test reads the environment; no
    // other test reads this variable.
    unsafe {
        std::env::set_var(
            "PC_PIPELINE_TEST_JWT_SECRET",
            "0123456789abcdef0123456789abcdef",
        )
    };
    let h = Harness::new(
        r#"
[[upstreams]]
url = "http://127.0.0.1:9"
[ip_lists]
deny = ["198.51.100.0/24"]
[identity]
account_claim = "sub"
[[auth.jwt]]
name = "main"
issuer = "https://id.example"
algorithms = ["HS256"]
secret_env = "PC_PIPELINE_TEST_JWT_SECRET"
[[policies]]
name = "api"
path = "/api/"
"#,
    );
    let request = Request::get("/api/x")
        .header("host", "a")
        .header("authorization", "Bearer not.a.token")
        .body("")
        .unwrap();
    let out = h.send(request).await;
    assert_eq!(out.signals(), ["ip_denied"]);
    assert!(
        out.ctx.jwt.is_none(),
        "no token verified for a denied client"
    );
    assert!(
        out.ctx.risk.is_none(),
        "no risk assessed for a refused request"
    );
}

#[tokio::test]
async fn an_encoded_slash_is_refused_where_the_route_says_so() {
    let h = Harness::new(
        r#"
[[upstreams]]
url = "http://127.0.0.1:9"
[[policies]]
name = "files"
path = "/files/"
encoded_slash = "refuse"
"#,
    );
    let out = h.send(get("/files/a%2Fb", "a")).await;
    assert_eq!(out.signals(), ["encoded_slash"]);
    let out = h.send(get("/files/a/b", "a")).await;
    assert_eq!(out.action, Action::Pass);
}

const LOG_RULE: &str = r#"
[[upstreams]]
url = "http://127.0.0.1:9"
[[policies]]
name = "api"
path = "/api/"
[[detect.rules]]
id = "watch-debug"
when = 'header.x-debug == "1"'
action = "log"
"#;

#[tokio::test]
async fn a_log_rule_is_recorded_but_weighs_nothing_in_the_rank() {
    let h = Harness::new(LOG_RULE);
    let request = |debug: bool| {
        let builder = Request::get("/api/x").header("host", "a");
        let builder = if debug {
            builder.header("x-debug", "1")
        } else {
            builder
        };
        builder.body("").unwrap()
    };
    let plain = h.send(request(false)).await;
    let logged = h.send(request(true)).await;
    assert!(
        logged.signals().contains(&"custom_rule"),
        "{:?}",
        logged.signals()
    );
    let (plain, logged) = (plain.ctx.risk.unwrap(), logged.ctx.risk.unwrap());
    assert_eq!(plain.rank, logged.rank, "{logged:?}");
    assert!(
        !logged.reasons.iter().any(|r| r.contains("custom_rule")),
        "{logged:?}"
    );
    // Only an operator's explicit weight makes the rule count.
    let weighted = Harness::new(&format!("{}\n[risk.weights]\ncustom_rule = 60\n", LOG_RULE));
    let rank = weighted.send(request(true)).await.ctx.risk.unwrap().rank;
    assert!(rank > logged.rank, "{rank}");
}
