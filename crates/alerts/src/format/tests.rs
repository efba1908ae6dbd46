use portcullis_config::{AlertKind, WebhookFormat};
use serde_json::json;

use super::*;
use crate::engine::{Alert, AlertStatus, Count, Message};

const AT: i64 = 1_795_425_900_000;

fn counts(pairs: &[(&str, u64)]) -> Vec<Count> {
    pairs
        .iter()
        .map(|(key, count)| Count {
            key: (*key).into(),
            count: *count,
        })
        .collect()
}

fn message() -> Message {
    Message {
        at_ms: AT,
        alerts: vec![
            Alert {
                rule: "intercepts".into(),
                kind: AlertKind::InterceptSpike,
                status: AlertStatus::Ongoing,
                since_ms: AT - 65 * 60_000,
                from_ms: AT - 5 * 60_000,
                to_ms: AT,
                window_minutes: 5,
                count: 12_000,
                baseline: 40.0,
                total: 150_000,
                peak: 13_000,
                top_reasons: counts(&[("sqli", 9_000), ("bad_utf8", 3_000)]),
                top_routes: counts(&[("login", 11_000), ("", 1_000)]),
                top_ips: counts(&[("203.0.113.7", 8_000)]),
                solve_rates: Vec::new(),
            },
            Alert {
                rule: "origin-errors".into(),
                kind: AlertKind::OriginErrors,
                status: AlertStatus::Resolved,
                since_ms: AT - 30 * 60_000,
                from_ms: AT - 30 * 60_000,
                to_ms: AT,
                window_minutes: 5,
                count: 2,
                baseline: 0.4,
                total: 900,
                peak: 400,
                top_reasons: counts(&[("origin_502", 900)]),
                top_routes: Vec::new(),
                top_ips: Vec::new(),
                solve_rates: Vec::new(),
            },
        ],
        suppressed: 3,
    }
}

const INTERCEPTS_MD: [&str; 5] = [
    "**STILL FIRING** `intercepts` (intercept spike)",
    "12000 in the last 5 min (baseline 40); 150000 since it began 1 h 5 min ago",
    "Top reasons: `sqli` 9000, `bad_utf8` 3000",
    "Top routes: `login` 11000, `(no route)` 1000",
    "Top IPs: `203.0.113.7` 8000",
];
const ORIGIN_MD: [&str; 3] = [
    "**RESOLVED** `origin-errors` (origin errors)",
    "900 in total over 30 min, peak 400 per 5 min (baseline 0.4)",
    "Top reasons: `origin_502` 900",
];
const TITLE: &str = "Portcullis: 2 alerts (1 firing, 1 resolved)";
const FOOTER: &str = "3 more alerts suppressed by the hourly cap";

#[test]
fn generic_json() {
    let body = render(WebhookFormat::Generic, &message());
    let text = format!(
        "{TITLE}\n\
         STILL FIRING intercepts (intercept spike)\n  \
         12000 in the last 5 min (baseline 40); 150000 since it began 1 h 5 min ago\n  \
         Top reasons: sqli 9000, bad_utf8 3000\n  \
         Top routes: login 11000, (no route) 1000\n  \
         Top IPs: 203.0.113.7 8000\n\
         RESOLVED origin-errors (origin errors)\n  \
         900 in total over 30 min, peak 400 per 5 min (baseline 0.4)\n  \
         Top reasons: origin_502 900\n\
         {FOOTER}"
    );
    let expected = json!({
        "source": "portcullis",
        "schema": 1,
        "title": TITLE,
        "text": text,
        "at_ms": AT,
        "suppressed": 3,
        "alerts": [
            {
                "rule": "intercepts",
                "kind": "intercept_spike",
                "status": "ongoing",
                "since_ms": AT - 65 * 60_000,
                "from_ms": AT - 5 * 60_000,
                "to_ms": AT,
                "window_minutes": 5,
                "count": 12_000,
                "baseline": 40.0,
                "total": 150_000,
                "peak": 13_000,
                "top_reasons": [{"key": "sqli", "count": 9000}, {"key": "bad_utf8", "count": 3000}],
                "top_routes": [{"key": "login", "count": 11000}, {"key": "", "count": 1000}],
                "top_ips": [{"key": "203.0.113.7", "count": 8000}],
            },
            {
                "rule": "origin-errors",
                "kind": "origin_errors",
                "status": "resolved",
                "since_ms": AT - 30 * 60_000,
                "from_ms": AT - 30 * 60_000,
                "to_ms": AT,
                "window_minutes": 5,
                "count": 2,
                "baseline": 0.4,
                "total": 900,
                "peak": 400,
                "top_reasons": [{"key": "origin_502", "count": 900}],
                "top_routes": [],
                "top_ips": [],
            },
        ],
    });
    assert_eq!(body, expected);
}

