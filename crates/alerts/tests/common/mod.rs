#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis_config::{Config, WebhookConfig, WebhookFormat};
use portcullis_store::{EventStore, SqliteStore, StoredEvent};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-alerts-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn store(&self) -> Arc<SqliteStore> {
        Arc::new(SqliteStore::open(self.0.join("events.db")).unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn now_minute() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    ms / 60_000
}

pub fn event(minute: i64, n: usize, action: &str, status: u16, class: &str) -> StoredEvent {
    StoredEvent {
        ts_ms: minute * 60_000 + (n as i64 % 60_000),
        request_id: format!("req-{minute}-{action}-{n}"),
        client_ip: format!("203.0.113.{}", 1 + n % 3),
        method: "POST".into(),
        host: "shop.example".into(),
        path: "/api/login".into(),
        action: action.into(),
        layer: Some("clean".into()),
        status,
        class: class.into(),
        route: Some("login".into()),
        rule: match (action, status) {
            ("pass", s) => portcullis_alerts::origin_error_reason("pass", s),
            _ => Some("sqli".into()),
        },
        signals: "[]".into(),
        duration_us: 100,
        ..StoredEvent::default()
    }
}

/// Per minute: `quiet` intercepts for the hour before the last 5 minutes,
/// then `spike` intercepts and `origin` origin errors (502) per minute from
/// 5 minutes ago to the next minute, all of traffic class `class`.
pub fn write_spike(store: &dyn EventStore, class: &str, spike: usize, origin: usize) {
    let now = now_minute();
    let mut events = Vec::new();
    for minute in now - 70..now - 5 {
        for n in 0..2 {
            events.push(event(minute, n, "block", 403, "normal"));
        }
    }
    for minute in now - 5..=now + 1 {
        for n in 0..spike {
            events.push(event(minute, n, "block", 403, class));
        }
        for n in 0..origin {
            events.push(event(minute, n, "pass", 502, class));
        }
    }
    assert_eq!(store.write_batch(&events).unwrap(), events.len());
}

/// A config with alerts on, evaluated every second.
pub fn config(webhooks: Vec<WebhookConfig>) -> Config {
    let mut config = Config::default();
    config.alerts.enabled = true;
    config.alerts.interval_s = 1;
    config.alerts.webhooks = webhooks;
    config
}

pub fn webhook(url: String, format: WebhookFormat) -> WebhookConfig {
    WebhookConfig {
        url,
        format,
        secret_env: None,
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub body: serde_json::Value,
}

/// A local webhook receiver that records every POST and answers as
/// `answer(path, n)` says, `n` counting the requests to that path.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Received>>>,
}

pub type Answer = fn(&str, usize) -> (u16, &'static str);

/// WeCom and DingTalk answer an errcode; Slack "ok"; anything else "{}".
pub fn robot_answer(path: &str, _n: usize) -> (u16, &'static str) {
    if path.starts_with("/wecom") || path.starts_with("/dingtalk") {
        (200, r#"{"errcode":0,"errmsg":"ok"}"#)
    } else if path.starts_with("/slack") {
        (200, "ok")
    } else {
        (200, "{}")
    }
}

impl Receiver {
    pub async fn start(answer: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = Arc::clone(&got);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let path = req.uri().path().to_string();
                            let query = req.uri().query().unwrap_or_default().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            let body = serde_json::from_slice(&body).unwrap_or_default();
                            let n = {
                                let mut log = log.lock().unwrap();
                                let n = log.iter().filter(|r| r.path == path).count();
                                log.push(Received {
                                    path: path.clone(),
                                    query,
                                    body,
                                });
                                n
                            };
                            let (status, text) = answer(&path, n);
                            let response = hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(text.as_bytes())))
                                .unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, got }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Waits until `done` holds, or `limit` passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}
