//! Delivery through the runner: retries, refusals, reloads.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Receiver, TempDir, config, wait_until, webhook, write_spike};
use portcullis_config::WebhookFormat;
use portcullis_store::EventStore;

/// `/flaky` fails its first request; `/refuse` answers like a DingTalk
/// robot whose signature did not match; the rest accept.
fn answer(path: &str, n: usize) -> (u16, &'static str) {
    match path {
        "/flaky" if n == 0 => (503, "busy"),
        "/refuse" => (200, r#"{"errcode":310000,"errmsg":"sign not match"}"#),
        _ => (200, r#"{"errcode":0,"errmsg":"ok"}"#),
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_refusals_are_not() {
    let dir = TempDir::new("delivery");
    let store = dir.store();
    write_spike(&*store, "normal", 500, 0);
    let receiver = Receiver::start(answer).await;
    let config = config(vec![
        webhook(receiver.url("/flaky"), WebhookFormat::Generic),
        webhook(receiver.url("/refuse"), WebhookFormat::Dingtalk),
    ]);
    let handle = portcullis_alerts::spawn(&config, Arc::clone(&store) as Arc<dyn EventStore>);
    let settled = wait_until(Duration::from_secs(15), || {
        let s = handle.stats();
        s.delivered + s.failed == 2
    })
    .await;
    let stats = handle.stats();
    assert!(settled, "{stats:?}");
    assert_eq!(
        (stats.messages, stats.delivered, stats.failed, stats.retries),
        (1, 1, 1, 1)
    );
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.iter().filter(|p| *p == "/flaky").count(), 2);
    assert_eq!(paths.iter().filter(|p| *p == "/refuse").count(), 1);
}

#[tokio::test]
async fn a_reload_enables_the_alerts() {
    let dir = TempDir::new("reload");
    let store = dir.store();
    write_spike(&*store, "normal", 500, 0);
    let receiver = Receiver::start(answer).await;
    let enabled = config(vec![webhook(
        receiver.url("/generic"),
        WebhookFormat::Generic,
    )]);
    let mut disabled = enabled.clone();
    disabled.alerts.enabled = false;
    let handle = portcullis_alerts::spawn(&disabled, Arc::clone(&store) as Arc<dyn EventStore>);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(handle.stats().evaluations, 0);
    handle.reload(&enabled);
    assert!(wait_until(Duration::from_secs(10), || receiver.received().len() == 1).await);
    assert_eq!(handle.stats().messages, 1);
}
