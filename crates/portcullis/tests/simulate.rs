//! `portcullis simulate` end to end: the binary starts its origin and a
//! gateway child (itself, `run`), drives every population for a few seconds
//! and writes its report. The ranks only mean something once the risk
//! engine writes them; this checks the report's structure and that every
//! population was heard.

use std::path::Path;
use std::process::Command;

use portcullis_simulator::{Population, SimReport};

#[test]
fn short_simulation_reports_every_population() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let json = std::env::temp_dir().join(format!(
        "portcullis-simulate-test-{}.json",
        std::process::id()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("simulate")
        .arg("--config")
        .arg(root.join("bench/simulate.toml"))
        .args(["--duration-s", "5", "--scale", "0.05", "--seed", "7"])
        .arg("--json")
        .arg(&json)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .expect("run portcullis simulate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "simulate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = SimReport::load(&json).expect("JSON report");
    let _ = std::fs::remove_file(&json);

    assert_eq!(report.seed, 7);
    assert!(
        report.target.starts_with("http://127.0.0.1:"),
        "{}",
        report.target
    );
    let names: Vec<&str> = report.populations.iter().map(|p| p.name.as_str()).collect();
    let expected: Vec<&str> = Population::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(names, expected);
    for p in &report.populations {
        assert!(p.requests > 0, "{} sent nothing\n{stdout}", p.name);
        assert_eq!(
            p.requests,
            p.passed + p.challenged + p.intercepted + p.throttled + p.blocked + p.failed,
            "{}",
            p.name
        );
        assert!(p.ranks.iter().sum::<u64>() <= p.passed, "{}", p.name);
        assert_eq!(p.rank_known + p.unranked, p.requests, "{}", p.name);
        assert!(
            p.failed * 10 <= p.requests,
            "{}: {} failed\n{stdout}",
            p.name,
            p.failed
        );
        assert!(
            stdout.contains(&p.name),
            "{} missing from the table",
            p.name
        );
        assert_eq!(p.abusive, p.name != "ordinary");
    }
    // The origin heard every population that got through the gateway.
    for p in report.populations.iter().filter(|p| p.passed > 0) {
        assert!(p.origin.requests > 0, "origin never saw {}", p.name);
    }
    let c = report.confusion;
    let total: u64 = report.populations.iter().map(|p| p.requests).sum();
    assert_eq!(
        c.abusive.high
            + c.abusive.low
            + c.abusive.unranked
            + c.ordinary.high
            + c.ordinary.low
            + c.ordinary.unranked,
        total
    );
    assert!(
        stdout.contains("abusive requests with rank >= 3"),
        "{stdout}"
    );
}
