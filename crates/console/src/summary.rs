//! One-line descriptions of a change to the editable sections, for the
//! audit log and the version history: which policies and rate limits were
//! added, removed or changed (and which of their fields), and how the
//! allow and deny lists grew or shrank.

use std::collections::BTreeMap;

use portcullis_config::Config;
use serde::Serialize;
use serde_json::Value;

/// What changed from `before` to `after` in the sections the console edits.
pub fn describe(before: &Config, after: &Config) -> String {
    let mut parts = Vec::new();
    named(
        "policies",
        &before.policies,
        &after.policies,
        |p| &p.name,
        &mut parts,
    );
    named(
        "rate_limits",
        &before.rate_limits,
        &after.rate_limits,
        |r| &r.name,
        &mut parts,
    );
    list(
        "ip_lists.allow",
        &before.ip_lists.allow,
        &after.ip_lists.allow,
        &mut parts,
    );
    list(
        "ip_lists.deny",
        &before.ip_lists.deny,
        &after.ip_lists.deny,
        &mut parts,
    );
    if parts.is_empty() {
        "no change".to_owned()
    } else {
        parts.join("; ")
    }
}

fn named<T: Serialize + PartialEq>(
    section: &str,
    before: &[T],
    after: &[T],
    name: impl Fn(&T) -> &String,
    parts: &mut Vec<String>,
) {
    let old: BTreeMap<&String, &T> = before.iter().map(|x| (name(x), x)).collect();
    let new: BTreeMap<&String, &T> = after.iter().map(|x| (name(x), x)).collect();
    let mut changes = Vec::new();
    for (key, item) in &new {
        match old.get(key) {
            None => changes.push(format!("{key} added")),
            Some(was) if was != item => {
                changes.push(format!("{key} changed ({})", fields_changed(was, item)));
            }
            Some(_) => {}
        }
    }
    changes.extend(
        old.keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| format!("{k} removed")),
    );
    let reordered = changes.is_empty() && before != after;
    if reordered {
        changes.push("order changed".to_owned());
    }
    if !changes.is_empty() {
        parts.push(format!("{section}: {}", changes.join(", ")));
    }
}

/// `field: old → new` for each top-level field that differs.
fn fields_changed<T: Serialize>(before: &T, after: &T) -> String {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return "changed".to_owned();
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{k}: {} → {}", short(old.get(k)), short(new.get(k))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(value: Option<&Value>) -> String {
    const MAX: usize = 60;
    let text = match value {
        None | Some(Value::Null) => "unset".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.chars().count() <= MAX {
        text
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

fn list<T: PartialEq + ToString>(
    section: &str,
    before: &[T],
    after: &[T],
    parts: &mut Vec<String>,
) {
    let added: Vec<String> = after
        .iter()
        .filter(|x| !before.contains(x))
        .map(ToString::to_string)
        .collect();
    let removed: Vec<String> = before
        .iter()
        .filter(|x| !after.contains(x))
        .map(ToString::to_string)
        .collect();
    let mut changes = Vec::new();
    if !added.is_empty() {
        changes.push(format!("+{}", added.join(" +")));
    }
    if !removed.is_empty() {
        changes.push(format!("-{}", removed.join(" -")));
    }
    if !changes.is_empty() {
        parts.push(format!("{section}: {}", changes.join(" ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn names_what_changed() {
        let before = config(
            r#"
            [ip_lists]
            deny = ["203.0.113.0/24"]
            [[policies]]
            name = "coupon"
            path = "/api/coupon"
            intercept_at = 4
            [[policies]]
            name = "old"
            path = "/old"
            "#,
        );
        let after = config(
            r#"
            [ip_lists]
            deny = ["198.51.100.7/32"]
            [[policies]]
            name = "coupon"
            path = "/api/coupon"
            intercept_at = 3
            mode = "log-only"
            [[policies]]
            name = "vote"
            path = "/api/vote"
            "#,
        );
        assert_eq!(
            describe(&before, &after),
            "policies: coupon changed (intercept_at: 4 → 3, mode: enforce → log-only), \
             vote added, old removed; ip_lists.deny: +198.51.100.7/32 -203.0.113.0/24"
        );
        assert_eq!(describe(&after, &after), "no change");
    }
}
