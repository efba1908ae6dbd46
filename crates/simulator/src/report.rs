//! Counting what each population's requests came to, and the report table.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::http::Verdict;
use crate::origin::OriginCount;

/// Distinct codes and reasons kept per population; the rest are `other`.
const MAX_KEYS: usize = 32;
/// The rank from which a request counts as risky in the measure.
pub const HIGH_RANK: u8 = 3;
/// Share of an abusive population's requests that must be flagged.
pub const ABUSIVE_FLAGGED_GOAL: f64 = 0.95;
/// Share of a normal population's requests that may be flagged.
pub const NORMAL_FLAGGED_GOAL: f64 = 0.01;

/// A population's goal on its flagged share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goal::AtLeast(g) => write!(f, ">= {:.0}%", g * 100.0),
            Goal::AtMost(g) => write!(f, "<= {:.0}%", g * 100.0),
        }
    }
}

/// The ranks at which the simulated policy challenges and intercepts: a
/// policy action then says the rank reached its band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bands {
    pub challenge_at: Option<u8>,
    pub intercept_at: Option<u8>,
}

/// Outcomes of the silent check for the populations that run the SDK.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearanceCounts {
    pub obtained: u64,
    pub refused: u64,
    pub unavailable: u64,
    /// Device rank given at issue, 0-4.
    pub risk_at_issue: [u64; 5],
}

/// Everything counted for one population.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PopulationReport {
    pub name: String,
    pub abusive: bool,
    /// Simulated clients (users, devices, scripts).
    pub clients: u64,
    pub requests: u64,
    pub passed: u64,
    pub challenged: u64,
    pub intercepted: u64,
    pub throttled: u64,
    pub blocked: u64,
    pub failed: u64,
    /// `x-wx-risk-rank` as the origin received it, for requests that passed.
    pub ranks: [u64; 5],
    pub device_ranks: [u64; 5],
    /// Requests whose rank is not known: answered by the gateway for
    /// another reason than the policy's rank bands, passed without a rank
    /// header, or failed.
    pub unranked: u64,
    /// Requests known to have rank >= 3 (see [`SimReport::COUNTING`]).
    pub rank_high: u64,
    /// Requests whose rank is known to be >= 3 or < 3.
    pub rank_known: u64,
    /// Gateway answers by code (`x-pc-error` or the JSON `error`).
    pub codes: BTreeMap<String, u64>,
    /// Reasons named in `x-wx-risk-reasons` (policies with `debug = true`).
    pub reasons: BTreeMap<String, u64>,
    /// The same, only of the requests that reached the origin against the
    /// population's goal (abusive at rank < 3, normal at rank >= 3): what
    /// the gateway saw of its misses.
    #[serde(default)]
    pub missed_reasons: BTreeMap<String, u64>,
    pub clearances: ClearanceCounts,
    /// What the origin received with this population's label.
    pub origin: OriginCount,
}

impl PopulationReport {
    pub fn new(name: &str, abusive: bool) -> Self {
        PopulationReport {
            name: name.into(),
            abusive,
            ..PopulationReport::default()
        }
    }

    /// Counts one request.
    pub fn record(&mut self, verdict: &Verdict, bands: Bands) {
        self.requests += 1;
        let known_high = |band: Option<u8>| band.is_some_and(|b| b >= HIGH_RANK);
        let high = match verdict {
            Verdict::Passed {
                rank,
                device_rank,
                reasons,
                ..
            } => {
                self.passed += 1;
                if let Some(d) = device_rank {
                    self.device_ranks[usize::from(*d)] += 1;
                }
                let missed = rank.is_some_and(|r| (r >= HIGH_RANK) != self.abusive);
                for reason in reasons {
                    bump(&mut self.reasons, reason);
                    if missed {
                        bump(&mut self.missed_reasons, reason);
                    }
                }
                if missed && reasons.is_empty() {
                    bump(&mut self.missed_reasons, "(none)");
                }
                rank.map(|r| {
                    self.ranks[usize::from(r)] += 1;
                    r >= HIGH_RANK
                })
            }
            Verdict::Challenged { code } => {
                self.challenged += 1;
                bump(&mut self.codes, code);
                (code == "challenge_required" && known_high(bands.challenge_at)).then_some(true)
            }
            Verdict::Intercepted => {
                self.intercepted += 1;
                bump(&mut self.codes, crate::http::INTERCEPT_CODE);
                known_high(bands.intercept_at).then_some(true)
            }
            Verdict::Throttled => {
                self.throttled += 1;
                bump(&mut self.codes, "throttled");
                None
            }
            Verdict::Blocked { code, .. } => {
                self.blocked += 1;
                bump(&mut self.codes, code);
                None
            }
            Verdict::Failed { error } => {
                self.failed += 1;
                tracing::debug!(population = %self.name, error, "request failed");
                None
            }
        };
        match high {
            Some(high) => {
                self.rank_known += 1;
                self.rank_high += u64::from(high);
            }
            None => self.unranked += 1,
        }
    }

