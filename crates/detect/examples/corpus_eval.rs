//! Scores the detector offline, in seconds, on four corpora:
//!
//! - the project's normal-traffic corpus (`normal/requests.jsonl.gz`), each
//!   request as recorded;
//! - GoTestWAF (true-positive and false-positive sets), as GoTestWAF sends them;
//! - HttpParamsDataset train (normal values vs attacks per type), each value
//!   percent-encoded into `GET /?p=` and into a form body `p=`;
//! - mgm-payloads (per class, true positives and false-positive lists), placed
//!   as open-appsec's comparison did: `GET /?p=<quote(payload)>` with `%25`
//!   turned back into `%`, and the same as a form POST body.
//!
//! It prints detection and false-positive rates per corpus, per category
//! and per signal (family / rule), writes every misclassified request to a
//! file for study, and optionally every request's verdict (to diff two
//! versions of the engine: a change that must not alter a verdict, such as
//! the prefilter, must leave that file byte-identical).
//!
//! ```text
//! cargo run --release -p portcullis-detect --example corpus_eval -- \
//!     [--corpora DIR] [--normal FILE] [--gotestwaf DIR] [--httpparams CSV] [--mgm DIR] \
//!     [--misses FILE] [--verdicts FILE]
//! ```
//!
//! `--corpora` (or `PORTCULLIS_CORPORA`) is the directory holding
//! `normal/requests.jsonl.gz`, `gotestwaf/testcases` and
//! `httpparams/payload_train.csv`; it defaults to
//! `bench/corpora` in this repository. The mgm collection is GPL-3.0 and is
//! not vendored: pass its directory with `--mgm` (or `MGM_PAYLOADS`); it is
//! skipped without one. A corpus that is not found is reported and skipped.

use portcullis_corpus::{build, cases, load, load_normal};
use portcullis_detect::{DEFAULT_THRESHOLD, Detector, Profile, RawRequest, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

struct Args {
    normal: PathBuf,
    gotestwaf: PathBuf,
    httpparams: PathBuf,
    mgm: Option<PathBuf>,
    misses: PathBuf,
    verdicts: Option<PathBuf>,
}

fn parse_args() -> Args {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut corpora = std::env::var_os("PORTCULLIS_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("bench/corpora"));
    let mut normal = None;
    let mut gotestwaf = None;
    let mut httpparams = None;
    let mut mgm = std::env::var_os("MGM_PAYLOADS").map(PathBuf::from);
    let mut misses = repo.join("target/corpus_eval_misses.tsv");
    let mut verdicts = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || match args.next() {
            Some(v) => PathBuf::from(v),
            None => {
                eprintln!("{a} needs a value");
                std::process::exit(2);
            }
        };
        match a.as_str() {
            "--corpora" => corpora = value(),
            "--normal" => normal = Some(value()),
            "--gotestwaf" => gotestwaf = Some(value()),
            "--httpparams" => httpparams = Some(value()),
            "--mgm" => mgm = Some(value()),
            "--misses" => misses = value(),
            "--verdicts" => verdicts = Some(value()),
            _ => {
                eprintln!("unknown argument {a} (see the header of corpus_eval.rs)");
                std::process::exit(2);
            }
        }
    }
    Args {
        normal: normal.unwrap_or_else(|| corpora.join("normal/requests.jsonl.gz")),
        gotestwaf: gotestwaf.unwrap_or_else(|| corpora.join("gotestwaf/testcases")),
        httpparams: httpparams.unwrap_or_else(|| corpora.join("httpparams/payload_train.csv")),
        mgm,
        misses,
        verdicts,
    }
}

/// Counts of one category: requests and how many were flagged.
#[derive(Default)]
struct Count {
    total: u64,
    flagged: u64,
}

/// One corpus' results. Categories are `attack/<name>` (flagged is good)
/// or `benign/<name>` (flagged is a false positive).
#[derive(Default)]
struct Section {
    categories: BTreeMap<String, Count>,
    /// `family/rule` of the top finding, per side (attack / benign), for flagged requests.
    signals: BTreeMap<(bool, String), u64>,
}

struct Sample<'a> {
    corpus: &'a str,
    attack: bool,
    category: &'a str,
    placement: &'a str,
    payload: &'a str,
}

struct Eval {
    detector: Detector,
    misses: Vec<String>,
    verdicts: Vec<String>,
    keep_verdicts: bool,
}

