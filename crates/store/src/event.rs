//! The stored form of one gateway decision.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One decision of the gateway, as the store keeps it.
///
/// Its JSON form is the gateway's event line: `signals` is kept as JSON
/// text (an array of `{name, layer, weight, evidence, demand}` objects) and
/// is written out as embedded JSON, not as a string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Assigned by the store (see [`crate::event_id`]); ignored on write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// When the decision was taken, in milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub request_id: String,
    pub client_ip: String,
    pub method: String,
    pub host: String,
    pub path: String,
    /// `pass`, `block`, `bad_request`, `throttle`, `challenge` ...
    pub action: String,
    /// The layer whose signal decided (`edge`, `clean`, `policy`).
    #[serde(default)]
    pub layer: Option<String>,
    pub status: u16,
    /// Traffic class: `normal`, `crawler`, `automation`, `scanner`, `trusted`.
    pub class: String,
    /// Challenge / clearance id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The policy's route name; `None` for routes no policy names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Risk rank 0-4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_rank: Option<u8>,
    /// Top rule id. When absent the store records the heaviest signal's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The signals as a JSON array, kept as text.
    #[serde(default = "empty_array", with = "json_text")]
    pub signals: String,
    pub duration_us: i64,
    /// Device risk rank 0-4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_risk_rank: Option<u8>,
    /// The top reasons of the risk rank.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Under a log-only policy: what the policy would have done
    /// (`intercept`, `challenge`) while the request passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would: Option<String>,
}

fn empty_array() -> String {
    "[]".to_owned()
}

impl StoredEvent {
    /// What the rollups and the `rule` column record as the reason: the
    /// `rule` if set, else the name of the heaviest signal, else `""`.
    pub fn reason(&self) -> Cow<'_, str> {
        match &self.rule {
            Some(rule) => Cow::Borrowed(rule.as_str()),
            None => heaviest_signal(&self.signals).map_or(Cow::Borrowed(""), Cow::Owned),
        }
    }

    /// Whether the request passed, was challenged or was intercepted.
    pub fn kind(&self) -> ActionKind {
        ActionKind::of(&self.action)
    }
}

#[derive(Deserialize)]
struct SignalName {
    name: String,
    #[serde(default)]
    weight: i64,
}

fn heaviest_signal(signals: &str) -> Option<String> {
    if signals.len() <= 2 {
        return None;
    }
    let parsed: Vec<SignalName> = serde_json::from_str(signals).ok()?;
    let mut best: Option<SignalName> = None;
    for s in parsed {
        if best.as_ref().is_none_or(|b| s.weight > b.weight) {
            best = Some(s);
        }
    }
    best.map(|s| s.name)
}

/// The reasons as stored: a JSON array, or NULL when there are none.
pub(crate) fn reasons_text(reasons: &[String]) -> Option<String> {
    if reasons.is_empty() {
        return None;
    }
    serde_json::to_string(reasons).ok()
}

/// The stored reasons column back: a JSON array of strings, or NULL.
pub(crate) fn reasons_of(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The three outcomes the dashboard counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Pass,
    Challenge,
    /// Any answer from the gateway itself: block, bad request, throttle ...
    Intercept,
}

impl ActionKind {
    pub fn of(action: &str) -> ActionKind {
        match action {
            "pass" => ActionKind::Pass,
            "challenge" => ActionKind::Challenge,
            _ => ActionKind::Intercept,
        }
    }

    /// An SQL condition on the `action` column selecting this kind.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            ActionKind::Pass => "action = 'pass'",
            ActionKind::Challenge => "action = 'challenge'",
            ActionKind::Intercept => "action NOT IN ('pass', 'challenge')",
        }
    }
}

/// Serde for a `String` holding JSON text, written as embedded JSON.
mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => value.serialize(s),
            Err(_) => s.serialize_str(text),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        match value {
            serde_json::Value::String(text) => Ok(text),
            other => serde_json::to_string(&other).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts_ms":1795425152006,"request_id":"5778142e2f3c265e","client_ip":"127.0.0.1","method":"GET","host":"x","path":"/a","action":"bad_request","layer":"edge","status":400,"class":"normal","signals":[{"name":"bad_utf8","layer":"edge","weight":100,"evidence":"query: \\xbf","demand":{"kind":"bad_request","status":400}}],"duration_us":118}"#;

    #[test]
    fn reads_the_gateway_event_line() {
        let e: StoredEvent = serde_json::from_str(LINE).unwrap();
        assert_eq!(e.ts_ms, 1_795_425_152_006);
        assert_eq!(e.layer.as_deref(), Some("edge"));
        assert_eq!(e.kind(), ActionKind::Intercept);
        let signals: serde_json::Value = serde_json::from_str(&e.signals).unwrap();
        assert_eq!(signals[0]["evidence"], "query: \\xbf");
        assert_eq!(e.reason(), "bad_utf8");
        assert_eq!(e.cid, None);
    }

    #[test]
    fn writes_signals_as_embedded_json() {
        let e: StoredEvent = serde_json::from_str(LINE).unwrap();
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["signals"][0]["weight"], 100);
        let back: StoredEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn reason_prefers_rule_then_heaviest_signal() {
        let mut e = StoredEvent {
            signals:
                r#"[{"name":"a","weight":10},{"name":"b","weight":30},{"name":"c","weight":30}]"#
                    .into(),
            ..StoredEvent::default()
        };
        assert_eq!(e.reason(), "b");
        e.rule = Some("sqli-942100".into());
        assert_eq!(e.reason(), "sqli-942100");
        e.rule = None;
        e.signals = "[]".into();
        assert_eq!(e.reason(), "");
    }

    #[test]
    fn kinds() {
        assert_eq!(ActionKind::of("pass"), ActionKind::Pass);
        assert_eq!(ActionKind::of("challenge"), ActionKind::Challenge);
        assert_eq!(ActionKind::of("throttle"), ActionKind::Intercept);
    }
}
