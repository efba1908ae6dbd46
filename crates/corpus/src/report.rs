//! Scores: per set, per attack family and per file, with JSON round-trip
//! and a text table beside the previous run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Case, CorpusError, RawRequest, build};

/// What happened to one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The gateway answered with the block status.
    Blocked,
    /// Any other answer: the request went through.
    Passed,
    /// No answer (connect error, reset, timeout).
    Error,
    /// GoTestWAF could not build this request (e.g. gRPC): not sent.
    Skipped,
}

/// Counts for one scope (all attacks, a set, a family or a file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    /// True when this row counts false-positive texts (score = passed share).
    pub is_false_positive: bool,
    pub total: u64,
    pub blocked: u64,
    pub passed: u64,
    pub errors: u64,
    pub skipped: u64,
}

impl Row {
    fn new(key: impl Into<String>, is_false_positive: bool) -> Row {
        Row {
            key: key.into(),
            is_false_positive,
            ..Row::default()
        }
    }

    fn add(&mut self, outcome: Outcome) {
        self.total += 1;
        match outcome {
            Outcome::Blocked => self.blocked += 1,
            Outcome::Passed => self.passed += 1,
            Outcome::Error => self.errors += 1,
            Outcome::Skipped => self.skipped += 1,
        }
    }

    /// Requests that got an answer (blocked + passed).
    pub fn resolved(&self) -> u64 {
        self.blocked + self.passed
    }

    /// The score in percent: for attacks the blocked share (true-positive
    /// rate), for false-positive texts the passed share (true-negative
    /// rate), both over answered requests. `None` when nothing was answered.
    pub fn score(&self) -> Option<f64> {
        let n = self.resolved();
        if n == 0 {
            return None;
        }
        let good = if self.is_false_positive {
            self.passed
        } else {
            self.blocked
        };
        Some(100.0 * good as f64 / n as f64)
    }
}

/// An attack that passed, a harmless text that was blocked, or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Miss {
    /// `set/file#index encoder placeholder`.
    pub case: String,
    pub family: String,
    pub is_false_positive: bool,
    pub outcome: Outcome,
    /// The payload, cut to 200 characters.
    pub payload: String,
    /// Status or error text, when there is one.
    pub detail: Option<String>,
}

/// The result of one run over the corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    /// The replay target, or `None` for an in-process evaluation.
    pub target: Option<String>,
    pub block_status: u16,
    /// Seconds since the Unix epoch when the run ended.
    pub created_unix: u64,
    pub duration_secs: f64,
    /// All attack cases together (score = blocked share).
    pub attacks: Row,
    /// All false-positive texts together (score = passed share).
    pub false_positives: Row,
    pub sets: Vec<Row>,
    pub families: Vec<Row>,
    pub files: Vec<Row>,
    pub misses: Vec<Miss>,
}

/// Accumulates outcomes into a [`Report`].
pub(crate) struct Tally {
    started: Instant,
    attacks: Row,
    false_positives: Row,
    sets: BTreeMap<(bool, String), Row>,
    families: BTreeMap<(bool, String), Row>,
    files: BTreeMap<(bool, String), Row>,
    misses: Vec<Miss>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            started: Instant::now(),
            attacks: Row::new("all attacks", false),
            false_positives: Row::new("all false-pos texts", true),
            sets: BTreeMap::new(),
            families: BTreeMap::new(),
            files: BTreeMap::new(),
            misses: Vec::new(),
        }
    }

    pub(crate) fn record(&mut self, case: &Case, outcome: Outcome, detail: Option<String>) {
        let fp = case.is_false_positive;
        if fp {
            self.false_positives.add(outcome);
        } else {
            self.attacks.add(outcome);
        }
        let file_key = format!("{}/{}", case.set, case.file);
        for (map, key) in [
            (&mut self.sets, case.set.clone()),
            (&mut self.families, case.family.clone()),
            (&mut self.files, file_key),
        ] {
            map.entry((fp, key.clone()))
                .or_insert_with(|| Row::new(key, fp))
                .add(outcome);
        }
        let miss = match outcome {
            Outcome::Passed => !fp,
            Outcome::Blocked => fp,
            Outcome::Error => true,
            Outcome::Skipped => false,
        };
        if miss {
            self.misses.push(Miss {
                case: case.id(),
                family: case.family.clone(),
                is_false_positive: fp,
                outcome,
                payload: case.payload.chars().take(200).collect(),
                detail,
            });
        }
    }

    pub(crate) fn finish(self, label: &str, target: Option<String>, block_status: u16) -> Report {
        let created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut misses = self.misses;
        misses.sort_by(|a, b| a.case.cmp(&b.case));
        Report {
            label: label.to_string(),
            target,
            block_status,
            created_unix,
            duration_secs: self.started.elapsed().as_secs_f64(),
            attacks: self.attacks,
            false_positives: self.false_positives,
            sets: self.sets.into_values().collect(),
            families: self.families.into_values().collect(),
            files: self.files.into_values().collect(),
            misses,
        }
    }
}

