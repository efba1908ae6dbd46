//! A collapse of a route's challenge solve rate, from the events in a real
//! SQLite store to one message naming the route.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Receiver, TempDir, config, now_minute, robot_answer, wait_until, webhook};
use portcullis_config::WebhookFormat;
use portcullis_store::{EventStore, StoredEvent};

/// One event at second `n` of `minute`, from device `device`.
fn at(minute: i64, n: usize, device: String) -> StoredEvent {
    StoredEvent {
        ts_ms: minute * 60_000 + (n as i64 % 60) * 1_000,
        request_id: format!("req-{minute}-{device}"),
        client_ip: "198.51.100.7".into(),
        method: "GET".into(),
        host: "shop.example".into(),
        path: "/api/coupon".into(),
        action: "pass".into(),
        status: 200,
        class: "normal".into(),
        device_id: Some(device),
        signals: "[]".into(),
        ..StoredEvent::default()
    }
}

/// Per minute, 60 devices challenged by `coupon`; for the hour before the
/// last seven minutes 55 of them get a clearance, then 2. Seven: the
/// runner reads only minutes complete 5 s ago, so in the first seconds of
/// a minute its five-minute window ends two minutes back, and it must
/// still see only the collapse whenever the test starts.
fn write_lockout(store: &dyn EventStore) {
    let now = now_minute();
    let mut events = Vec::new();
    for minute in now - 70..=now + 1 {
        let solving = if minute < now - 7 { 55 } else { 2 };
        for n in 0..60 {
            let device = format!("dev-{minute}-{n}");
            events.push(StoredEvent {
                action: "challenge".into(),
                status: 401,
                route: Some("coupon".into()),
                rule: Some("clearance_missing".into()),
                ..at(minute, n, device.clone())
            });
            if n < solving {
                events.push(StoredEvent {
                    request_id: format!("verify-{minute}-{n}"),
                    path: "/.portcullis/verify".into(),
                    rule: Some("portal_solved".into()),
                    ..at(minute, n + 1, device)
                });
            }
        }
    }
    assert_eq!(store.write_batch(&events).unwrap(), events.len());
}

#[tokio::test]
async fn a_route_whose_challenges_stop_being_solved_alerts_once() {
    let dir = TempDir::new("solve-rate");
    let store = dir.store();
    write_lockout(&*store);
    let receiver = Receiver::start(robot_answer).await;
    let config = config(vec![webhook(
        receiver.url("/generic"),
        WebhookFormat::Generic,
    )]);
    let handle = portcullis_alerts::spawn(&config, Arc::clone(&store) as Arc<dyn EventStore>);
    assert!(
        wait_until(Duration::from_secs(10), || handle.stats().evaluations >= 3).await,
        "{:?}",
        handle.stats()
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let alerts = received[0].body["alerts"].as_array().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["rule"], "challenge-solve-rate");
    assert_eq!(alert["kind"], "solve_rate");
    assert_eq!(alert["solve_rates"][0]["route"], "coupon");
    assert!(alert["solve_rates"][0]["rate"].as_f64().unwrap() < 0.1);
    // 55 of 60 solved, less the collapsed minutes (up to two) that fall
    // before the window when the runner's lag moves it back.
    assert!(alert["solve_rates"][0]["baseline_rate"].as_f64().unwrap() > 0.85);
    let text = received[0].body["text"].as_str().unwrap();
    assert!(text.contains("Solve rate of coupon"), "{text}");
}
