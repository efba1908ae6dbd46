//! Which table a key lives in.
//!
//! Security state (bans, revocations, nonces, single-use challenge markers)
//! must survive a flood of new keys, so it lives in tiers of its own that
//! never evict: when one is full, adding to it fails with
//! [`StateError::TierFull`](crate::StateError::TierFull) and the caller
//! refuses new work of that kind. Rate-limit cells and risk features live in
//! two evicting tiers, so a flood of risk-feature keys (many per request)
//! cannot push rate-limit cells out either.
//!
//! The tier follows from the key's prefix, which is how every caller already
//! names its keys; the prefixes are listed here once.

use std::fmt;

const PREFIXES: [(&str, Tier); 8] = [
    ("ban:", Tier::Bans),
    ("pc:revoked:", Tier::Revocations),
    ("pc:n:", Tier::Nonces),
    ("pc:c:", Tier::Challenges),
    ("pc:k:", Tier::Challenges),
    ("rl", Tier::Limits),
    ("pc:rl:", Tier::Limits),
    ("throttle:", Tier::Limits),
];

/// A table of the state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Temporary bans of client addresses (`ban:`).
    Bans,
    /// Revoked clearances (`pc:revoked:`).
    Revocations,
    /// Request-signature nonces (`pc:n:`).
    Nonces,
    /// Single-use markers of solved challenges and puzzles (`pc:c:`, `pc:k:`).
    Challenges,
    /// GCRA cells and escalation counters (`rl:`, `rlv:`, `rlb:`, `pc:rl:`, `throttle:`).
    Limits,
    /// Everything else: risk-feature counters, sets and first-seen markers.
    Features,
}

impl Tier {
    pub const ALL: [Tier; 6] = [
        Tier::Bans,
        Tier::Revocations,
        Tier::Nonces,
        Tier::Challenges,
        Tier::Limits,
        Tier::Features,
    ];

    /// The tier of a key.
    pub fn of(key: &str) -> Tier {
        PREFIXES
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix))
            .map_or(Tier::Features, |(_, tier)| *tier)
    }

    /// The tiers that can hold keys starting with `prefix`.
    pub fn for_prefix(prefix: &str) -> Vec<Tier> {
        let mut tiers = vec![Tier::of(prefix)];
        for (p, tier) in PREFIXES {
            if p.starts_with(prefix) && !tiers.contains(&tier) {
                tiers.push(tier);
            }
        }
        tiers
    }

    /// Security tiers never evict: a full one refuses additions.
    pub fn is_security(self) -> bool {
        matches!(
            self,
            Tier::Bans | Tier::Revocations | Tier::Nonces | Tier::Challenges
        )
    }

    /// Tiers every node mirrors locally (read on every request, written rarely).
    pub fn is_mirrored(self) -> bool {
        matches!(self, Tier::Bans | Tier::Revocations)
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Bans => "bans",
            Tier::Revocations => "revocations",
            Tier::Nonces => "nonces",
            Tier::Challenges => "challenges",
            Tier::Limits => "limits",
            Tier::Features => "features",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Tier;

    #[test]
    fn keys_of_every_caller_land_in_their_tier() {
        for (key, tier) in [
            ("ban:ip:1.2.3.4", Tier::Bans),
            ("pc:revoked:abc", Tier::Revocations),
            ("pc:n:key1:nonce", Tier::Nonces),
            ("pc:c:AAAA", Tier::Challenges),
            ("pc:k:AAAA", Tier::Challenges),
            ("rl:api:1.2.3.4", Tier::Limits),
            ("rlv:login:1.2.3.4", Tier::Limits),
            ("rlb:1.2.3.4", Tier::Limits),
            ("pc:rl:1.2.3.4", Tier::Limits),
            ("throttle:bot:1.2.3.4", Tier::Limits),
            ("rk:v:dv:29000000:dev", Tier::Features),
            ("pc:env:cid", Tier::Features),
        ] {
            assert_eq!(Tier::of(key), tier, "{key}");
        }
        assert!(Tier::ALL.iter().enumerate().all(|(i, t)| t.index() == i));
    }
}