/// Scores the corpus in-process: `blocked` says whether the engine under
/// test would block a request. Cases that can't be built count as skipped.
pub fn evaluate(
    cases: impl IntoIterator<Item = Case>,
    blocked: impl Fn(&RawRequest) -> bool,
) -> Report {
    let mut tally = Tally::new();
    for case in cases {
        let outcome = match build(&case) {
            None => Outcome::Skipped,
            Some(req) if blocked(&req) => Outcome::Blocked,
            Some(_) => Outcome::Passed,
        };
        tally.record(&case, outcome, None);
    }
    tally.finish("in-process", None, 0)
}

fn fmt_score(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_string(), |v| format!("{v:.1}%"))
}

fn fmt_delta(now: Option<f64>, prev: Option<f64>) -> String {
    match (now, prev) {
        (Some(n), Some(p)) => format!("{:+.1}", n - p),
        _ => String::new(),
    }
}

impl Report {
    /// Where a run labelled `label` is saved by default:
    /// `bench/results/corpus-<label>.json` (relative to the working directory).
    pub fn default_path(label: &str) -> PathBuf {
        let safe: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from("bench/results").join(format!("corpus-{safe}.json"))
    }

    /// Writes the report as pretty JSON, creating parent directories.
    pub fn save(&self, path: &Path) -> Result<(), CorpusError> {
        let io = |source| CorpusError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(|source| CorpusError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, json).map_err(io)
    }

