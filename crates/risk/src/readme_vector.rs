//! The test vector and the origin snippets of README.md, so the document
//! cannot drift from the signer: the vector is checked against the Rust
//! signer (headers.rs), and the Node.js and Python snippets against the vector.

use std::process::Command;

const README: &str = include_str!("../README.md");

pub(crate) struct Vector {
    pub secret: &'static str,
    pub method: &'static str,
    pub target: &'static str,
    pub now: u64,
    pub headers: Vec<(&'static str, &'static str)>,
}

/// The fenced block that follows `marker` in the README.
fn block(marker: &str) -> &'static str {
    let after = README
        .split_once(marker)
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("README.md lacks {marker}"));
    let body = after
        .split_once("```")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map(|(_, rest)| rest)
        .expect("a fenced block after the marker");
    body.split_once("```").expect("a closed block").0
}

pub(crate) fn parse() -> Vector {
    let mut fields = block("<!-- test-vector -->")
        .lines()
        .filter_map(|line| line.split_once(": "));
    let mut field = |key: &str| {
        let (k, v) = fields.next().expect("a field");
        assert_eq!(k, key, "README vector field order");
        v
    };
    let secret = field("secret");
    let method = field("method");
    let target = field("target");
    let now = field("now").parse().expect("unix seconds");
    Vector {
        secret,
        method,
        target,
        now,
        headers: fields.collect(),
    }
}

fn vector_json(v: &Vector) -> (String, String) {
    let headers: serde_json::Map<String, serde_json::Value> = v
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), serde_json::Value::from(*v)))
        .collect();
    let params = serde_json::json!({
        "secret": v.secret, "method": v.method, "target": v.target, "now": v.now + 10,
    });
    (
        serde_json::Value::Object(headers).to_string(),
        params.to_string(),
    )
}

/// Runs `program` on the snippet plus a harness; the harness prints `verified`
/// when the vector verifies and a forged rank does not.
fn run(program: &str, source: String) -> String {
    let path = std::env::temp_dir().join(format!(
        "portcullis-risk-snippet-{}-{program}",
        std::process::id()
    ));
    std::fs::write(&path, source).expect("temp file");
    let (headers, params) = vector_json(&parse());
    let out = Command::new(program)
        .arg(&path)
        .arg(headers)
        .arg(params)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Node.js is part of the project's set-up (the SDK tests), so this always runs.
#[test]
fn node_snippet_verifies_the_vector() {
    let harness = r#"
const headers = JSON.parse(process.argv[2]);
const p = JSON.parse(process.argv[3]);
const signed = verifyRiskHeaders(p.secret, p.method, p.target, headers, 300, p.now);
if (signed["x-wx-risk-rank"] !== "1") throw new Error("wrong signed rank");
let forgedAccepted = true;
try {
  verifyRiskHeaders(p.secret, p.method, p.target, { ...headers, "x-wx-risk-rank": "0" }, 300, p.now);
} catch (e) {
  forgedAccepted = false;
}
if (forgedAccepted) throw new Error("forged rank accepted");
console.log("verified");
"#;
    let source = format!("{}\n{harness}", block("<!-- node-snippet -->"));
    assert_eq!(run("node", source), "verified");
}

/// Python is not part of the set-up; the snippet is checked where it is installed.
#[test]
fn python_snippet_verifies_the_vector() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not installed: README Python snippet not checked");
        return;
    }
    let harness = r#"
import json, sys
headers = json.loads(sys.argv[1])
p = json.loads(sys.argv[2])
signed = verify_risk_headers(p["secret"].encode(), p["method"], p["target"], headers, 300, p["now"])
assert signed["x-wx-risk-rank"] == "1"
try:
    verify_risk_headers(p["secret"].encode(), p["method"], p["target"], {**headers, "x-wx-risk-rank": "0"}, 300, p["now"])
    raise SystemExit("forged rank accepted")
except ValueError:
    pass
print("verified")
"#;
    let source = format!("{}\n{harness}", block("<!-- python-snippet -->"));
    assert_eq!(run("python3", source), "verified");
}