impl Eval {
    fn record(&mut self, section: &mut Section, s: &Sample, v: &Verdict) {
        let flagged = v.is_attack(DEFAULT_THRESHOLD);
        let side = if s.attack { "attack" } else { "benign" };
        let c = section
            .categories
            .entry(format!("{side}/{}", s.category))
            .or_default();
        c.total += 1;
        c.flagged += u64::from(flagged);
        if flagged {
            if let Some(top) = v.top() {
                let key = format!("{}/{}", top.family, top.rule_id);
                *section.signals.entry((s.attack, key)).or_default() += 1;
            }
        }
        let findings = findings(v);
        if flagged != s.attack {
            let kind = if s.attack { "MISS" } else { "FP" };
            let evidence: Vec<&str> = v.findings.iter().map(|f| f.evidence.as_str()).collect();
            self.misses.push(format!(
                "{}\t{kind}\t{}\t{}\t{findings}\t{}\t{}",
                s.corpus,
                s.category,
                s.placement,
                one_line(&evidence.join(" | "), 400),
                one_line(s.payload, 1500)
            ));
        }
        if self.keep_verdicts {
            self.verdicts.push(format!(
                "{}\t{}\t{}\t{}\t{}\t{findings}",
                s.corpus,
                s.category,
                s.placement,
                u8::from(flagged),
                one_line(s.payload, 200)
            ));
        }
    }

    fn inspect(
        &self,
        method: &str,
        target: &[u8],
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> Verdict {
        self.detector.inspect(&RawRequest {
            method,
            target,
            headers,
            body,
            body_truncated: false,
        })
    }

    /// The value as `GET /?p=` and as a form POST body `p=`.
    fn both_placements(&mut self, section: &mut Section, s: &Sample, encoded: &str) {
        let get_headers: [(&str, &[u8]); 3] = [
            ("host", b"example.com"),
            ("user-agent", UA.as_bytes()),
            ("accept", b"*/*"),
        ];
        let v = self.inspect(
            "GET",
            format!("/?p={encoded}").as_bytes(),
            &get_headers,
            b"",
        );
        self.record(
            section,
            &Sample {
                placement: "get",
                ..*s
            },
            &v,
        );
        let post_headers: [(&str, &[u8]); 4] = [
            ("host", b"example.com"),
            ("user-agent", UA.as_bytes()),
            ("accept", b"*/*"),
            ("content-type", b"application/x-www-form-urlencoded"),
        ];
        let body = format!("p={encoded}");
        let v = self.inspect("POST", b"/", &post_headers, body.as_bytes());
        self.record(
            section,
            &Sample {
                placement: "post",
                ..*s
            },
            &v,
        );
    }
}

fn findings(v: &Verdict) -> String {
    let mut out = String::new();
    for f in &v.findings {
        let _ = write!(
            out,
            "{}:{}@{}={} ",
            f.family, f.rule_id, f.location, f.score
        );
    }
    out.trim_end().to_string()
}

fn one_line(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| match c {
            '\n' => '␤',
            '\r' => '␍',
            '\t' => '␉',
            c => c,
        })
        .collect()
}

/// Python's `urllib.parse.quote(s)` (safe `/`).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn gotestwaf(ev: &mut Eval, dir: &Path) -> Option<Section> {
    let files = match load(dir) {
        Ok(f) => f,
        Err(e) => {
            println!("gotestwaf: skipped ({e})");
            return None;
        }
    };
    let mut section = Section::default();
    for case in cases(&files) {
        // gRPC cases cannot be sent over HTTP/1.1; GoTestWAF skips them too.
        let Some(req) = build(&case) else {
            continue;
        };
        let owned: Vec<(String, &[u8])> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes()))
            .collect();
        let headers: Vec<(&str, &[u8])> = owned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let v = ev.inspect(&req.method, req.target.as_bytes(), &headers, &req.body);
        let category = format!("{}/{}", case.set, case.family);
        let placement = format!("{} {}", case.encoder.name(), case.placeholder.name());
        let s = Sample {
            corpus: "gotestwaf",
            attack: !case.is_false_positive,
            category: &category,
            placement: &placement,
            payload: &case.payload,
        };
        ev.record(&mut section, &s, &v);
    }
    Some(section)
}

fn normal(ev: &mut Eval, path: &Path) -> Option<Section> {
    let samples = match load_normal(path) {
        Ok(s) => s,
        Err(e) => {
            println!("normal: skipped ({e})");
            return None;
        }
    };
    let mut section = Section::default();
    for sample in &samples {
        let req = &sample.request;
        let owned: Vec<(String, &[u8])> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes()))
            .collect();
        let headers: Vec<(&str, &[u8])> = owned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let v = ev.inspect(&req.method, req.target.as_bytes(), &headers, &req.body);
        let payload = format!(
            "{} {} {}",
            req.method,
            req.target,
            String::from_utf8_lossy(&req.body)
        );
        let s = Sample {
            corpus: "normal",
            attack: false,
            category: &sample.category,
            placement: &sample.id,
            payload: &payload,
        };
        ev.record(&mut section, &s, &v);
    }
    Some(section)
}

