//! Arbitrary bytes into the decoders and into `Detector::inspect`, with the
//! body under every content type and encoding the parser dispatches on.
//!
//! cargo +nightly fuzz run detect_inspect -- -max_len=8192

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_detect::{Detector, RawRequest, decode, leaks_internals};
use std::sync::LazyLock;

static DETECTOR: LazyLock<Detector> = LazyLock::new(Detector::default);

const CONTENT_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/json",
    "text/xml",
    "multipart/form-data; boundary=b",
    "application/graphql",
    "",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    // Decoders on their own.
    let mut a = decode::Anomalies::default();
    let _ = decode::full_decode(data, true, &mut a);
    let _ = decode::views(data, false);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = decode::base64_texts(s);
    }
    let _ = leaks_internals(500, data);

    // A request: first byte picks the content type and encoding, the rest
    // is split into target / header value / body at 0xFF bytes.
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0xFF);
    let target = parts.next().unwrap_or_default();
    let header = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let ct = CONTENT_TYPES[usize::from(sel) % CONTENT_TYPES.len()];
    let enc: &[u8] = match sel >> 5 {
        0 => b"gzip",
        1 => b"deflate",
        _ => b"",
    };
    let headers: [(&str, &[u8]); 5] = [
        ("content-type", ct.as_bytes()),
        ("content-encoding", enc),
        ("user-agent", header),
        ("cookie", header),
        ("x-custom", header),
    ];
    let v = DETECTOR.inspect(&RawRequest {
        method: "POST",
        target,
        headers: &headers,
        body,
        body_truncated: false,
    });
    assert!(v.findings.len() <= 16);
    for f in &v.findings {
        assert!(f.evidence.chars().count() <= 64);
    }
});
