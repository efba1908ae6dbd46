//! Message bodies for each webhook format, and DingTalk's URL signature.
//! Pure: the same message and time always give the same bytes.
//!
//! Every title carries the word "Portcullis", so a DingTalk robot secured
//! by keyword accepts the messages when "Portcullis" is its keyword.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use portcullis_config::{AlertKind, WebhookFormat};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::engine::{Alert, AlertStatus, Count, Message};

/// Version of the generic JSON schema.
pub const SCHEMA: u32 = 1;
/// WeCom refuses markdown content above 4096 bytes.
const WECOM_MAX: usize = 4096;
/// DingTalk accepts more; a message this long is unreadable anyway.
const DINGTALK_MAX: usize = 8192;
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;
/// Slack allows 50 blocks: a header, sections, and the footer.
const SLACK_MAX_SECTIONS: usize = 40;
const KEY_MAX: usize = 64;

/// The JSON body for `format`:
///
/// - `generic`, Portcullis's schema (version [`SCHEMA`]):
///   `{"source": "portcullis", "schema": 1, "title", "text" (plain text),
///   "at_ms", "suppressed" (alerts held back by the hourly cap since the
///   previous message), "alerts": [...]}`, each alert with `rule`, `kind`
///   (`intercept_spike` | `origin_errors` | `rate` | `solve_rate`), `status` (`firing` |
///   `ongoing` | `resolved`), `since_ms`, `from_ms`, `to_ms` (the span
///   counted), `window_minutes`, `count` (last window), `baseline`
///   (expected per window), `total` (since it began), `peak`, and
///   `top_reasons` / `top_routes` / `top_ips` as `[{"key", "count"}]` (an
///   empty route key is a request no policy named); a `solve_rate` alert
///   also has `solve_rates`: `[{"route", "challenged", "solved", "rate",
///   "baseline_rate"}]` for the collapsed routes (`""` is the check as a
///   whole). Times are milliseconds since the Unix epoch.
/// - `wecom`: `{"msgtype": "markdown", "markdown": {"content"}}`, at most
///   4096 bytes.
/// - `dingtalk`: `{"msgtype": "markdown", "markdown": {"title", "text"}}`.
/// - `slack`: `{"text", "blocks"}`: a header, one mrkdwn section per alert,
///   and a context line for suppressed alerts; `text` is the notification
///   fallback.
pub fn render(format: WebhookFormat, msg: &Message) -> Value {
    match format {
        WebhookFormat::Generic => generic(msg),
        WebhookFormat::Wecom => wecom(msg),
        WebhookFormat::Dingtalk => dingtalk(msg),
        WebhookFormat::Slack => slack(msg),
    }
}

/// One line naming what the message is about.
pub fn title(msg: &Message) -> String {
    match msg.alerts.as_slice() {
        [one] => format!(
            "Portcullis: {} {}",
            clean(&one.rule, "-"),
            status_words(one.status)
        ),
        alerts => {
            let resolved = alerts
                .iter()
                .filter(|a| a.status == AlertStatus::Resolved)
                .count();
            format!(
                "Portcullis: {} alerts ({} firing, {resolved} resolved)",
                alerts.len(),
                alerts.len() - resolved
            )
        }
    }
}

fn generic(msg: &Message) -> Value {
    json!({
        "source": "portcullis",
        "schema": SCHEMA,
        "title": title(msg),
        "text": plain_text(msg),
        "at_ms": msg.at_ms,
        "suppressed": msg.suppressed,
        "alerts": msg.alerts,
    })
}

fn wecom(msg: &Message) -> Value {
    let mut out = format!("## {}\n", title(msg));
    for alert in &msg.alerts {
        let color = match alert.status {
            AlertStatus::Resolved => "info",
            AlertStatus::Firing | AlertStatus::Ongoing => "warning",
        };
        let (head, facts) = paragraph(alert, msg.at_ms, MARKDOWN);
        out.push_str(&format!("<font color=\"{color}\">{head}</font>\n"));
        for fact in facts {
            out.push_str(&format!("> {fact}\n"));
        }
    }
    if let Some(footer) = footer(msg) {
        out.push_str(&format!("<font color=\"comment\">{footer}</font>\n"));
    }
    json!({
        "msgtype": "markdown",
        "markdown": { "content": truncate(&out, WECOM_MAX) },
    })
}

fn dingtalk(msg: &Message) -> Value {
    let title = title(msg);
    let mut parts = vec![format!("### {title}")];
    for alert in &msg.alerts {
        let (head, facts) = paragraph(alert, msg.at_ms, MARKDOWN);
        parts.push(head);
        parts.extend(facts);
    }
    parts.extend(footer(msg));
    json!({
        "msgtype": "markdown",
        "markdown": { "title": title, "text": truncate(&parts.join("\n\n"), DINGTALK_MAX) },
    })
}

