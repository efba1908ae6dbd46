//! Splitting a raw request into located values: target (path, query),
//! headers, cookies and the body by content type.

mod body;
mod form;
mod json;
pub(crate) mod multipart;
mod xml;

use crate::RawRequest;
use crate::analyze::{Ctx, Sink};

/// Headers the origin never reads: the gateway's own client protocol
/// (verified by its trust stage and removed before the origin), hop-by-hop
/// framing it consumes, and HTTP/2 pseudo-headers. Every other header is
/// inspected, `Accept-Language` and `Authorization` included.
const SKIP_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "x-wx-risk-rank",
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

/// Most headers read.
const MAX_HEADERS: usize = 128;
/// Most cookies read.
const MAX_COOKIES: usize = 64;

/// Longest key kept in a location string.
const MAX_KEY: usize = 64;

pub(crate) fn request(req: &RawRequest, sink: &mut Sink) {
    target(req.target, sink);
    let mut content_type: &[u8] = b"";
    let mut content_encoding: &[u8] = b"";
    if req.headers.len() > MAX_HEADERS {
        sink.overflow(|i| i.headers = true);
    }
    for &(name, value) in req.headers.iter().take(MAX_HEADERS) {
        match name {
            "content-type" => content_type = value,
            "content-encoding" => content_encoding = value,
            _ => {}
        }
        match name {
            "cookie" => cookies(value, sink),
            "user-agent" => sink.value("header.user-agent", value, Ctx::UserAgent),
            "referer" | "origin" => referrer(name, value, sink),
            _ if SKIP_HEADERS.contains(&name) => {}
            _ => at_location(sink, "header", name.as_bytes(), |sink, loc| {
                sink.value(loc, value, Ctx::Header)
            }),
        }
    }
    if !req.body.is_empty() {
        body::inspect(req.body, content_type, content_encoding, sink);
    }
}

/// `Referer` and `Origin` as URLs: the URL without its query is judged as
/// a referrer (an intranet page names internal hosts as a matter of
/// course), and each query parameter like one of the request's own, at
/// `header.referer.<key>`.
fn referrer(name: &str, value: &[u8], sink: &mut Sink) {
    let loc = location("header", name.as_bytes());
    let value = match memchr::memchr(b'#', value) {
        Some(p) => &value[..p],
        None => value,
    };
    match memchr::memchr(b'?', value) {
        Some(p) => {
            sink.value(&loc, &value[..p], Ctx::Referrer);
            form::pairs(&value[p + 1..], &loc, Ctx::RefererQuery, sink);
        }
        None => sink.value(&loc, value, Ctx::Referrer),
    }
}

/// `prefix.key`, with the key decoded, sanitised and bounded.
pub(crate) fn location(prefix: &str, key: &[u8]) -> String {
    let mut out = String::with_capacity(prefix.len() + 1 + key.len().min(MAX_KEY));
    write_location(&mut out, prefix, key);
    out
}

/// Calls `f` with the location `prefix.key` (see [`location`]) written
/// into a buffer the sink reuses: most values are found clean at once, and
/// a location allocated for each of them was most of their cost.
pub(crate) fn at_location<R>(
    sink: &mut Sink,
    prefix: &str,
    key: &[u8],
    f: impl FnOnce(&mut Sink, &str) -> R,
) -> R {
    let mut buffer = sink.take_location_buffer();
    write_location(&mut buffer, prefix, key);
    let result = f(sink, &buffer);
    sink.give_location_buffer(buffer);
    result
}

fn write_location(out: &mut String, prefix: &str, key: &[u8]) {
    out.push_str(prefix);
    if key.is_empty() {
        return;
    }
    out.push('.');
    let key = &key[..key.len().min(MAX_KEY)];
    // Most keys are printable ASCII and go in as they are.
    if key.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        out.extend(key.iter().map(|&b| char::from(b)));
        return;
    }
    for c in String::from_utf8_lossy(key).chars() {
        out.push(if c.is_control() { '?' } else { c });
    }
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
    if v.split(|&c| c == b';').nth(MAX_COOKIES).is_some() {
        sink.overflow(|i| i.cookies = true);
    }
    for part in v.split(|&c| c == b';').take(MAX_COOKIES) {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let (k, val) = match memchr::memchr(b'=', part) {
            Some(p) => (&part[..p], &part[p + 1..]),
            None => (&b""[..], part),
        };
        at_location(sink, "cookie", k.trim_ascii(), |sink, loc| {
            sink.value(loc, val, Ctx::Cookie);
            if let Some(unquoted) = unquote_cookie(val.trim_ascii()) {
                sink.value(loc, &unquoted, Ctx::Cookie);
            }
        });
    }
}

/// A quoted cookie value as Python's `http.cookies` reads it (Django,
/// Werkzeug, Flask): inside the quotes `\ooo` is the byte with that octal
/// code and `\c` is `c`. `None` when the value is not quoted or holds no
/// escape (the value as sent is then what the origin reads).
fn unquote_cookie(v: &[u8]) -> Option<Vec<u8>> {
    let inner = v.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    memchr::memchr(b'\\', inner)?;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let octal = inner.get(i + 1..i + 4).filter(|d| {
            matches!(d[0], b'0'..=b'3') && d[1..].iter().all(|c| matches!(c, b'0'..=b'7'))
        });
        match (inner[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            (b'\\', None) if i + 1 < inner.len() => {
                out.push(inner[i + 1]);
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn a_location_key_is_bounded_and_printable() {
        assert_eq!(location("query", b"page"), "query.page");
        assert_eq!(location("header", b""), "header");
        assert_eq!(location("query", b"a\x01b\x7f"), "query.a?b?");
        assert_eq!(location("query", "名前".as_bytes()), "query.名前");
        assert_eq!(location("query", b"a\xffb"), "query.a\u{fffd}b");
        let long = "k".repeat(100);
        assert_eq!(
            location("form", long.as_bytes()),
            format!("form.{}", &long[..64])
        );
    }
}