fn httpparams(ev: &mut Eval, csv_path: &Path) -> Option<Section> {
    let mut reader = match csv::Reader::from_path(csv_path) {
        Ok(r) => r,
        Err(e) => {
            println!("httpparams: skipped ({}: {e})", csv_path.display());
            return None;
        }
    };
    let mut section = Section::default();
    for (i, row) in reader.records().enumerate() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                eprintln!("httpparams: row {i}: {e}");
                continue;
            }
        };
        let (Some(payload), Some(kind), Some(label)) = (row.get(0), row.get(2), row.get(3)) else {
            continue;
        };
        let attack = label == "anom";
        let category = if attack { kind } else { "normal" };
        let s = Sample {
            corpus: "httpparams",
            attack,
            category,
            placement: "",
            payload,
        };
        ev.both_placements(&mut section, &s, &quote(payload));
    }
    Some(section)
}

fn mgm(ev: &mut Eval, dir: &Path) -> Option<Section> {
    let mut classes: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) => {
            println!("mgm: skipped ({}: {e})", dir.display());
            return None;
        }
    };
    classes.sort();
    let mut section = Section::default();
    for class_dir in classes {
        let class = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (file, attack) in [("true-positives.txt", true), ("false-positives.txt", false)] {
            let Ok(text) = std::fs::read_to_string(class_dir.join(file)) else {
                continue;
            };
            for line in text.lines() {
                let payload = line.trim_end_matches('\r');
                if payload.is_empty() {
                    continue;
                }
                let s = Sample {
                    corpus: "mgm",
                    attack,
                    category: &class,
                    placement: "",
                    payload,
                };
                ev.both_placements(&mut section, &s, &quote(payload).replace("%25", "%"));
            }
        }
    }
    Some(section)
}

fn pct(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

fn render(name: &str, s: &Section) -> String {
    let mut out = String::new();
    let mut totals = [Count::default(), Count::default()];
    for (key, c) in &s.categories {
        let t = &mut totals[usize::from(key.starts_with("attack/"))];
        t.total += c.total;
        t.flagged += c.flagged;
    }
    let _ = writeln!(out, "== {name}");
    let [benign, attack] = &totals;
    let _ = writeln!(
        out,
        "attacks stopped        {:>7.2}%  ({} of {})",
        pct(attack.flagged, attack.total),
        attack.flagged,
        attack.total
    );
    let _ = writeln!(
        out,
        "benign flagged (FP)    {:>7.2}%  ({} of {})  -> passed {:.2}%",
        pct(benign.flagged, benign.total),
        benign.flagged,
        benign.total,
        100.0 - pct(benign.flagged, benign.total)
    );
    let _ = writeln!(out, "-- per category (flagged share)");
    for (key, c) in &s.categories {
        let _ = writeln!(
            out,
            "  {key:<44} {:>7.2}%  ({} of {})",
            pct(c.flagged, c.total),
            c.flagged,
            c.total
        );
    }
    for (attack, title) in [(true, "attacks stopped"), (false, "false positives")] {
        let _ = writeln!(out, "-- {title} per signal (top finding)");
        for ((a, sig), n) in &s.signals {
            if *a == attack {
                let _ = writeln!(out, "  {sig:<44} {n:>7}");
            }
        }
    }
    out
}

fn write_lines(path: &Path, lines: &[String]) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let res = std::fs::File::create(path).and_then(|f| {
        let mut w = std::io::BufWriter::new(f);
        for l in lines {
            writeln!(w, "{l}")?;
        }
        w.flush()
    });
    if let Err(e) = res {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

fn main() {
    let args = parse_args();
    let mut ev = Eval {
        detector: Detector::new(Profile::default()),
        misses: Vec::new(),
        verdicts: Vec::new(),
        keep_verdicts: args.verdicts.is_some(),
    };
    let started = Instant::now();
    if let Some(s) = normal(&mut ev, &args.normal) {
        println!("{}", render("normal", &s));
    }
    if let Some(s) = gotestwaf(&mut ev, &args.gotestwaf) {
        println!("{}", render("gotestwaf", &s));
    }
    if let Some(s) = httpparams(&mut ev, &args.httpparams) {
        println!("{}", render("httpparams (train)", &s));
    }
    match &args.mgm {
        Some(dir) => {
            if let Some(s) = mgm(&mut ev, dir) {
                println!("{}", render("mgm-payloads", &s));
            }
        }
        None => println!("mgm: skipped (pass --mgm DIR or set MGM_PAYLOADS)"),
    }
    write_lines(&args.misses, &ev.misses);
    eprintln!(
        "{} misclassified requests written to {} ({:.1}s)",
        ev.misses.len(),
        args.misses.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(p) = &args.verdicts {
        write_lines(p, &ev.verdicts);
        eprintln!("{} verdicts written to {}", ev.verdicts.len(), p.display());
    }
}
