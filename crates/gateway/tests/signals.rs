//! Every signal the gateway raises is in the catalogue
//! (`portcullis_config::signals`), which gives its layer and weight and
//! lets `[risk.weights]` name it. Names come from the sources (the literals
//! stages raise, the protocol checks' names) and from the error codes of
//! the crates whose errors become signals.

use std::collections::BTreeSet;
use std::path::Path;

use portcullis_config::signals::signal_spec;

fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).expect("read source"));
        }
    }
}

/// The string literal right after each occurrence of `opener` in `text`.
fn literals_after(text: &str, opener: &str, names: &mut BTreeSet<String>) {
    for (at, _) in text.match_indices(opener) {
        let rest = text[at + opener.len()..].trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        if let Some(end) = rest.find('"') {
            names.insert(rest[..end].to_owned());
        }
    }
}

fn crate_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

#[test]
fn every_raised_signal_is_catalogued() {
    let mut texts = Vec::new();
    sources(&crate_dir("gateway"), &mut texts);
    let mut names = BTreeSet::new();
    for text in &texts {
        for opener in [
            ".add(",
            ".add_weighted(",
            ".refuse(",
            "fail(ctx,",
            "violation(",
            "Some((",
        ] {
            literals_after(text, opener, &mut names);
        }
        // `refuse(ctx, 403, "code", ...)` in the trust checks.
        for (at, _) in text.match_indices("refuse(\n") {
            literals_after(&text[at..(at + 200).min(text.len())], ",", &mut names);
        }
    }
    // Error codes that stages raise as signals by their code.
    let mut codes = Vec::new();
    for krate in ["challenge", "authz"] {
        sources(&crate_dir(krate), &mut codes);
    }
    for text in &codes {
        literals_after(text, "=> ", &mut names);
    }
    for family in portcullis_detect::Family::ALL {
        names.insert(family.as_str().to_owned());
    }
    let signal_like = |n: &&String| {
        n.starts_with("clearance_")
            || n.starts_with("signature_")
            || n.starts_with("digest_")
            || n.starts_with("jwt_")
            || !n.contains(' ')
    };
    let missing: Vec<_> = names
        .iter()
        .filter(signal_like)
        .filter(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .filter(|n| {
            n.contains('_')
                || portcullis_detect::Family::ALL
                    .iter()
                    .any(|f| f.as_str() == n.as_str())
        })
        .filter(|n| signal_spec(n).is_none())
        .filter(|n| !NOT_SIGNALS.contains(&n.as_str()))
        .collect();
    assert!(missing.is_empty(), "raised but not catalogued: {missing:?}");
}

/// Literals the scan finds that are not signal names (error bodies, claim
/// reasons folded into `over_privileged`, evidence words).
const NOT_SIGNALS: &[&str] = &[
    "rate_limited",
    "not_found",
    "invalid_device",
    "captcha_required",
    "missing_component",
    "missing_parameter",
    "not_covered",
    "unsupported_component",
    "jwt_missing_scope",
    "jwt_claim_not_allowed",
    "jwt_subject_mismatch",
    "request_id",
    "challenge_required",
    "clearance_required",
    // Answers of the challenge service, evidence of `portal_failed`.
    "bad_signature",
    "bad_solution",
    "robot_trace",
    "wrong_answer",
    "wrong_device",
    "wrong_network",
];
