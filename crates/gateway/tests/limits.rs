//! Rate limits through the proxy, with the shipped example configuration.

mod common;

use common::{BROWSER, Origin, admin_auth, gateway, get, status_of};

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path).expect("example file")
}

#[tokio::test]
async fn shipped_rate_limit_example_allows_the_burst_then_429_then_bans() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, &example("rate-limit.toml")).await;
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(status_of(&get(gw.listen, "/api/coupon", BROWSER).await));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    let refused = get(gw.listen, "/api/coupon", BROWSER).await;
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert_eq!(
        status_of(&get(gw.listen, "/static/app.js", BROWSER).await),
        200,
        "outside /api/"
    );

    // Ten refusals within a minute escalate into a ban of the address.
    let mut last = 0;
    for _ in 0..6 {
        last = status_of(&get(gw.listen, "/api/coupon", BROWSER).await);
    }
    assert_eq!(last, 403, "banned after repeated violations");
    assert_eq!(
        status_of(&get(gw.listen, "/static/app.js", BROWSER).await),
        403,
        "the ban covers every path"
    );
    let bans = get(gw.admin.expect("admin"), "/bans", &admin_auth(&gw)).await;
    assert!(bans.contains("api-per-ip"), "{bans}");
}

#[tokio::test]
async fn device_limits_follow_the_device_across_addresses() {
    let origin = Origin::start().await;
    let gw = gateway(
        &origin,
        "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[[rate_limits]]\nname = \"vote\"\npath = \"/vote\"\nkey = [\"device\"]\nrate = 1\nburst = 2\n",
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let headers =
            format!("{BROWSER}X-Forwarded-For: 198.51.100.{i}\r\nX-PC-Device: farm-device-1\r\n");
        statuses.push(status_of(&get(gw.listen, "/vote", &headers).await));
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let other = format!("{BROWSER}X-PC-Device: phone-2\r\n");
    assert_eq!(status_of(&get(gw.listen, "/vote", &other).await), 200);
}
