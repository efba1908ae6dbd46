//! Prometheus metrics of the data path, served on the admin listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    pub name: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// An answer of the challenge service: `issued`, `solved`, `failed` or
/// `limited`, with the error code of a failure or the count (`device`,
/// `address`) that limited the call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortalLabel {
    pub outcome: &'static str,
    pub reason: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub hot: crate::hot_metrics::HotMetrics,
    pub signals: Family<NameLabel, Counter>,
    pub portal: Family<PortalLabel, Counter>,
    pub upstream_errors: Family<OutcomeLabel, Counter>,
    pub connections_open: Gauge,
    pub connections_refused: Family<OutcomeLabel, Counter>,
    pub config_version: Gauge,
    pub config_reloads: Family<OutcomeLabel, Counter>,
    pub events_dropped: Counter,
    pub state_entries: Gauge,
    pub state_evictions: Gauge,
    /// Per tier of the state (bans, nonces, ...): entries, capacity,
    /// evictions and refused additions, refreshed on scrape.
    pub state_tiers: StateTierGauges,
    /// The state backend: up, outages, failures, commands, round trips.
    pub state_backend: Family<NameLabel, Gauge>,
}

/// A failure's code or a limit's count as a label: the gateway's own short
/// words, anything else `other`, so the label set stays small.
fn portal_reason(evidence: &str) -> String {
    let word = evidence.len() <= 32
        && !evidence.is_empty()
        && evidence
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_');
    if word {
        evidence.to_owned()
    } else {
        "other".to_owned()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: &'static str,
}

#[derive(Default)]
pub struct StateTierGauges {
    pub entries: Family<TierLabel, Gauge>,
    pub capacity: Family<TierLabel, Gauge>,
    pub evictions: Family<TierLabel, Gauge>,
    pub refused: Family<TierLabel, Gauge>,
}

impl Metrics {
    /// Metrics for `workers` threads, timing the stages named in `stage_names`.
    pub fn new(workers: usize, stage_names: &'static [&'static str]) -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let signals = Family::default();
        registry.register("signals", "Signals raised, by name", signals.clone());
        let portal = Family::default();
        registry.register(
            "challenge_answers",
            "Answers of the challenge service (/.portcullis/) by outcome and reason",
            portal.clone(),
        );
        let upstream_errors = Family::default();
        registry.register(
            "upstream_errors",
            "Origin failures answered with 502/504",
            upstream_errors.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open",
            connections_open.clone(),
        );
        let connections_refused = Family::default();
        registry.register(
            "connections_refused",
            "Connections refused by the caps",
            connections_refused.clone(),
        );
        let config_version = Gauge::default();
        registry.register(
            "config_version",
            "Version of the configuration in force",
            config_version.clone(),
        );
        let config_reloads = Family::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by outcome",
            config_reloads.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Decision events dropped because the queue was full",
            events_dropped.clone(),
        );
        let state_entries = Gauge::default();
        registry.register(
            "state_entries",
            "Keys held by the in-memory state",
            state_entries.clone(),
        );
        let state_evictions = Gauge::default();
        registry.register(
            "state_evictions",
            "Live keys evicted from the in-memory state to stay bounded",
            state_evictions.clone(),
        );
        let state_tiers = StateTierGauges::default();
        for (name, help, family) in [
            (
                "state_tier_entries",
                "Keys held per state tier",
                &state_tiers.entries,
            ),
            (
                "state_tier_capacity",
                "Capacity of each state tier",
                &state_tiers.capacity,
            ),
            (
                "state_tier_evictions",
                "Live keys evicted per state tier (evicting tiers only)",
                &state_tiers.evictions,
            ),
            (
                "state_tier_refused",
                "Additions refused because a security tier was full",
                &state_tiers.refused,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        let state_backend = Family::default();
        registry.register(
            "state_backend",
            "The state backend: up (1/0), outages, failures, commands and round trips since start",
            state_backend.clone(),
        );
        Metrics {
            registry,
            hot: crate::hot_metrics::HotMetrics::new(workers, stage_names),
            signals,
            portal,
            upstream_errors,
            connections_open,
            connections_refused,
            config_version,
            config_reloads,
            events_dropped,
            state_entries,
            state_evictions,
            state_tiers,
            state_backend,
        }
    }

    /// Counts the answer of the challenge service a request got, if any.
    pub fn count_portal(&self, signals: &[crate::context::Signal]) {
        let answers = signals
            .iter()
            .filter(|s| portcullis_store::is_check_answer(s.name));
        for signal in answers {
            let outcome = signal.name.trim_start_matches("portal_");
            let reason = match outcome {
                "failed" | "limited" => portal_reason(&signal.evidence),
                _ => String::new(),
            };
            self.portal
                .get_or_create(&PortalLabel { outcome, reason })
                .inc();
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        // The registry ends with `# EOF`; the per-worker metrics go before it.
        let end = out.rfind("# EOF").unwrap_or(out.len());
        out.truncate(end);
        self.hot.encode(&mut out);
        out.push_str("# EOF\n");
        out
    }
}
