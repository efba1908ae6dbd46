//! The login limit holds under concurrency: attempts are reserved before the
//! password is verified, so a burst of wrong logins reaches Argon2 no more
//! often than the limit allows.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use portcullis_config::{Config, ConsoleConfig, FieldError, Overlay};
use portcullis_console::{
    ApplyFailure, BanInfo, BoxFuture, ConsoleDb, ConsoleOptions, Gateway, hash_password, router,
};
use portcullis_store::WriterStats;
use tower::ServiceExt;

/// A gateway the login route never calls.
struct Idle;

impl Gateway for Idle {
    fn effective_config(&self) -> Config {
        Config::default()
    }
    fn file_config(&self) -> Config {
        Config::default()
    }
    fn overlay(&self) -> Overlay {
        Overlay::default()
    }
    fn check_overlay(&self, _: &Overlay) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
    fn apply_overlay(&self, _: Overlay) -> Result<u64, ApplyFailure> {
        Err(ApplyFailure::Refused("not in this test".into()))
    }
    fn config_version(&self) -> u64 {
        1
    }
    fn bans(&self) -> Vec<BanInfo> {
        Vec::new()
    }
    fn ban(&self, _: IpAddr, _: Duration, _: String) -> BoxFuture<'_, Result<BanInfo, String>> {
        Box::pin(async { Err("not in this test".to_owned()) })
    }
    fn lift_ban(&self, _: IpAddr) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async { Ok(false) })
    }
    fn revoke_clearance(&self, _: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn metrics_text(&self) -> String {
        String::new()
    }
    fn store_stats(&self) -> Option<WriterStats> {
        None
    }
}

fn login(user: &str, password: &str, from: IpAddr) -> Request<Body> {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    let mut request = Request::post("/api/login")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(from, 40000)));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_concurrent_wrong_logins_reach_the_password_check_ten_times() {
    let dir = std::env::temp_dir().join(format!("pc-login-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = ConsoleDb::open(dir.join("console.db")).expect("console db");
    let password = "correct horse battery";
    db.set_password("admin", &hash_password(password).expect("hash"))
        .expect("user");
    let config = ConsoleConfig {
        login_attempts: 10,
        login_window_s: 300,
        ..ConsoleConfig::default()
    };
    let app = router(
        Arc::new(db),
        Arc::new(Idle),
        ConsoleOptions {
            config,
            admin_token: None,
            events: None,
        },
    );
    let attacker = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let burst: Vec<_> = (0..60)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                let wrong = format!("wrong password {n}");
                app.oneshot(login("admin", &wrong, attacker))
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    let mut checked = 0;
    let mut refused = 0;
    for task in burst {
        match task.await.expect("task").expect("response") {
            // 401 is only answered after Argon2 said no.
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((checked, refused), (10, 50));

    let status = |r: Result<axum::response::Response, _>| r.map(|r| r.status()).expect("response");
    let locked_out = app
        .clone()
        .oneshot(login("admin", password, attacker))
        .await;
    assert_eq!(
        status(locked_out),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits for the window"
    );
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8));
    let elsewhere = app.clone().oneshot(login("admin", password, other)).await;
    assert_eq!(status(elsewhere), StatusCode::OK);
    let _ = std::fs::remove_dir_all(&dir);
}
