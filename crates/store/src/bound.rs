//! Bounds on every stored field, so that what a client sends (a 30 KB URI,
//! a huge user agent quoted as evidence) cannot make one event large.
//!
//! Every backend stores [`bound`]'s output. A value over its limit is cut on
//! a character boundary and ends with [`MARK`], so the stored text stays
//! valid UTF-8 and a reader sees it was cut. The signals (JSON) stay valid
//! JSON: their strings are cut one by one, and the lightest signals are left
//! out when the array is still too long.

use std::borrow::Cow;

use serde_json::Value;

use crate::StoredEvent;

/// Ends a value that was cut.
pub const MARK: &str = "…";

/// Longest stored path, in bytes (the query string included).
pub const MAX_PATH: usize = 1024;
/// Longest stored host.
pub const MAX_HOST: usize = 255;
/// Longest stored request id, client IP, method, action, layer, class or
/// `would`: values the gateway makes itself, bounded in case it is fed junk.
pub const MAX_SHORT: usize = 64;
/// Longest stored cid, device id, account id, route or rule.
pub const MAX_ID: usize = 128;
/// Longest string inside the signals (evidence, a quoted user agent ...).
pub const MAX_SIGNAL_TEXT: usize = 256;
/// Longest stored signals array, as JSON text.
pub const MAX_SIGNALS: usize = 4096;
/// Risk reasons kept, and the longest of each.
pub const MAX_REASONS: usize = 8;
pub const MAX_REASON: usize = 128;

/// `event` with every field within its limit: borrowed when it already is
/// (the common case costs a few length checks), an owned copy otherwise.
pub fn bound(event: &StoredEvent) -> Cow<'_, StoredEvent> {
    if fits(event) {
        return Cow::Borrowed(event);
    }
    let mut owned = event.clone();
    bound_in_place(&mut owned);
    Cow::Owned(owned)
}

/// Cuts `text` to at most `max` bytes, the mark included; `max` must leave
/// room for the mark.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{MARK}", &text[..end]))
}

/// The scalar text fields and their limits.
fn limits(e: &StoredEvent) -> [(Option<&str>, usize); 15] {
    [
        (Some(&e.request_id), MAX_SHORT),
        (Some(&e.client_ip), MAX_SHORT),
        (Some(&e.method), MAX_SHORT),
        (Some(&e.host), MAX_HOST),
        (Some(&e.path), MAX_PATH),
        (Some(&e.action), MAX_SHORT),
        (e.layer.as_deref(), MAX_SHORT),
        (Some(&e.class), MAX_SHORT),
        (e.cid.as_deref(), MAX_ID),
        (e.device_id.as_deref(), MAX_ID),
        (e.account_id.as_deref(), MAX_ID),
        (e.route.as_deref(), MAX_ID),
        (e.rule.as_deref(), MAX_ID),
        (e.would.as_deref(), MAX_SHORT),
        (Some(&e.signals), MAX_SIGNALS),
    ]
}

fn fits(e: &StoredEvent) -> bool {
    let scalars = limits(e)
        .iter()
        .all(|(value, max)| value.is_none_or(|v| v.len() <= *max));
    scalars && e.reasons.len() <= MAX_REASONS && e.reasons.iter().all(|r| r.len() <= MAX_REASON)
}

fn bound_in_place(e: &mut StoredEvent) {
    clip(&mut e.request_id, MAX_SHORT);
    clip(&mut e.client_ip, MAX_SHORT);
    clip(&mut e.method, MAX_SHORT);
    clip(&mut e.host, MAX_HOST);
    clip(&mut e.path, MAX_PATH);
    clip(&mut e.action, MAX_SHORT);
    clip(&mut e.class, MAX_SHORT);
    for (value, max) in [
        (&mut e.layer, MAX_SHORT),
        (&mut e.cid, MAX_ID),
        (&mut e.device_id, MAX_ID),
        (&mut e.account_id, MAX_ID),
        (&mut e.route, MAX_ID),
        (&mut e.rule, MAX_ID),
        (&mut e.would, MAX_SHORT),
    ] {
        if let Some(v) = value {
            clip(v, max);
        }
    }
    e.reasons.truncate(MAX_REASONS);
    for reason in &mut e.reasons {
        clip(reason, MAX_REASON);
    }
    if e.signals.len() > MAX_SIGNALS {
        e.signals = bound_signals(&e.signals);
    }
}

