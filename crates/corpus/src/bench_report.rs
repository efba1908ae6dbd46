//! The report of `bench corpus`: per corpus, attacks stopped and normal
//! requests flagged, by category, by status and by the signal behind each
//! refusal; the misclassified samples for study.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::CorpusError;
use crate::samples::Sample;

/// What the gateway answered to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The status, or `None` when no answer came (see `error`).
    pub status: Option<u16>,
    /// The gateway's `x-pc-error` header.
    pub pc_error: Option<String>,
    /// The gateway's `x-request-id` header, which names the decision event.
    pub request_id: Option<String>,
    /// The transport error when there is no answer.
    pub error: Option<String>,
}

impl Answer {
    pub(crate) fn failed(error: String) -> Answer {
        Answer {
            error: Some(error),
            ..Answer::default()
        }
    }
}

/// Counts of one scope (a corpus' attacks or normal requests, a category).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    /// Answered with the block status.
    pub blocked: u64,
    /// Answered with another status of 400 or more, by status: a refusal,
    /// but not the gateway's block answer.
    pub refused: BTreeMap<u16, u64>,
    /// Answered below 400: the origin's answer came back.
    pub passed: u64,
    /// No answer (connect error, reset, timeout).
    pub errors: u64,
    /// Not sendable as HTTP (GoTestWAF's gRPC cases).
    pub skipped: u64,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        self.total += 1;
        match outcome {
            Outcome::Blocked => self.blocked += 1,
            Outcome::Refused(status) => *self.refused.entry(status).or_default() += 1,
            Outcome::Passed => self.passed += 1,
            Outcome::Error => self.errors += 1,
            Outcome::Skipped => self.skipped += 1,
        }
    }

    /// Requests that got an answer.
    pub fn answered(&self) -> u64 {
        self.total - self.errors - self.skipped
    }

    /// Refusals other than the block status, all statuses together.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Attacks stopped: the share answered with the block status, in percent.
    pub fn stopped_pct(&self) -> Option<f64> {
        pct(self.blocked, self.answered())
    }

    /// Normal requests flagged: the share answered with any refusal
    /// (the block status or another status of 400 or more), in percent.
    pub fn flagged_pct(&self) -> Option<f64> {
        pct(self.blocked + self.refused_total(), self.answered())
    }
}

fn pct(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| 100.0 * n as f64 / of as f64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Blocked,
    Refused(u16),
    Passed,
    Error,
    Skipped,
}

/// One category of a corpus, attacks and normal requests apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryRow {
    pub category: String,
    pub attack: bool,
    pub counts: Counts,
}

/// One corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusRow {
    pub corpus: String,
    pub attacks: Counts,
    pub normal: Counts,
    pub categories: Vec<CategoryRow>,
    /// Normal requests refused, by what refused them: the deciding signal
    /// from the decision events when they were read, else the `x-pc-error`
    /// header, else the status.
    pub false_positives_by_signal: BTreeMap<String, u64>,
}

/// A normal request that was refused, an attack that was not blocked, or a
/// request that got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misclassified {
    pub corpus: String,
    pub category: String,
    pub id: String,
    pub attack: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub pc_error: Option<String>,
    pub request_id: Option<String>,
    pub signals: Vec<String>,
    pub method: String,
    pub target: String,
    /// The body, cut to 2 KB (lossy UTF-8).
    pub body: String,
}

/// The result of one `bench corpus` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub label: String,
    pub target: String,
    pub block_status: u16,
    /// Whether signals come from the gateway's decision events.
    pub signals_from_events: bool,
    /// Seconds since the Unix epoch when the run ended.
    pub created_unix: u64,
    pub duration_secs: f64,
    pub corpora: Vec<CorpusRow>,
    /// Not saved in the report: written to its own file.
    #[serde(skip)]
    pub misclassified: Vec<Misclassified>,
}

/// Accumulates answers into a [`BenchReport`].
pub(crate) struct Tally {
    started: Instant,
    block_status: u16,
    corpora: BTreeMap<String, CorpusAcc>,
    misclassified: Vec<Misclassified>,
}

#[derive(Default)]
struct CorpusAcc {
    attacks: Counts,
    normal: Counts,
    categories: BTreeMap<(bool, String), Counts>,
    by_signal: BTreeMap<String, u64>,
}

const BODY_KEPT: usize = 2048;

impl Tally {
    /// A tally of a run that started at `started`.
    pub(crate) fn new(block_status: u16, started: Instant) -> Tally {
        Tally {
            started,
            block_status,
            corpora: BTreeMap::new(),
            misclassified: Vec::new(),
        }
    }

