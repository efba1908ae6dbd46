//! Requests counted rather than stored one by one: the clean passes (no
//! signal, no core URL, an origin answer below 500). They cost the store a
//! few rows a minute instead of a row each, and still count everywhere the
//! console and the alerts count requests: the minute rollups (totals,
//! series, the rate alert) and the top lists by client address, device and
//! account.

use std::collections::HashMap;

use crate::query::TopField;

/// The clean passes of some minutes: per minute and traffic class, and per
/// minute, client key and class for the top lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassTally {
    /// `(minute, class)` to passes.
    pub passes: HashMap<(i64, String), u64>,
    /// `(minute, field, key, class)` to passes. Bounded by whoever fills it
    /// (see [`PassTally::add_key`]); passes whose key did not fit still
    /// count in [`PassTally::passes`].
    pub keys: HashMap<(i64, TopField, String, String), u64>,
}

impl PassTally {
    pub fn is_empty(&self) -> bool {
        self.passes.is_empty() && self.keys.is_empty()
    }

    /// Passes counted.
    pub fn total(&self) -> u64 {
        self.passes.values().sum()
    }

    /// Counts `n` passes of `class` in `minute`.
    pub fn add_passes(&mut self, minute: i64, class: &str, n: u64) {
        match self.passes.get_mut(&(minute, class.to_owned())) {
            Some(count) => *count += n,
            None => {
                self.passes.insert((minute, class.to_owned()), n);
            }
        }
    }

    /// Counts `n` passes of `key` in `field`; false (nothing counted) when
    /// the key is new and `max_keys` are held already.
    pub fn add_key(
        &mut self,
        minute: i64,
        field: TopField,
        key: String,
        class: &str,
        n: u64,
        max_keys: usize,
    ) -> bool {
        let full = self.keys.len() >= max_keys;
        let entry = (minute, field, key, class.to_owned());
        match self.keys.get_mut(&entry) {
            Some(count) => *count += n,
            None if full => return false,
            None => {
                self.keys.insert(entry, n);
            }
        }
        true
    }

    /// Adds `other` to this tally; returns the key counts that did not fit
    /// under `max_keys` (their passes are still counted).
    pub fn merge(&mut self, other: PassTally, max_keys: usize) -> u64 {
        for ((minute, class), n) in other.passes {
            *self.passes.entry((minute, class)).or_insert(0) += n;
        }
        let mut lost = 0;
        for ((minute, field, key, class), n) in other.keys {
            if !self.add_key(minute, field, key, &class, n, max_keys) {
                lost += n;
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_passes_are_not() {
        let mut t = PassTally::default();
        t.add_passes(1, "normal", 2);
        t.add_passes(1, "normal", 1);
        assert!(t.add_key(1, TopField::ClientIp, "a".into(), "normal", 3, 1));
        assert!(!t.add_key(1, TopField::ClientIp, "b".into(), "normal", 1, 1));
        assert!(
            t.add_key(1, TopField::ClientIp, "a".into(), "normal", 1, 1),
            "a known key still counts when full"
        );
        assert_eq!(t.total(), 3);
        let mut other = PassTally::default();
        other.add_passes(1, "normal", 4);
        other.add_key(2, TopField::Device, "d".into(), "crawler", 4, 10);
        assert_eq!(t.merge(other, 1), 4, "d did not fit");
        assert_eq!(t.total(), 7);
        assert_eq!(
            t.keys[&(1, TopField::ClientIp, "a".into(), "normal".into())],
            4
        );
    }
}
