//! Minute rollups aggregated in memory, per batch, before one upsert per key.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;

use crate::event::StoredEvent;

/// The minute of a timestamp: `ts_ms / 60_000`, rounded down.
pub fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(60_000)
}

/// One rollup row's key. Absent values are empty strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RollupKey<'a> {
    pub minute: i64,
    pub layer: &'a str,
    pub action: &'a str,
    pub reason: Cow<'a, str>,
    pub route: &'a str,
    pub class: &'a str,
}

impl<'a> RollupKey<'a> {
    /// The key of `event`, given its reason (see [`StoredEvent::reason`]).
    pub fn of(event: &'a StoredEvent, reason: Cow<'a, str>) -> Self {
        RollupKey {
            minute: minute_of(event.ts_ms),
            layer: event.layer.as_deref().unwrap_or(""),
            action: &event.action,
            reason,
            route: event.route.as_deref().unwrap_or(""),
            class: &event.class,
        }
    }
}

impl RollupKey<'_> {
    /// The key of counted clean passes (see [`crate::PassTally`]): no
    /// layer, reason or route.
    pub fn pass(minute: i64, class: &str) -> RollupKey<'_> {
        RollupKey {
            minute,
            layer: "",
            action: "pass",
            reason: Cow::Borrowed(""),
            route: "",
            class,
        }
    }
}

/// Counts per rollup key; `reasons[i]` is the reason of `events[i]`.
pub fn aggregate<'a, E: Borrow<StoredEvent>>(
    events: &'a [E],
    reasons: &'a [Cow<'a, str>],
) -> HashMap<RollupKey<'a>, u64> {
    let mut counts = HashMap::with_capacity(64);
    for (event, reason) in events.iter().zip(reasons) {
        let key = RollupKey::of(event.borrow(), Cow::Borrowed(reason.as_ref()));
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts_ms: i64, action: &str, rule: Option<&str>) -> StoredEvent {
        StoredEvent {
            ts_ms,
            action: action.into(),
            class: "normal".into(),
            rule: rule.map(Into::into),
            ..StoredEvent::default()
        }
    }

    #[test]
    fn counts_per_minute_and_key() {
        let events = vec![
            ev(60_000, "pass", None),
            ev(119_999, "pass", None),
            ev(120_000, "pass", None),
            ev(60_001, "block", Some("sqli")),
        ];
        let reasons: Vec<_> = events.iter().map(StoredEvent::reason).collect();
        let counts = aggregate(&events, &reasons);
        assert_eq!(counts.len(), 3);
        let pass_1 = RollupKey::of(&events[0], Cow::Borrowed(""));
        assert_eq!(counts[&pass_1], 2);
        let block = RollupKey::of(&events[3], Cow::Borrowed("sqli"));
        assert_eq!(counts[&block], 1);
        assert_eq!(minute_of(-1), -1);
    }
}