    fn add(&mut self, sample: &Sample, outcome: Outcome) -> &mut CorpusAcc {
        let acc = self.corpora.entry(sample.corpus.clone()).or_default();
        if sample.attack {
            acc.attacks.add(outcome);
        } else {
            acc.normal.add(outcome);
        }
        acc.categories
            .entry((sample.attack, sample.category.clone()))
            .or_default()
            .add(outcome);
        acc
    }

    pub(crate) fn skip(&mut self, sample: &Sample) {
        self.add(sample, Outcome::Skipped);
    }

    pub(crate) fn record(
        &mut self,
        sample: &Sample,
        answer: &Answer,
        events: Option<&HashMap<String, Vec<String>>>,
    ) {
        let outcome = match answer.status {
            None => Outcome::Error,
            Some(s) if s == self.block_status => Outcome::Blocked,
            Some(s) if s >= 400 => Outcome::Refused(s),
            Some(_) => Outcome::Passed,
        };
        let signals: Vec<String> = answer
            .request_id
            .as_ref()
            .and_then(|id| events?.get(id))
            .cloned()
            .unwrap_or_default();
        let acc = self.add(sample, outcome);
        // An attack refused with another status than the block status is
        // not counted as stopped, so it is listed with the misses.
        let wrong = match outcome {
            Outcome::Blocked => !sample.attack,
            Outcome::Passed => sample.attack,
            Outcome::Refused(_) | Outcome::Error => true,
            Outcome::Skipped => false,
        };
        if !wrong {
            return;
        }
        if !sample.attack && outcome != Outcome::Error {
            let key = if !signals.is_empty() {
                signals.join("+")
            } else if let Some(code) = &answer.pc_error {
                format!("x-pc-error: {code}")
            } else {
                format!("status {}", answer.status.unwrap_or_default())
            };
            *acc.by_signal.entry(key).or_default() += 1;
        }
        let req = &sample.request;
        let body = &req.body[..req.body.len().min(BODY_KEPT)];
        self.misclassified.push(Misclassified {
            corpus: sample.corpus.clone(),
            category: sample.category.clone(),
            id: sample.id.clone(),
            attack: sample.attack,
            status: answer.status,
            error: answer.error.clone(),
            pc_error: answer.pc_error.clone(),
            request_id: answer.request_id.clone(),
            signals,
            method: req.method.clone(),
            target: req.target.clone(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }

    pub(crate) fn finish(
        self,
        label: &str,
        target: &str,
        signals_from_events: bool,
    ) -> BenchReport {
        let created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let order = |name: &str| {
            crate::bench::CORPORA
                .iter()
                .position(|c| *c == name)
                .unwrap_or(usize::MAX)
        };
        let mut corpora: Vec<CorpusRow> = self
            .corpora
            .into_iter()
            .map(|(corpus, acc)| CorpusRow {
                corpus,
                attacks: acc.attacks,
                normal: acc.normal,
                categories: acc
                    .categories
                    .into_iter()
                    .map(|((attack, category), counts)| CategoryRow {
                        category,
                        attack,
                        counts,
                    })
                    .collect(),
                false_positives_by_signal: acc.by_signal,
            })
            .collect();
        corpora.sort_by_key(|c| order(&c.corpus));
        let mut misclassified = self.misclassified;
        misclassified.sort_by(|a, b| (&a.corpus, &a.id).cmp(&(&b.corpus, &b.id)));
        BenchReport {
            label: label.to_string(),
            target: target.to_string(),
            block_status: self.block_status,
            signals_from_events,
            created_unix,
            duration_secs: self.started.elapsed().as_secs_f64(),
            corpora,
            misclassified,
        }
    }
}

/// The signals named by each decision event of the gateway's event log
/// (JSON lines), by request id: those that demanded something (the ones
/// that can refuse), else all of them.
pub(crate) fn read_event_signals(path: &Path) -> Result<HashMap<String, Vec<String>>, CorpusError> {
    #[derive(Deserialize)]
    struct Event {
        request_id: String,
        #[serde(default)]
        signals: Vec<EventSignal>,
    }
    #[derive(Deserialize)]
    struct EventSignal {
        name: String,
        #[serde(default)]
        demand: Option<serde_json::Value>,
    }
    let file = std::fs::File::open(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = HashMap::new();
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        // The log may hold other lines (startup messages): skip what is not an event.
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        let demanding: Vec<String> = event
            .signals
            .iter()
            .filter(|s| s.demand.as_ref().is_some_and(|d| !is_tag(d)))
            .map(|s| s.name.clone())
            .collect();
        let mut names = if demanding.is_empty() {
            event.signals.into_iter().map(|s| s.name).collect()
        } else {
            demanding
        };
        // One name per family: a detector may raise several findings.
        names.sort();
        names.dedup();
        out.insert(event.request_id, names);
    }
    Ok(out)
}

/// A demand that only tags the request (`"tag"` or `{"kind": "tag"}`).
fn is_tag(demand: &serde_json::Value) -> bool {
    let kind = demand.get("kind").unwrap_or(demand);
    kind.as_str().is_some_and(|k| k.eq_ignore_ascii_case("tag"))
}

fn fmt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}%"))
}

fn fmt_refused(c: &Counts) -> String {
    if c.refused.is_empty() {
        return "-".to_string();
    }
    c.refused
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl BenchReport {
    /// Writes the report as pretty JSON and the misclassified samples as
    /// JSON lines, creating parent directories.
    pub fn save(&self, report: &Path, misclassified: &Path) -> Result<(), CorpusError> {
        for path in [report, misclassified] {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| CorpusError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let json_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CorpusError::Json { path, source }
        };
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CorpusError::Io { path, source }
        };
        let json = serde_json::to_vec_pretty(self).map_err(json_err(report))?;
        std::fs::write(report, json).map_err(io_err(report))?;
        let file = std::fs::File::create(misclassified).map_err(io_err(misclassified))?;
        let mut out = std::io::BufWriter::new(file);
        for m in &self.misclassified {
            serde_json::to_writer(&mut out, m).map_err(json_err(misclassified))?;
            out.write_all(b"\n").map_err(io_err(misclassified))?;
        }
        out.flush().map_err(io_err(misclassified))
    }

    /// Reads the report at `path` if there is one (`Ok(None)` when the file
    /// does not exist or is of another format).
    pub fn load_if_exists(path: &Path) -> Result<Option<BenchReport>, CorpusError> {
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(path).map_err(|source| CorpusError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// The text report: a summary line per corpus (beside `previous`'s
    /// figures when given), then per corpus the categories and the false
    /// positives by signal.
    pub fn render(&self, previous: Option<&BenchReport>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "corpus benchmark: {} ({}; blocked = status {}; {:.1}s; signals from {})",
            self.label,
            self.target,
            self.block_status,
            self.duration_secs,
            if self.signals_from_events {
                "decision events"
            } else {
                "x-pc-error / status"
            }
        );
        let _ = writeln!(
            out,
            "{:<11} {:<7} {:>7} {:>9} {:>9} {:>7} {:>6} {:>5} {:>5}  other refusals",
            "corpus", "kind", "sent", "score", "previous", "blocked", "passed", "err", "skip"
        );
        for c in &self.corpora {
            let prev = previous.and_then(|p| p.corpora.iter().find(|r| r.corpus == c.corpus));
            for (kind, counts, score, prev_score) in [
                (
                    "attacks",
                    &c.attacks,
                    c.attacks.stopped_pct(),
                    prev.and_then(|p| p.attacks.stopped_pct()),
                ),
                (
                    "normal",
                    &c.normal,
                    c.normal.flagged_pct(),
                    prev.and_then(|p| p.normal.flagged_pct()),
                ),
            ] {
                if counts.total == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{:<11} {:<7} {:>7} {:>9} {:>9} {:>7} {:>6} {:>5} {:>5}  {}",
                    c.corpus,
                    kind,
                    counts.answered(),
                    fmt_pct(score),
                    prev_score.map_or_else(String::new, |p| fmt_pct(Some(p))),
                    counts.blocked,
                    counts.passed,
                    counts.errors,
                    counts.skipped,
                    fmt_refused(counts)
                );
            }
        }
        let _ = writeln!(
            out,
            "score: attacks = share blocked with status {}; normal = share refused (any status >= 400)",
            self.block_status
        );
        for c in &self.corpora {
            let _ = writeln!(out, "\n-- {} by category", c.corpus);
            for row in &c.categories {
                let (kind, score) = if row.attack {
                    ("attacks stopped", row.counts.stopped_pct())
                } else {
                    ("normal flagged", row.counts.flagged_pct())
                };
                let _ = writeln!(
                    out,
                    "   {:<28} {:<15} {:>8} of {:>6}  other refusals {}",
                    row.category,
                    kind,
                    fmt_pct(score),
                    row.counts.answered(),
                    fmt_refused(&row.counts)
                );
            }
            if !c.false_positives_by_signal.is_empty() {
                let _ = writeln!(out, "-- {} false positives by signal", c.corpus);
                let mut by: Vec<_> = c.false_positives_by_signal.iter().collect();
                by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                for (signal, n) in by {
                    let _ = writeln!(out, "   {signal:<40} {n:>6}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawRequest;

    fn sample(corpus: &str, category: &str, attack: bool) -> Sample {
        Sample {
            corpus: corpus.into(),
            category: category.into(),
            attack,
            id: format!("{category}-{attack}"),
            request: RawRequest {
                method: "GET".into(),
                target: "/?p=x".into(),
                headers: Vec::new(),
                body: Vec::new(),
            },
        }
    }

    fn answer(status: u16, rid: &str) -> Answer {
        Answer {
            status: Some(status),
            request_id: Some(rid.into()),
            ..Answer::default()
        }
    }

    #[test]
    fn scores_statuses_and_signals() {
        let events: HashMap<String, Vec<String>> =
            [("r1".to_string(), vec!["sqli".to_string()])].into();
        let mut t = Tally::new(403, Instant::now());
        t.record(
            &sample("mgm", "sqli", true),
            &answer(403, "a"),
            Some(&events),
        );
        t.record(
            &sample("mgm", "sqli", true),
            &answer(400, "b"),
            Some(&events),
        );
        t.record(
            &sample("mgm", "xss", true),
            &answer(200, "c"),
            Some(&events),
        );
        t.record(
            &sample("mgm", "sqli", false),
            &answer(403, "r1"),
            Some(&events),
        );
        t.record(
            &sample("mgm", "sqli", false),
            &answer(200, "d"),
            Some(&events),
        );
        let mut q = answer(414, "e");
        q.pc_error = Some("uri_too_long".into());
        t.record(&sample("mgm", "xss", false), &q, Some(&events));
        t.record(
            &sample("mgm", "xss", false),
            &Answer::failed("reset".into()),
            Some(&events),
        );
        let r = t.finish("l", "http://127.0.0.1:1", true);
        let c = &r.corpora[0];
        // 400 is never counted as blocked.
        assert_eq!(c.attacks.blocked, 1);
        assert_eq!(c.attacks.refused.get(&400), Some(&1));
        assert_eq!(c.attacks.stopped_pct(), Some(100.0 / 3.0));
        // Any refusal of a normal request flags it; errors are not answers.
        assert_eq!(c.normal.answered(), 3);
        assert_eq!(c.normal.flagged_pct(), Some(200.0 / 3.0));
        assert_eq!(c.false_positives_by_signal.get("sqli"), Some(&1));
        assert_eq!(
            c.false_positives_by_signal.get("x-pc-error: uri_too_long"),
            Some(&1)
        );
        // Attack not blocked (400, 200), normal refused (403, 414), the error.
        assert_eq!(r.misclassified.len(), 5);
        let table = r.render(None);
        assert!(table.contains("33.33%"), "{table}");
        assert!(table.contains("400:1"), "{table}");
    }

    #[test]
    fn save_and_reload() {
        let mut t = Tally::new(403, Instant::now());
        t.record(&sample("normal", "graphql", false), &answer(403, "x"), None);
        let r = t.finish("l", "http://127.0.0.1:1", false);
        let dir = std::env::temp_dir().join(format!("corpus-bench-{}", std::process::id()));
        let (rp, mp) = (dir.join("r/c.json"), dir.join("r/m.jsonl"));
        r.save(&rp, &mp).expect("save");
        let back = BenchReport::load_if_exists(&rp)
            .expect("load")
            .expect("some");
        let lines = std::fs::read_to_string(&mp).expect("read");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(back.corpora, r.corpora);
        assert!(back.misclassified.is_empty());
        assert_eq!(lines.lines().count(), 1);
        assert!(lines.contains("\"category\":\"graphql\""));
        assert!(r.render(Some(&back)).contains("100.00%"));
    }

    #[test]
    fn event_log_signals() {
        let dir = std::env::temp_dir().join(format!("corpus-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("events.jsonl");
        std::fs::write(
            &path,
            "portcullis listening\n\
             {\"request_id\":\"a\",\"signals\":[{\"name\":\"scanner_path\",\"demand\":{\"kind\":\"tag\"}},{\"name\":\"sqli\",\"demand\":{\"kind\":\"block\"}}]}\n\
             {\"request_id\":\"b\",\"signals\":[{\"name\":\"crawler\",\"demand\":\"tag\"}]}\n",
        )
        .expect("write");
        let map = read_event_signals(&path).expect("read");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(map["a"], vec!["sqli".to_string()]);
        assert_eq!(map["b"], vec!["crawler".to_string()]);
    }
}