    /// Counts a check the gateway refused, under `check:{code}` beside the
    /// answers to requests.
    pub fn check_refused(&mut self, code: &str) {
        self.clearances.refused += 1;
        bump(&mut self.codes, &format!("check:{code}"));
    }

    /// Share of the requests with a known rank that had rank >= 3.
    pub fn high_share(&self) -> Option<f64> {
        share(self.rank_high, self.rank_known)
    }

    /// The issue's goal for the population: at least 95 % of an abusive
    /// population's answered requests flagged, at most 1 % of a normal one's.
    pub fn goal(&self) -> Goal {
        if self.abusive {
            Goal::AtLeast(ABUSIVE_FLAGGED_GOAL)
        } else {
            Goal::AtMost(NORMAL_FLAGGED_GOAL)
        }
    }

    /// Whether the flagged share meets the goal (`None`: nothing answered).
    pub fn meets_goal(&self) -> Option<bool> {
        let flagged = self.stopped_or_high_share()?;
        Some(match self.goal() {
            Goal::AtLeast(goal) => flagged >= goal,
            Goal::AtMost(goal) => flagged <= goal,
        })
    }

    /// Share of all answered requests that were stopped by the gateway or
    /// had rank >= 3: the issue's "flagged" (challenged, intercepted or
    /// refused, or reaching the origin at rank >= 3).
    pub fn stopped_or_high_share(&self) -> Option<f64> {
        let passed_low = self.passed - self.ranks[HIGH_RANK as usize..].iter().sum::<u64>();
        let answered = self.requests - self.failed;
        share(answered - passed_low, answered)
    }

