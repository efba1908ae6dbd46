//! Splitting a raw request into located values: target (path, query),
//! headers, cookies and the body by content type.

mod body;
mod form;
mod json;
mod multipart;
mod xml;

use crate::RawRequest;
use crate::analyze::{Ctx, Sink};

/// Headers whose values are structured and never carry user text.
const SKIP_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-charset",
    "connection",
    "keep-alive",
    "cache-control",
    "pragma",
    "upgrade-insecure-requests",
    "te",
    "upgrade",
    "authorization",
    "proxy-authorization",
    "if-none-match",
    "if-match",
    "if-modified-since",
    "if-unmodified-since",
    "date",
    "dnt",
    "priority",
    "range",
    "expect",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "x-request-id",
    "traceparent",
    "tracestate",
    "content-md5",
    "x-wx-risk-rank",
    // The client protocol's tokens and signatures, checked by the gateway's trust stage.
    "signature-input",
    "signature",
    "content-digest",
    "x-pc-clearance",
    "x-pc-device",
    ":authority",
    ":method",
    ":path",
    ":scheme",
];

/// Longest key kept in a location string.
const MAX_KEY: usize = 64;

pub(crate) fn request(req: &RawRequest, sink: &mut Sink) {
    target(req.target, sink);
    let mut content_type: &[u8] = b"";
    let mut content_encoding: &[u8] = b"";
    for &(name, value) in req.headers.iter().take(128) {
        match name {
            "content-type" => content_type = value,
            "content-encoding" => content_encoding = value,
            "cookie" => cookies(value, sink),
            "user-agent" => sink.value("header.user-agent", value, Ctx::UserAgent),
            "referer" | "origin" => {
                let loc = location("header", name.as_bytes());
                sink.value(&loc, value, Ctx::Referrer);
            }
            _ if SKIP_HEADERS.contains(&name) || name.starts_with("sec-") => {}
            _ => {
                let loc = location("header", name.as_bytes());
                sink.value(&loc, value, Ctx::Header);
            }
        }
    }
    if !req.body.is_empty() {
        body::inspect(req.body, content_type, content_encoding, sink);
    }
}

/// `prefix.key`, with the key decoded, sanitised and bounded.
pub(crate) fn location(prefix: &str, key: &[u8]) -> String {
    let mut out = String::with_capacity(prefix.len() + 1 + key.len().min(MAX_KEY));
    out.push_str(prefix);
    if key.is_empty() {
        return out;
    }
    out.push('.');
    for c in String::from_utf8_lossy(&key[..key.len().min(MAX_KEY)]).chars() {
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

fn target(t: &[u8], sink: &mut Sink) {
    // absolute-form (`http://host/path?q`): keep only path and query.
    let t = match [&b"http://"[..], b"https://"]
        .iter()
        .find(|p| t.len() > p.len() && t[..p.len()].eq_ignore_ascii_case(p))
    {
        Some(p) => {
            let rest = &t[p.len()..];
            match memchr::memchr2(b'/', b'?', rest) {
                Some(i) => &rest[i..],
                None => b"/",
            }
        }
        None => t,
    };
    let t = match memchr::memchr(b'#', t) {
        Some(p) => &t[..p],
        None => t,
    };
    let (path, query) = match memchr::memchr(b'?', t) {
        Some(p) => (&t[..p], Some(&t[p + 1..])),
        None => (t, None),
    };
    if path.len() > 1 {
        sink.value("path", path, Ctx::Path);
    }
    if let Some(q) = query {
        form::pairs(q, "query", Ctx::Query, sink);
    }
}

fn cookies(v: &[u8], sink: &mut Sink) {
    for part in v.split(|&c| c == b';').take(64) {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let (k, val) = match memchr::memchr(b'=', part) {
            Some(p) => (&part[..p], &part[p + 1..]),
            None => (&b""[..], part),
        };
        let loc = location("cookie", k.trim_ascii());
        sink.value(&loc, val, Ctx::Cookie);
    }
}
