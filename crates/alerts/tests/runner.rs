//! The runner against a real SQLite store and a local webhook receiver:
//! a spike gives exactly one aggregated message in each format.
//!
//! This file holds a single test: it sets the DingTalk secret in the
//! environment before any other thread exists.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Receiver, TempDir, config, robot_answer, wait_until, webhook, write_spike};
use portcullis_config::WebhookFormat;
use portcullis_store::EventStore;

const SECRET_ENV: &str = "PORTCULLIS_ALERTS_TEST_DINGTALK_SECRET";
const SECRET: &str = "SECtest-secret-0123456789";

#[test]
fn a_spike_is_one_message_in_every_format() {
    // SAFETY: the only test of this binary, before any runtime or other
    // thread starts, so nothing reads the environment concurrently.
    unsafe { std::env::set_var(SECRET_ENV, SECRET) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(spike_in_every_format());
}

async fn spike_in_every_format() {
    let dir = TempDir::new("runner");
    let store = dir.store();
    write_spike(&*store, "normal", 200, 50);
    let receiver = Receiver::start(robot_answer).await;
    let mut dingtalk = webhook(
        receiver.url("/dingtalk/robot/send?access_token=tok"),
        WebhookFormat::Dingtalk,
    );
    dingtalk.secret_env = Some(SECRET_ENV.into());
    let config = config(vec![
        webhook(receiver.url("/generic"), WebhookFormat::Generic),
        webhook(
            receiver.url("/wecom/cgi-bin/webhook/send?key=k"),
            WebhookFormat::Wecom,
        ),
        dingtalk,
        webhook(
            receiver.url("/slack/services/T0/B0/x"),
            WebhookFormat::Slack,
        ),
    ]);
    let handle = portcullis_alerts::spawn(&config, Arc::clone(&store) as Arc<dyn EventStore>);

    assert!(
        wait_until(Duration::from_secs(20), || receiver.received().len() >= 4).await,
        "{:?} {:?}",
        receiver.received(),
        handle.stats()
    );
    // Three more evaluations: a firing rule stays quiet within its window.
    let evaluations = handle.stats().evaluations;
    assert!(
        wait_until(Duration::from_secs(10), || handle.stats().evaluations
            >= evaluations + 3)
        .await
    );
    let got = receiver.received();
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    for path in [
        "/generic",
        "/wecom/cgi-bin/webhook/send",
        "/dingtalk/robot/send",
        "/slack/services/T0/B0/x",
    ] {
        assert_eq!(
            paths.iter().filter(|p| **p == path).count(),
            1,
            "{path}: {paths:?}"
        );
    }
    let stats = handle.stats();
    assert_eq!(
        (stats.messages, stats.delivered, stats.failed),
        (1, 4, 0),
        "{stats:?}"
    );

    let by_path = |prefix: &str| got.iter().find(|r| r.path.starts_with(prefix)).unwrap();

    let generic = &by_path("/generic").body;
    assert_eq!(generic["source"], "portcullis");
    assert_eq!(
        generic["title"],
        "Portcullis: 2 alerts (2 firing, 0 resolved)"
    );
    let alerts = generic["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "both rules in one message");
    let intercepts = &alerts[0];
    assert_eq!(intercepts["rule"], "intercepts");
    assert_eq!(intercepts["status"], "firing");
    let count = intercepts["count"].as_u64().unwrap();
    assert!((800..=1002).contains(&count), "window count {count}");
    assert_eq!(intercepts["top_reasons"][0]["key"], "sqli");
    assert_eq!(intercepts["top_routes"][0]["key"], "login");
    let ips = intercepts["top_ips"].as_array().unwrap();
    assert_eq!(ips.len(), 3, "{ips:?}");
    assert!(ips[0]["key"].as_str().unwrap().starts_with("203.0.113."));
    let origin = &alerts[1];
    assert_eq!(origin["rule"], "origin-errors");
    assert_eq!(origin["top_reasons"][0]["key"], "origin_502");
    assert!(origin["count"].as_u64().unwrap() >= 200);

    let wecom = &by_path("/wecom").body;
    assert_eq!(wecom["msgtype"], "markdown");
    let content = wecom["markdown"]["content"].as_str().unwrap();
    assert!(content.starts_with("## Portcullis: 2 alerts"), "{content}");
    assert_eq!(wecom.as_object().unwrap().len(), 2);

    let ding = by_path("/dingtalk");
    assert_eq!(ding.body["msgtype"], "markdown");
    assert_eq!(ding.body["markdown"]["title"], generic["title"]);
    assert!(
        ding.body["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("**FIRING** `intercepts`")
    );
    let params: Vec<(&str, &str)> = ding
        .query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(params[0], ("access_token", "tok"));
    assert_eq!(params[1].0, "timestamp");
    let ts: i64 = params[1].1.parse().unwrap();
    assert_eq!(
        params[2],
        (
            "sign",
            portcullis_alerts::dingtalk_sign(SECRET, ts).as_str()
        )
    );

    let slack = &by_path("/slack").body;
    assert_eq!(slack["text"], generic["title"]);
    let blocks = slack["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3, "a header and one section per alert");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
}
