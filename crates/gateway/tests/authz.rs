//! Permission checks end to end: a route that requires a JWT with a scope
//! and acting on the token's own account; the account claim keys rate limits.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{BROWSER, Origin, gateway, get, status_of};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn config() -> String {
    // SAFETY of set_var: set once, before any gateway reads it, to the same value.
    unsafe { std::env::set_var("PC_TEST_JWT_SECRET", SECRET) };
    r#"
[identity]
account_claim = "sub"
[[auth.jwt]]
name = "main"
issuer = "https://id.example"
algorithms = ["HS256"]
secret_env = "PC_TEST_JWT_SECRET"
[[policies]]
name = "orders"
path = "/api/users/"
jwt = { scopes = ["orders:read"], subject_in = "path:3" }
[[rate_limits]]
name = "per-account"
path = "/api/"
key = ["account"]
rate = 0.1
burst = 3
"#
    .to_owned()
}

fn token(sub: &str, scope: &str, exp_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": "https://id.example", "sub": sub, "scope": scope, "exp": now + exp_in,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

fn bearer(token: &str) -> String {
    format!("{BROWSER}Authorization: Bearer {token}\r\n")
}

#[tokio::test]
async fn a_route_requiring_a_jwt_checks_token_scope_and_subject() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, &config()).await;
    let alice = token("alice", "orders:read profile", 300);

    let ok = get(gw.listen, "/api/users/alice/orders", &bearer(&alice)).await;
    assert_eq!(status_of(&ok), 200, "{ok}");

    let none = get(gw.listen, "/api/users/alice/orders", BROWSER).await;
    assert_eq!(status_of(&none), 401);
    assert!(none.contains("x-pc-error: jwt_missing"), "{none}");

    let expired = get(
        gw.listen,
        "/api/users/alice/orders",
        &bearer(&token("alice", "orders:read", -600)),
    )
    .await;
    assert_eq!(status_of(&expired), 401);
    assert!(expired.contains("x-pc-error: jwt_expired"), "{expired}");

    let forged = format!("{}x", &alice[..alice.len() - 1]);
    let bad = get(gw.listen, "/api/users/alice/orders", &bearer(&forged)).await;
    assert_eq!(status_of(&bad), 401);

    let other_account = get(gw.listen, "/api/users/bob/orders", &bearer(&alice)).await;
    assert_eq!(
        status_of(&other_account),
        403,
        "over-privileged: {other_account}"
    );
    assert!(other_account.contains("x-pc-error: jwt_subject_mismatch"));

    let no_scope = get(
        gw.listen,
        "/api/users/carol/orders",
        &bearer(&token("carol", "profile", 300)),
    )
    .await;
    assert_eq!(status_of(&no_scope), 403);
    assert!(no_scope.contains("x-pc-error: jwt_missing_scope"));
    assert_eq!(
        origin.hits(),
        1,
        "only the allowed request reached the origin"
    );
}

#[tokio::test]
async fn rate_limits_count_by_the_verified_account() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, &config()).await;
    let dave = bearer(&token("dave", "orders:read", 300));
    let erin = bearer(&token("erin", "orders:read", 300));
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(status_of(
                &get(gw.listen, "/api/users/dave/orders", &dave).await,
            ));
        }
        out
    };
    assert_eq!(statuses, [200, 200, 200, 429], "dave's burst is 3");
    let erin_status = status_of(&get(gw.listen, "/api/users/erin/orders", &erin).await);
    assert_eq!(erin_status, 200, "another account has its own cell");
}