fn slack(msg: &Message) -> Value {
    let title = title(msg);
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": truncate(&title, SLACK_HEADER_MAX) },
    })];
    for alert in msg.alerts.iter().take(SLACK_MAX_SECTIONS) {
        let (head, facts) = paragraph(alert, msg.at_ms, SLACK);
        let text = std::iter::once(head).chain(facts).collect::<Vec<_>>();
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": truncate(&text.join("\n"), SLACK_SECTION_MAX) },
        }));
    }
    if let Some(footer) = footer(msg) {
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": footer }],
        }));
    }
    json!({ "text": title, "blocks": blocks })
}

/// The message as plain text: the title, then each alert's lines.
fn plain_text(msg: &Message) -> String {
    let mut lines = vec![title(msg)];
    for alert in &msg.alerts {
        let (head, facts) = paragraph(alert, msg.at_ms, PLAIN);
        lines.push(head);
        lines.extend(facts.into_iter().map(|f| format!("  {f}")));
    }
    lines.extend(footer(msg));
    lines.join("\n")
}

/// How a format marks emphasis and names.
struct Style {
    bold: (&'static str, &'static str),
    code: (&'static str, &'static str),
}

const MARKDOWN: Style = Style {
    bold: ("**", "**"),
    code: ("`", "`"),
};
const SLACK: Style = Style {
    bold: ("*", "*"),
    code: ("`", "`"),
};
const PLAIN: Style = Style {
    bold: ("", ""),
    code: ("", ""),
};

impl Style {
    fn bold(&self, s: &str) -> String {
        format!("{}{s}{}", self.bold.0, self.bold.1)
    }

    fn code(&self, s: &str) -> String {
        format!("{}{s}{}", self.code.0, self.code.1)
    }
}

/// An alert's headline and its facts, one per line.
fn paragraph(alert: &Alert, at_ms: i64, style: Style) -> (String, Vec<String>) {
    let head = format!(
        "{} {} ({})",
        style.bold(status_label(alert.status)),
        style.code(&clean(&alert.rule, "-")),
        kind_label(alert.kind)
    );
    let window = format!("{} min", alert.window_minutes);
    let baseline = number(alert.baseline);
    let age = duration(at_ms - alert.since_ms);
    let mut facts = vec![match alert.status {
        AlertStatus::Firing => {
            format!("{} in the last {window} (baseline {baseline})", alert.count)
        }
        AlertStatus::Ongoing => format!(
            "{} in the last {window} (baseline {baseline}); {} since it began {age} ago",
            alert.count, alert.total
        ),
        AlertStatus::Resolved => format!(
            "{} in total over {age}, peak {} per {window} (baseline {baseline})",
            alert.total, alert.peak
        ),
    }];
    for collapsed in &alert.solve_rates {
        facts.push(format!(
            "Solve rate of {}: {} ({} of {} challenges), baseline {}",
            style.code(&clean(&collapsed.route, "(the check)")),
            percent(collapsed.rate),
            collapsed.solved,
            collapsed.challenged,
            percent(collapsed.baseline_rate)
        ));
    }
    for (label, entries, empty) in [
        ("Top reasons", &alert.top_reasons, "(none)"),
        ("Top routes", &alert.top_routes, "(no route)"),
        ("Top IPs", &alert.top_ips, "-"),
    ] {
        if !entries.is_empty() {
            facts.push(format!("{label}: {}", list(entries, empty, &style)));
        }
    }
    (head, facts)
}

fn footer(msg: &Message) -> Option<String> {
    (msg.suppressed > 0).then(|| {
        format!(
            "{} more alerts suppressed by the hourly cap",
            msg.suppressed
        )
    })
}

fn list(entries: &[Count], empty: &str, style: &Style) -> String {
    entries
        .iter()
        .map(|c| format!("{} {}", style.code(&clean(&c.key, empty)), c.count))
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_label(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Firing => "FIRING",
        AlertStatus::Ongoing => "STILL FIRING",
        AlertStatus::Resolved => "RESOLVED",
    }
}

fn status_words(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Firing => "firing",
        AlertStatus::Ongoing => "still firing",
        AlertStatus::Resolved => "resolved",
    }
}

fn kind_label(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::InterceptSpike => "intercept spike",
        AlertKind::OriginErrors => "origin errors",
        AlertKind::Rate => "request rate",
        AlertKind::SolveRate => "challenge solve rate",
    }
}

/// A key fit for every format: no markup characters, no control
/// characters, bounded length.
fn clean(key: &str, empty: &str) -> String {
    let kept: String = key
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '`' | '<' | '>' | '&' | '*'))
        .take(KEY_MAX)
        .collect();
    if kept.is_empty() {
        empty.to_owned()
    } else {
        kept
    }
}

fn number(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

fn duration(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// At most `max` bytes, cut at a character boundary, marked with "…".
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let ellipsis = "…";
    let mut end = max.saturating_sub(ellipsis.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &s[..end])
}

/// DingTalk's signature: base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")),
/// URL-encoded.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this arm is never taken.
        return String::new();
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    b64.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// The robot URL with DingTalk's `timestamp` and `sign` parameters.
pub fn dingtalk_signed_url(url: &str, secret: &str, timestamp_ms: i64) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let sign = dingtalk_sign(secret, timestamp_ms);
    format!("{url}{sep}timestamp={timestamp_ms}&sign={sign}")
}

#[cfg(test)]
mod tests;