fn clip(value: &mut String, max: usize) {
    if let Cow::Owned(cut) = truncate(value, max) {
        *value = cut;
    }
}

/// Signals within [`MAX_SIGNALS`] bytes, still a JSON array: every string
/// cut to [`MAX_SIGNAL_TEXT`], then the lightest signals left out until the
/// array fits. Text that is not JSON is cut as text.
fn bound_signals(text: &str) -> String {
    let Ok(Value::Array(mut signals)) = serde_json::from_str::<Value>(text) else {
        return truncate(text, MAX_SIGNALS).into_owned();
    };
    signals.iter_mut().for_each(clip_strings);
    // Heaviest first, so the rollups' reason (the heaviest signal) survives.
    signals.sort_by_key(|s| std::cmp::Reverse(s.get("weight").and_then(Value::as_i64)));
    let mut out = Vec::with_capacity(signals.len());
    let mut len = 2; // "[]"
    for signal in signals {
        let size = signal.to_string().len() + usize::from(!out.is_empty());
        if len + size > MAX_SIGNALS {
            break;
        }
        len += size;
        out.push(signal);
    }
    Value::Array(out).to_string()
}

fn clip_strings(value: &mut Value) {
    match value {
        Value::String(s) => clip(s, MAX_SIGNAL_TEXT),
        Value::Array(items) => items.iter_mut().for_each(clip_strings),
        Value::Object(map) => map.values_mut().for_each(clip_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_character_boundary_and_marks_it() {
        assert_eq!(truncate("abc", 3), "abc");
        let cut = truncate("ééééé", 8); // 10 bytes
        assert_eq!(cut, "éé…");
        assert!(cut.len() <= 8);
        let cut = truncate("aéé", 4); // the mark leaves 1 byte: "a"
        assert_eq!(cut, "a…");
    }

    #[test]
    fn an_event_within_its_limits_is_borrowed() {
        let e = StoredEvent {
            path: "/a".into(),
            signals: "[]".into(),
            ..StoredEvent::default()
        };
        assert!(matches!(bound(&e), Cow::Borrowed(_)));
    }

    #[test]
    fn every_field_is_bounded() {
        let long = "x".repeat(30_000);
        let e = StoredEvent {
            request_id: long.clone(),
            client_ip: long.clone(),
            method: long.clone(),
            host: long.clone(),
            path: format!("/{long}"),
            action: long.clone(),
            layer: Some(long.clone()),
            class: long.clone(),
            cid: Some(long.clone()),
            device_id: Some(long.clone()),
            account_id: Some(long.clone()),
            route: Some(long.clone()),
            rule: Some(long.clone()),
            would: Some(long.clone()),
            reasons: vec![long.clone(); 50],
            signals: long.clone(),
            ..StoredEvent::default()
        };
        let b = bound(&e).into_owned();
        assert!(fits(&b));
        assert_eq!(b.path.len(), MAX_PATH);
        assert!(b.path.ends_with(MARK) && b.path.starts_with("/xx"));
        assert_eq!(b.reasons.len(), MAX_REASONS);
        assert!(b.signals.len() <= MAX_SIGNALS);
    }

    #[test]
    fn signals_stay_json_and_keep_the_heaviest() {
        let ua = "Mozilla/5.0 ".repeat(3000);
        let light: Vec<String> = (0..40)
            .map(|n| format!(r#"{{"name":"light{n}","weight":1,"evidence":"{ua}"}}"#))
            .collect();
        let text = format!(
            r#"[{},{{"name":"heavy","weight":90,"evidence":"{ua}"}}]"#,
            light.join(",")
        );
        let e = StoredEvent {
            signals: text,
            ..StoredEvent::default()
        };
        let b = bound(&e).into_owned();
        assert!(b.signals.len() <= MAX_SIGNALS, "{}", b.signals.len());
        let parsed: Vec<Value> = serde_json::from_str(&b.signals).unwrap();
        assert_eq!(parsed[0]["name"], "heavy");
        let evidence = parsed[0]["evidence"].as_str().unwrap();
        assert!(evidence.len() <= MAX_SIGNAL_TEXT && evidence.ends_with(MARK));
        assert_eq!(b.reason(), "heavy");
    }
}
