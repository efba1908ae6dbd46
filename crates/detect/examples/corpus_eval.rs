//! Scores the detector offline on the GoTestWAF corpus, per set, family
//! and file, and lists a sample of misses and false positives.
//!
//! cargo run --release -p portcullis-detect --example corpus_eval -- \
//!     [TESTCASES_DIR] [--misses N] [--verbose]

use portcullis_corpus::{Report, cases, evaluate, load};
use portcullis_detect::{DEFAULT_THRESHOLD, Detector, Profile, RawRequest};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut dir = PathBuf::from("/work/shared/bench/gotestwaf/testcases");
    let mut misses = 40usize;
    let mut verbose = false;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--misses" => misses = args.next().and_then(|n| n.parse().ok()).unwrap_or(misses),
            "--verbose" => verbose = true,
            "--case" => only = args.next(),
            _ => dir = PathBuf::from(a),
        }
    }
    let files = match load(&dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot load {}: {e}", dir.display());
            std::process::exit(2);
        }
    };
    let detector = Detector::new(Profile::default());
    let started = Instant::now();
    let selected =
        cases(&files).filter(|c| only.as_ref().is_none_or(|o| c.id().contains(o.as_str())));
    let report: Report = evaluate(selected, |req| {
        let owned: Vec<(String, &[u8])> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes()))
            .collect();
        let headers: Vec<(&str, &[u8])> = owned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let raw = RawRequest {
            method: &req.method,
            target: req.target.as_bytes(),
            headers: &headers,
            body: &req.body,
            body_truncated: false,
        };
        let v = detector.inspect(&raw);
        let blocked = v.is_attack(DEFAULT_THRESHOLD);
        if verbose {
            eprintln!(
                "{} {} {:?}\n  body: {}\n  -> {:?}",
                req.method,
                req.target.chars().take(200).collect::<String>(),
                req.headers,
                String::from_utf8_lossy(&req.body)
                    .chars()
                    .take(400)
                    .collect::<String>(),
                v.findings
            );
        }
        blocked
    });
    println!("{}", report.render(None));
    println!("evaluated in {:.2}s", started.elapsed().as_secs_f64());
    let fps: Vec<_> = report
        .misses
        .iter()
        .filter(|m| m.is_false_positive)
        .collect();
    let atk: Vec<_> = report
        .misses
        .iter()
        .filter(|m| !m.is_false_positive)
        .collect();
    println!("\nfalse positives ({}):", fps.len());
    for m in fps.iter().take(misses) {
        println!("  {} | {}", m.case, m.payload.replace('\n', "\\n"));
    }
    println!("\nmissed attacks ({}):", atk.len());
    for m in atk.iter().take(misses) {
        println!(
            "  {} | {}",
            m.case,
            m.payload
                .chars()
                .take(120)
                .collect::<String>()
                .replace('\n', "\\n")
        );
    }
}