    /// Adds the counts of another client of the same population.
    pub fn merge(&mut self, other: &PopulationReport) {
        self.clients += other.clients;
        self.requests += other.requests;
        self.passed += other.passed;
        self.challenged += other.challenged;
        self.intercepted += other.intercepted;
        self.throttled += other.throttled;
        self.blocked += other.blocked;
        self.failed += other.failed;
        self.unranked += other.unranked;
        self.rank_high += other.rank_high;
        self.rank_known += other.rank_known;
        for i in 0..5 {
            self.ranks[i] += other.ranks[i];
            self.device_ranks[i] += other.device_ranks[i];
            self.clearances.risk_at_issue[i] += other.clearances.risk_at_issue[i];
        }
        self.clearances.obtained += other.clearances.obtained;
        self.clearances.refused += other.clearances.refused;
        self.clearances.unavailable += other.clearances.unavailable;
        for (map, theirs) in [
            (&mut self.codes, &other.codes),
            (&mut self.reasons, &other.reasons),
            (&mut self.missed_reasons, &other.missed_reasons),
        ] {
            for (key, n) in theirs {
                bump_by(map, key, *n);
            }
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    bump_by(map, key, 1);
}

fn bump_by(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    let key = if map.contains_key(key) || map.len() < MAX_KEYS {
        key
    } else {
        "other"
    };
    *map.entry(key.to_string()).or_default() += n;
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Requests of one side (abusive or ordinary) by rank class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionRow {
    pub high: u64,
    pub low: u64,
    pub unranked: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub abusive: ConfusionRow,
    pub ordinary: ConfusionRow,
}

/// The result of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub target: String,
    pub seed: u64,
    pub duration_s: f64,
    pub bands: Bands,
    pub populations: Vec<PopulationReport>,
    pub confusion: Confusion,
    /// Things worth knowing about the run (no challenge service, ...).
    pub notes: Vec<String>,
}

impl SimReport {
    /// How ranks are counted; printed under the table.
    pub const COUNTING: &str = "rank: the x-wx-risk-rank the origin received (echoed back to the \
simulator). A policy challenge (`challenge_required`) or intercept counts as rank >= 3 when the \
policy's challenge_at / intercept_at is 3 or more, since only the rank triggers those answers. \
Other gateway answers (throttles, blocks, clearance or signature refusals) and requests to routes \
without a policy have no known rank (n/a). rank>=3 is the share of requests with a known rank; \
flagged is the share of all answered requests that were stopped by the gateway (challenged, \
intercepted, throttled, refused) or reached the origin with rank >= 3; ok / !! say whether it meets \
the population's goal (abusive >= 95%, normal <= 1%).";

    pub fn new(
        target: String,
        seed: u64,
        duration_s: f64,
        bands: Bands,
        populations: Vec<PopulationReport>,
        notes: Vec<String>,
    ) -> SimReport {
        let mut confusion = Confusion::default();
        for p in &populations {
            let row = if p.abusive {
                &mut confusion.abusive
            } else {
                &mut confusion.ordinary
            };
            row.high += p.rank_high;
            row.low += p.rank_known - p.rank_high;
            row.unranked += p.unranked;
        }
        SimReport {
            target,
            seed,
            duration_s,
            bands,
            populations,
            confusion,
            notes,
        }
    }

    /// Share of the abusive populations' ranked requests with rank >= 3
    /// (the issue's target: at least 95%).
    pub fn abusive_high_share(&self) -> Option<f64> {
        let row = self.confusion.abusive;
        share(row.high, row.high + row.low)
    }

    /// Share of the ordinary users' ranked requests with rank >= 3 (the
    /// issue's target: at most 1%).
    pub fn ordinary_high_share(&self) -> Option<f64> {
        let row = self.confusion.ordinary;
        share(row.high, row.high + row.low)
    }

    /// The populations whose flagged share misses its goal, with the figures.
    pub fn misses(&self) -> Vec<String> {
        self.populations
            .iter()
            .filter(|p| p.meets_goal() == Some(false))
            .map(|p| {
                format!(
                    "{}: {} flagged, goal {}",
                    p.name,
                    percent(p.stopped_or_high_share()),
                    p.goal()
                )
            })
            .collect()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json)
    }

    pub fn load(path: &Path) -> std::io::Result<SimReport> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or("n/a".into(), |s| format!("{:.1}%", s * 100.0))
}

fn top(map: &BTreeMap<String, u64>, n: usize) -> String {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = entries
        .iter()
        .take(n)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if shown.is_empty() {
        "-".into()
    } else {
        shown.join(", ")
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "portcullis simulate: {:.0} s against {}, seed {}",
            self.duration_s, self.target, self.seed
        )?;
        writeln!(
            f,
            "\n{:<20} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>7} {:>10} | {:>6}",
            "population",
            "cli",
            "reqs",
            "passed",
            "chall",
            "interc",
            "thrott",
            "block",
            "fail",
            "r0",
            "r1",
            "r2",
            "r3",
            "r4",
            "n/a",
            "rank>=3",
            "flagged",
            "origin"
        )?;
        for p in &self.populations {
            let label = format!("{}{}", p.name, if p.abusive { "" } else { " (ok)" });
            writeln!(
                f,
                "{:<20} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>7} {:>10} | {:>6}",
                label,
                p.clients,
                p.requests,
                p.passed,
                p.challenged,
                p.intercepted,
                p.throttled,
                p.blocked,
                p.failed,
                p.ranks[0],
                p.ranks[1],
                p.ranks[2],
                p.ranks[3],
                p.ranks[4],
                p.unranked,
                percent(p.high_share()),
                format!(
                    "{}{}",
                    percent(p.stopped_or_high_share()),
                    match p.meets_goal() {
                        Some(true) => " ok",
                        Some(false) => " !!",
                        None => "",
                    }
                ),
                p.origin.requests,
            )?;
        }
        let c = &self.confusion;
        writeln!(
            f,
            "\n{:<12} {:>8} {:>8} {:>8}",
            "", "rank>=3", "rank<3", "n/a"
        )?;
        for (name, row) in [("abusive", c.abusive), ("ordinary", c.ordinary)] {
            writeln!(
                f,
                "{:<12} {:>8} {:>8} {:>8}",
                name, row.high, row.low, row.unranked
            )?;
        }
        writeln!(
            f,
            "\nabusive requests with rank >= 3: {} (target >= 95%); ordinary: {} (target <= 1%)",
            percent(self.abusive_high_share()),
            percent(self.ordinary_high_share()),
        )?;
        writeln!(f, "\ndetails:")?;
        for p in &self.populations {
            let cl = &p.clearances;
            writeln!(
                f,
                "  {}: gateway answers: {}; reasons: {}; of the misses: {}; clearances: {} obtained (risk at issue {:?}), {} refused, {} unavailable",
                p.name,
                top(&p.codes, 4),
                top(&p.reasons, 4),
                top(&p.missed_reasons, 4),
                cl.obtained,
                cl.risk_at_issue,
                cl.refused,
                cl.unavailable,
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let misses = self.misses();
        if misses.is_empty() {
            writeln!(f, "\nevery population meets its goal")?;
        } else {
            writeln!(f, "\npopulations missing their goal: {}", misses.join("; "))?;
        }
        write!(f, "\ncounting: {}", Self::COUNTING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(rank: Option<u8>) -> Verdict {
        Verdict::Passed {
            status: 200,
            rank,
            device_rank: rank,
            reasons: vec!["ip_datacenter".into()],
        }
    }

    #[test]
    fn ranks_and_policy_answers_are_counted() {
        let bands = Bands {
            challenge_at: Some(3),
            intercept_at: Some(4),
        };
        let mut p = PopulationReport::new("coupon_farm", true);
        for verdict in [
            passed(Some(4)),
            passed(Some(1)),
            passed(None),
            Verdict::Challenged {
                code: "challenge_required".into(),
            },
            Verdict::Challenged {
                code: "clearance_expired".into(),
            },
            Verdict::Intercepted,
            Verdict::Throttled,
            Verdict::Blocked {
                status: 403,
                code: "blocked".into(),
            },
            Verdict::Failed {
                error: "timeout".into(),
            },
        ] {
            p.record(&verdict, bands);
        }
        assert_eq!(p.requests, 9);
        assert_eq!((p.passed, p.challenged, p.intercepted), (3, 2, 1));
        assert_eq!((p.throttled, p.blocked, p.failed), (1, 1, 1));
        assert_eq!(p.ranks, [0, 1, 0, 0, 1]);
        // rank 4, challenge_required, intercept: high; rank 1: low.
        assert_eq!((p.rank_high, p.rank_known, p.unranked), (3, 4, 5));
        assert_eq!(p.high_share(), Some(0.75));
        // 8 answered, 2 passed below rank 3 (rank 1 and unranked).
        assert_eq!(p.stopped_or_high_share(), Some(6.0 / 8.0));
        assert_eq!(p.reasons["ip_datacenter"], 3);
        // Of the abusive requests that passed, only the one at rank 1 is a miss.
        assert_eq!(p.missed_reasons["ip_datacenter"], 1);
    }

    #[test]
    fn misses_are_low_ranks_of_abusers_and_high_ranks_of_the_others() {
        let bands = Bands::default();
        let quiet = Verdict::Passed {
            status: 200,
            rank: Some(0),
            device_rank: Some(0),
            reasons: Vec::new(),
        };
        let mut bot = PopulationReport::new("coupon_bot", true);
        bot.record(&quiet, bands);
        bot.record(&passed(Some(3)), bands);
        assert_eq!(bot.missed_reasons.len(), 1);
        assert_eq!(bot.missed_reasons["(none)"], 1);
        let mut phones = PopulationReport::new("ordinary", false);
        phones.record(&quiet, bands);
        phones.record(&passed(Some(3)), bands);
        assert_eq!(phones.missed_reasons.len(), 1);
        assert_eq!(phones.missed_reasons["ip_datacenter"], 1);
        phones.check_refused("rate_limited");
        assert_eq!(phones.codes["check:rate_limited"], 1);
        assert_eq!(phones.clearances.refused, 1);
    }

    #[test]
    fn challenges_below_rank_3_are_not_counted_as_high() {
        let bands = Bands {
            challenge_at: Some(2),
            intercept_at: None,
        };
        let mut p = PopulationReport::new("x", true);
        p.record(
            &Verdict::Challenged {
                code: "challenge_required".into(),
            },
            bands,
        );
        p.record(&Verdict::Intercepted, bands);
        assert_eq!((p.rank_high, p.rank_known, p.unranked), (0, 0, 2));
    }

    #[test]
    fn code_tables_are_bounded() {
        let mut p = PopulationReport::new("x", true);
        for i in 0..100 {
            p.record(
                &Verdict::Blocked {
                    status: 400,
                    code: format!("code{i}"),
                },
                Bands::default(),
            );
        }
        assert_eq!(p.codes.len(), MAX_KEYS + 1);
        assert_eq!(p.codes["other"], 100 - MAX_KEYS as u64);
    }

    #[test]
    fn confusion_and_shares() {
        let mut bad = PopulationReport::new("coupon_farm", true);
        bad.rank_high = 96;
        bad.rank_known = 100;
        let mut good = PopulationReport::new("ordinary", false);
        good.rank_high = 1;
        good.rank_known = 200;
        good.unranked = 5;
        let report = SimReport::new(
            "http://x".into(),
            1,
            10.0,
            Bands::default(),
            vec![bad, good],
            vec![],
        );
        assert_eq!(report.confusion.abusive.low, 4);
        assert_eq!(report.confusion.ordinary.unranked, 5);
        assert_eq!(report.abusive_high_share(), Some(0.96));
        assert_eq!(report.ordinary_high_share(), Some(0.005));
        let text = report.to_string();
        assert!(text.contains("96.0% (target >= 95%)"), "{text}");
        assert!(text.contains("ordinary (ok)"), "{text}");
    }
}
