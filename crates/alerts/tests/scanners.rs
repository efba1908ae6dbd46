//! Scanner traffic never alerts unless `traffic.scanner.alert` is set.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Receiver, TempDir, config, robot_answer, wait_until, webhook, write_spike};
use portcullis_config::WebhookFormat;
use portcullis_store::EventStore;

#[tokio::test]
async fn a_scanner_burst_sends_nothing_by_default() {
    let dir = TempDir::new("scanner-off");
    let store = dir.store();
    write_spike(&*store, "scanner", 2000, 300);
    let receiver = Receiver::start(robot_answer).await;
    let config = config(vec![webhook(
        receiver.url("/generic"),
        WebhookFormat::Generic,
    )]);
    let handle = portcullis_alerts::spawn(&config, Arc::clone(&store) as Arc<dyn EventStore>);
    assert!(wait_until(Duration::from_secs(10), || handle.stats().evaluations >= 3).await);
    assert!(receiver.received().is_empty(), "{:?}", receiver.received());
    assert_eq!(handle.stats().messages, 0);
}

#[tokio::test]
async fn a_scanner_burst_alerts_when_scanners_count() {
    let dir = TempDir::new("scanner-on");
    let store = dir.store();
    write_spike(&*store, "scanner", 2000, 0);
    let receiver = Receiver::start(robot_answer).await;
    let mut config = config(vec![webhook(
        receiver.url("/generic"),
        WebhookFormat::Generic,
    )]);
    config.traffic.scanner.alert = true;
    let handle = portcullis_alerts::spawn(&config, Arc::clone(&store) as Arc<dyn EventStore>);
    assert!(wait_until(Duration::from_secs(10), || !receiver.received().is_empty()).await);
    let body = &receiver.received()[0].body;
    assert_eq!(body["alerts"][0]["rule"], "intercepts");
    assert_eq!(body["alerts"].as_array().unwrap().len(), 1);
    drop(handle);
}