#[test]
fn wecom_markdown() {
    let body = render(WebhookFormat::Wecom, &message());
    let [head, rest @ ..] = INTERCEPTS_MD;
    let [head2, rest2 @ ..] = ORIGIN_MD;
    let mut content = format!("## {TITLE}\n<font color=\"warning\">{head}</font>\n");
    for line in rest {
        content.push_str(&format!("> {line}\n"));
    }
    content.push_str(&format!("<font color=\"info\">{head2}</font>\n"));
    for line in rest2 {
        content.push_str(&format!("> {line}\n"));
    }
    content.push_str(&format!("<font color=\"comment\">{FOOTER}</font>\n"));
    assert_eq!(
        body,
        json!({"msgtype": "markdown", "markdown": {"content": content}})
    );
}

#[test]
fn dingtalk_markdown() {
    let body = render(WebhookFormat::Dingtalk, &message());
    let mut parts = vec![format!("### {TITLE}")];
    parts.extend(INTERCEPTS_MD.map(String::from));
    parts.extend(ORIGIN_MD.map(String::from));
    parts.push(FOOTER.into());
    assert_eq!(
        body,
        json!({"msgtype": "markdown", "markdown": {"title": TITLE, "text": parts.join("\n\n")}})
    );
}

#[test]
fn slack_text_and_blocks() {
    let body = render(WebhookFormat::Slack, &message());
    let slack = |lines: &[&str]| lines.join("\n").replace("**", "*");
    assert_eq!(
        body,
        json!({
            "text": TITLE,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": TITLE}},
                {"type": "section", "text": {"type": "mrkdwn", "text": slack(&INTERCEPTS_MD)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": slack(&ORIGIN_MD)}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": FOOTER}]},
            ],
        })
    );
}

#[test]
fn one_alert_titles_and_firing_lines() {
    let mut msg = message();
    msg.alerts.truncate(1);
    msg.alerts[0].status = AlertStatus::Firing;
    msg.suppressed = 0;
    assert_eq!(title(&msg), "Portcullis: intercepts firing");
    let body = render(WebhookFormat::Slack, &msg);
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2, "no footer without suppressed alerts");
    let text = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "*FIRING* `intercepts` (intercept spike)\n12000 in the last 5 min (baseline 40)\n"
        ),
        "{text}"
    );
}

#[test]
fn keys_cannot_inject_markup_and_bodies_stay_within_limits() {
    let mut msg = message();
    msg.alerts[0].top_routes = counts(&[("<!channel> `x` **y** &amp;\n", 1)]);
    let many = msg.alerts[0].clone();
    msg.alerts = vec![many; 200];
    let wecom = render(WebhookFormat::Wecom, &msg);
    let content = wecom["markdown"]["content"].as_str().unwrap();
    assert!(content.len() <= 4096 && content.ends_with('…'));
    assert!(content.contains("`!channel x y amp;` 1"), "{content}");
    let slack = render(WebhookFormat::Slack, &msg);
    assert_eq!(slack["blocks"].as_array().unwrap().len(), 1 + 40 + 1);
}

#[test]
fn dingtalk_signature_matches_the_documented_algorithm() {
    // Reference values from DingTalk's Python sample (hmac, base64, quote_plus).
    let secret = "SECexample-secret";
    assert_eq!(
        dingtalk_sign(secret, 1_700_000_000_000),
        "0fkiC8KrRP8cNrqFxRls0ApmSoNm4LsTBQWMcJ9T5e0%3D"
    );
    assert_eq!(
        dingtalk_sign(secret, 1_700_000_000_007),
        "I0LHHtsp%2BcZsVA%2Fa1QvZE15PI%2Bm29hHINpxnJXSzm44%3D"
    );
    assert_eq!(
        dingtalk_signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=t",
            secret,
            1_700_000_000_000
        ),
        "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000000\
         &sign=0fkiC8KrRP8cNrqFxRls0ApmSoNm4LsTBQWMcJ9T5e0%3D"
    );
}
