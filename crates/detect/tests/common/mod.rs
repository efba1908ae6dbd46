//! Helpers shared by the integration tests.

#![allow(dead_code)]

use portcullis_detect::{DEFAULT_THRESHOLD, Detector, Profile, RawRequest, Verdict};

pub fn detector() -> Detector {
    Detector::new(Profile::default())
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn run(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Verdict {
    let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    detector().inspect(&RawRequest {
        method,
        target: target.as_bytes(),
        headers: &h,
        body,
        body_truncated: false,
    })
}

/// The value placed in a query parameter, a form, a JSON body and a header.
pub fn placements(value: &str) -> Vec<(&'static str, Verdict)> {
    let q = format!("/search?q={}", enc(value));
    let form = format!("name=x&comment={}", enc(value));
    let json = format!(
        "{{\"user\":{{\"bio\":{}}},\"tags\":[\"a\",{}]}}",
        json_str(value),
        json_str(value)
    );
    vec![
        ("query", run("GET", &q, &[], b"")),
        (
            "form",
            run(
                "POST",
                "/post",
                &[("content-type", "application/x-www-form-urlencoded")],
                form.as_bytes(),
            ),
        ),
        (
            "json",
            run(
                "POST",
                "/api",
                &[("content-type", "application/json")],
                json.as_bytes(),
            ),
        ),
    ]
}

pub fn blocked(v: &Verdict) -> bool {
    v.is_attack(DEFAULT_THRESHOLD)
}