    /// Reads a report written by [`Report::save`].
    pub fn load(path: &Path) -> Result<Report, CorpusError> {
        let bytes = std::fs::read(path).map_err(|source| CorpusError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| CorpusError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads the report at `path` if there is one (`Ok(None)` when the file
    /// does not exist).
    pub fn load_if_exists(path: &Path) -> Result<Option<Report>, CorpusError> {
        if path.exists() {
            Report::load(path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The table of scores, with `previous`'s scores and the change beside
    /// each row when given. TP = blocked share of attacks, TN = passed share
    /// of false-positive texts.
    pub fn render(&self, previous: Option<&Report>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "GoTestWAF corpus: {} ({}; block status {}; {:.1}s)",
            self.label,
            self.target.as_deref().unwrap_or("in-process"),
            self.block_status,
            self.duration_secs
        );
        if let Some(p) = previous {
            let _ = writeln!(
                out,
                "previous: {} ({})",
                p.label,
                p.target.as_deref().unwrap_or("in-process")
            );
        }
        let _ = writeln!(
            out,
            "{:<44} {:<2} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5} {:>5}",
            "scope", "", "score", "prev", "delta", "sent", "block", "pass", "err", "skip"
        );
        let line = |out: &mut String, row: &Row, prev: Option<&Row>| {
            let now = row.score();
            let before = prev.and_then(Row::score);
            let mut key = row.key.clone();
            if key.chars().count() > 44 {
                key = key.chars().take(43).collect::<String>() + "~";
            }
            let _ = writeln!(
                out,
                "{:<44} {:<2} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5} {:>5}",
                key,
                if row.is_false_positive { "TN" } else { "TP" },
                fmt_score(now),
                prev.map_or_else(String::new, |_| fmt_score(before)),
                fmt_delta(now, before),
                row.total - row.skipped,
                row.blocked,
                row.passed,
                row.errors,
                row.skipped
            );
        };
        let find = |rows: &[Row], row: &Row| -> Option<Row> {
            rows.iter()
                .find(|r| r.key == row.key && r.is_false_positive == row.is_false_positive)
                .cloned()
        };
        line(&mut out, &self.attacks, previous.map(|p| &p.attacks));
        line(
            &mut out,
            &self.false_positives,
            previous.map(|p| &p.false_positives),
        );
        type Section = fn(&Report) -> &Vec<Row>;
        let sections: [(&str, Section); 3] = [
            ("sets", |r| &r.sets),
            ("families", |r| &r.families),
            ("files", |r| &r.files),
        ];
        for (title, get) in sections {
            let _ = writeln!(out, "-- {title}");
            for row in get(self) {
                let prev = previous.and_then(|p| find(get(p), row));
                line(&mut out, row, prev.as_ref());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Encoder, Placeholder};

    fn case(file: &str, family: &str, payload: &str, placeholder: Placeholder, fp: bool) -> Case {
        Case {
            set: if fp {
                "false-pos".into()
            } else {
                "owasp".into()
            },
            file: file.into(),
            family: family.into(),
            index: 0,
            payload: payload.into(),
            encoder: Encoder::Plain,
            placeholder,
            is_false_positive: fp,
        }
    }

    fn sample() -> Vec<Case> {
        vec![
            case(
                "sqli",
                "SQL Injection",
                "BLOCKME 1",
                Placeholder::UrlPath,
                false,
            ),
            case(
                "sqli",
                "SQL Injection",
                "quiet",
                Placeholder::UrlPath,
                false,
            ),
            case(
                "sqli",
                "SQL Injection",
                "BLOCKME 2",
                Placeholder::JsonBody,
                false,
            ),
            case("grpc", "gRPC", "BLOCKME", Placeholder::Grpc, false),
            case("texts", "texts", "hello", Placeholder::HtmlForm, true),
            case("texts", "texts", "BLOCKME", Placeholder::HtmlForm, true),
        ]
    }

    fn contains_blockme(r: &RawRequest) -> bool {
        r.target.contains("BLOCKME") || r.body.windows(7).any(|w| w == b"BLOCKME")
    }

    #[test]
    fn evaluate_counts_and_scores() {
        let report = evaluate(sample(), contains_blockme);
        assert_eq!(report.attacks.total, 4);
        assert_eq!(report.attacks.blocked, 2);
        assert_eq!(report.attacks.passed, 1);
        assert_eq!(report.attacks.skipped, 1);
        let s = report.attacks.score().expect("score");
        assert!((s - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(report.false_positives.total, 2);
        assert_eq!(report.false_positives.passed, 1);
        assert_eq!(report.false_positives.score(), Some(50.0));
        let fam = report
            .families
            .iter()
            .find(|r| r.key == "SQL Injection")
            .expect("family");
        assert_eq!((fam.blocked, fam.passed), (2, 1));
        let grpc = report
            .files
            .iter()
            .find(|r| r.key == "owasp/grpc")
            .expect("file");
        assert_eq!(grpc.skipped, 1);
        assert_eq!(grpc.score(), None);
        // Misses: the attack that passed and the text that was blocked.
        assert_eq!(report.misses.len(), 2);
        assert!(
            report
                .misses
                .iter()
                .any(|m| !m.is_false_positive && m.payload == "quiet")
        );
        assert!(
            report
                .misses
                .iter()
                .any(|m| m.is_false_positive && m.outcome == Outcome::Blocked)
        );
    }

    #[test]
    fn save_load_and_render_with_previous() {
        let now = evaluate(sample(), contains_blockme);
        let before = evaluate(sample(), |_| false);
        let dir = std::env::temp_dir().join(format!("corpus-report-{}", std::process::id()));
        let path = dir.join("nested/corpus-x.json");
        before.save(&path).expect("save");
        let loaded = Report::load(&path).expect("load");
        assert_eq!(loaded, before);
        assert!(
            Report::load_if_exists(&dir.join("none.json"))
                .expect("ok")
                .is_none()
        );
        std::fs::remove_dir_all(&dir).ok();

        let table = now.render(Some(&loaded));
        let attacks = table
            .lines()
            .find(|l| l.starts_with("all attacks"))
            .expect("attacks line");
        assert!(attacks.contains("66.7%"), "{attacks}");
        assert!(attacks.contains("0.0%"), "{attacks}");
        assert!(attacks.contains("+66.7"), "{attacks}");
        assert!(table.contains("SQL Injection"));
        assert!(table.contains("owasp/sqli"));
        let fp = table
            .lines()
            .find(|l| l.starts_with("all false-pos texts"))
            .expect("fp line");
        assert!(
            fp.contains("50.0%") && fp.contains("100.0%") && fp.contains("-50.0"),
            "{fp}"
        );
        // Without a previous run there is no delta column content.
        assert!(!now.render(None).contains("+66.7"));
    }

    #[test]
    fn default_path_is_sanitized() {
        assert_eq!(
            Report::default_path("modsec-crs-pl1"),
            PathBuf::from("bench/results/corpus-modsec-crs-pl1.json")
        );
        assert_eq!(
            Report::default_path("a/b c"),
            PathBuf::from("bench/results/corpus-a_b_c.json")
        );
    }
}
