//! Protocol sanity: requests an origin must never see.
//!
//! Pure checks over the request head and the inspected part of the body:
//! smuggling markers (`Content-Length` beside `Transfer-Encoding`, obfuscated
//! `Transfer-Encoding`), invalid percent-encoding, malformed or overlong
//! UTF-8 once decoded, NUL bytes, invalid JSON, unknown methods, oversize.

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use portcullis_config::{LimitsConfig, ProtocolConfig};
use portcullis_detect::{charset, multipart};

/// Why a request is refused, with the status it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub name: &'static str,
    pub evidence: String,
    pub status: u16,
}

fn violation(name: &'static str, evidence: impl Into<String>, status: u16) -> Option<Violation> {
    Some(Violation {
        name,
        evidence: evidence.into(),
        status,
    })
}

/// Checks the request line and headers, before any body byte is read.
pub fn check_head(
    method: &str,
    target: &str,
    headers: &HeaderMap,
    protocol: &ProtocolConfig,
    limits: &LimitsConfig,
) -> Option<Violation> {
    if !protocol.allowed_methods.iter().any(|m| m == method) {
        return violation("unknown_method", truncate(method), 400);
    }
    if target.len() > limits.max_uri_bytes {
        return violation("uri_too_long", format!("{} bytes", target.len()), 414);
    }
    if let Some(v) = check_framing(headers, limits) {
        return Some(v);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    check_component("path", path, protocol).or_else(|| check_component("query", query, protocol))
}

fn check_framing(headers: &HeaderMap, limits: &LimitsConfig) -> Option<Violation> {
    let lengths: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().collect();
    let encodings: Vec<_> = headers.get_all(TRANSFER_ENCODING).iter().collect();
    if !encodings.is_empty() && !lengths.is_empty() {
        return violation(
            "cl_te_conflict",
            "content-length with transfer-encoding",
            400,
        );
    }
    if encodings.len() > 1 {
        return violation("te_obfuscated", "repeated transfer-encoding", 400);
    }
    if let Some(te) = encodings.first() {
        // Exactly `chunked`: anything else (`xchunked`, `chunked, identity`,
        // odd spacing, mixed case tricks with junk) is a smuggling attempt.
        let value = te.as_bytes();
        if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") || value != value.trim_ascii() {
            return violation("te_obfuscated", printable(value), 400);
        }
    }
    if lengths.len() > 1 {
        return violation("cl_repeated", "several content-length headers", 400);
    }
    if let Some(cl) = lengths.first() {
        match std::str::from_utf8(cl.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            None => return violation("cl_invalid", printable(cl.as_bytes()), 400),
            Some(n) if n > limits.max_body_bytes => {
                return violation("body_too_large", format!("{n} bytes declared"), 413);
            }
            Some(_) => {}
        }
    }
    None
}

/// Checks a path or query: percent-encoding, decoded UTF-8 and NUL bytes.
fn check_component(name: &'static str, raw: &str, protocol: &ProtocolConfig) -> Option<Violation> {
    check_encoded(raw, protocol).map(|(kind, evidence)| Violation {
        name: kind,
        evidence: format!("{name}: {evidence}"),
        status: status_of(kind),
    })
}

/// Validates percent-encoded text (a path, a query or a form body).
fn check_encoded(raw: &str, protocol: &ProtocolConfig) -> Option<(&'static str, String)> {
    if !raw.as_bytes().contains(&b'%') {
        if protocol.reject_nul && raw.as_bytes().contains(&0) {
            return Some(("nul_byte", String::new()));
        }
        return None;
    }
    let decoded = match percent_decode(raw.as_bytes()) {
        Ok(decoded) => decoded,
        Err(at) => {
            if protocol.reject_bad_percent {
                return Some(("bad_percent_encoding", snippet(raw, at)));
            }
            return None;
        }
    };
    if protocol.reject_nul && decoded.contains(&0) {
        return Some(("nul_byte", "%00".into()));
    }
    if let Err(e) = std::str::from_utf8(&decoded) {
        let evidence =
            printable(&decoded[e.valid_up_to()..][..4.min(decoded.len() - e.valid_up_to())]);
        let gbk_starts = gbk_char_starts(&decoded);
        // No text is written this way: it is a way past filters, an attack.
        if overlong_ascii(&decoded, gbk_starts.as_deref()) || surrogates_only(&decoded) {
            return Some((UTF8_EVASION, evidence));
        }
        if protocol.reject_bad_utf8 && gbk_starts.is_none() {
            return Some(("bad_utf8", evidence));
        }
    }
    None
}

/// Overlong or surrogate UTF-8: a way past filters.
pub const UTF8_EVASION: &str = "utf8_evasion";

/// The status of a violation of `name` in a target or a form: bytes no
/// text carries there (a NUL, malformed UTF-8, an overlong form) are the
/// tools of null-byte, wide-byte and filter-evasion attacks, refused with
/// the same status as every other attack (`[block.blocked]`), so that a
/// client learns nothing from the difference.
fn status_of(name: &str) -> u16 {
    match name {
        UTF8_EVASION | "bad_utf8" | "nul_byte" => 403,
        _ => 400,
    }
}

/// The offsets where GBK / GB18030 characters start, when `bytes` are
/// well-formed in that encoding: the legacy encoding of Chinese pages and
/// forms that still reaches servers percent-encoded. Malformed byte pairs
/// such as `%bf%27` (a lead byte before a quote: the wide-byte injection
/// trick) are neither GBK nor UTF-8.
fn gbk_char_starts(bytes: &[u8]) -> Option<Vec<usize>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        starts.push(i);
        let b = bytes[i];
        let at = |k: usize| bytes.get(i + k).copied();
        let four_byte = matches!(
            (at(1), at(2), at(3)),
            (Some(0x30..=0x39), Some(0x81..=0xfe), Some(0x30..=0x39))
        );
        i += match b {
            0x00..=0x80 => 1,
            0x81..=0xfe if four_byte => 4,
            0x81..=0xfe if matches!(at(1), Some(0x40..=0x7e | 0x80..=0xfe)) => 2,
            _ => return None,
        };
    }
    Some(starts)
}

/// Whether `bytes` hold an overlong UTF-8 form of a character that steers
/// a path, markup or a query (`%c0%af` for `/`, `%c0%ae` for `.`): a
/// traversal and filter-evasion trick, refused even where the bytes would
/// also read as GBK. In text that is valid GBK only a sequence starting a
/// GBK character counts (a GBK trail byte `C0` is not a lead), and only
/// beside what a payload is made of (ASCII letters, digits, steering
/// characters, another overlong form) or alone in its value: `C0 BC`
/// between Chinese characters, or before the `&` of the next pair, is the
/// word 览.
/// `gbk_starts` are those characters' offsets when the bytes are GBK.
fn overlong_ascii(bytes: &[u8], gbk_starts: Option<&[usize]>) -> bool {
    let steering = |c: u32| {
        c < 0x20
            || matches!(
                c as u8,
                b'/' | b'\\' | b'.' | b'<' | b'>' | b'\'' | b'"' | b'%' | b';'
            )
    };
    let payload_byte = |c: u8| {
        c.is_ascii_alphanumeric()
            || (c.is_ascii() && steering(u32::from(c)))
            || matches!(c, 0xc0 | 0xc1 | 0xe0)
    };
    let at_start = |i: usize| {
        let Some(starts) = gbk_starts else {
            return true;
        };
        let Ok(k) = starts.binary_search(&i) else {
            return false;
        };
        // The characters beside it in its value (`=` and `&` end a value).
        let prev = k
            .checked_sub(1)
            .map(|k| bytes[starts[k]])
            .filter(|c| !matches!(c, b'=' | b'&'));
        let next = starts
            .get(k + 1)
            .map(|&j| bytes[j])
            .filter(|c| !matches!(c, b'=' | b'&'));
        (prev.is_none() && next.is_none())
            || prev.is_some_and(payload_byte)
            || next.is_some_and(payload_byte)
    };
    bytes.windows(2).enumerate().any(|(i, w)| {
        let decoded = match w {
            [lead @ (0xc0 | 0xc1), cont @ 0x80..=0xbf] => {
                Some((u32::from(*lead) & 0x1f) << 6 | (u32::from(*cont) & 0x3f))
            }
            [0xe0, mid @ (0x80 | 0x81)] => bytes
                .get(i + 2)
                .filter(|last| (0x80..=0xbf).contains(*last))
                .map(|&last| (u32::from(*mid) & 0x3f) << 6 | (u32::from(last) & 0x3f)),
            _ => None,
        };
        decoded.is_some_and(|c| steering(c) && at_start(i))
    })
}

/// Whether the only flaws of otherwise valid UTF-8 are encoded UTF-16
/// surrogates (`%ed%a0%80`): CESU-style text meant to slip past filters.
fn surrogates_only(mut bytes: &[u8]) -> bool {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return true,
            Err(e) => {
                let rest = &bytes[e.valid_up_to()..];
                match rest {
                    [0xed, 0xa0..=0xbf, 0x80..=0xbf, ..] => bytes = &rest[3..],
                    _ => return false,
                }
            }
        }
    }
}

/// Decodes `%XX` escapes; `Err(offset)` at the first escape that is not two hex digits.
pub fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or(i)?;
            let hi = hex_value(hex[0]).ok_or(i)?;
            let lo = hex_value(hex[1]).ok_or(i)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Checks the inspected part of a body, according to its content type.
pub fn check_body(
    headers: &HeaderMap,
    body: &[u8],
    complete: bool,
    protocol: &ProtocolConfig,
) -> Option<Violation> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(label) = charset::param(content_type.as_bytes()).filter(|l| !charset::readable(l)) {
        return violation(UNREADABLE_CHARSET, printable(label), 400);
    }
    let form = "application/x-www-form-urlencoded";
    if content_type
        .get(..form.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(form))
    {
        return check_form(body, protocol);
    }
    if is_json(content_type) {
        return check_json(body, complete, protocol);
    }
    if content_type
        .get(..10)
        .is_some_and(|start| start.eq_ignore_ascii_case("multipart/"))
    {
        return check_multipart(content_type, body);
    }
    None
}

/// Most multipart parts whose headers are checked.
const MAX_PARTS: usize = 64;

/// A multipart part the detection cannot read as its server will: text
/// in a charset that moves ASCII (its `Content-Type`, or a `_charset_`
/// field naming the form's), or a transfer encoding it does not decode.
fn check_multipart(content_type: &str, body: &[u8]) -> Option<Violation> {
    let delim = format!("--{}", multipart::boundary(content_type)?);
    for start in memchr::memmem::find_iter(body, delim.as_bytes()).take(MAX_PARTS) {
        let rest = &body[start + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let end = memchr::memmem::find(rest, delim.as_bytes()).unwrap_or(rest.len());
        let (head, content) = multipart::split_part(&rest[..end]);
        if let Some(v) = check_part_head(head, content) {
            return Some(v);
        }
    }
    None
}

fn check_part_head(head: &[u8], content: &[u8]) -> Option<Violation> {
    for line in head.split(|&c| c == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (line[..colon].trim_ascii(), &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-type")
            && let Some(label) = charset::param(value).filter(|l| !charset::readable(l))
        {
            return violation(UNREADABLE_CHARSET, printable(label), 400);
        }
        if name.eq_ignore_ascii_case(b"content-transfer-encoding")
            && !charset::known_transfer_encoding(value)
        {
            return violation(
                UNKNOWN_TRANSFER_ENCODING,
                printable(value.trim_ascii()),
                400,
            );
        }
        let names_charset_field = name.eq_ignore_ascii_case(b"content-disposition")
            && value.to_ascii_lowercase().split(|&c| c == b';').any(|p| {
                p.trim_ascii() == b"name=\"_charset_\"" || p.trim_ascii() == b"name=_charset_"
            });
        if names_charset_field && !charset::readable(content.trim_ascii()) {
            return violation(UNREADABLE_CHARSET, printable(content.trim_ascii()), 400);
        }
    }
    None
}

/// A multipart part in a transfer encoding the detection does not decode.
pub const UNKNOWN_TRANSFER_ENCODING: &str = "unknown_transfer_encoding";

/// Case aside (media types are case-insensitive), without a lowercased copy.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let suffix = essence
        .len()
        .checked_sub(5)
        .and_then(|at| essence.get(at..));
    essence.eq_ignore_ascii_case("application/json")
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json"))
}

fn check_form(body: &[u8], protocol: &ProtocolConfig) -> Option<Violation> {
    let Ok(text) = std::str::from_utf8(body) else {
        return protocol
            .reject_bad_utf8
            .then_some(())
            .and_then(|()| violation("bad_utf8", "form: raw bytes", 400));
    };
    if let Some(label) = unreadable_form_charset(body) {
        return violation(UNREADABLE_CHARSET, printable(&label), 400);
    }
    check_encoded(text, protocol).map(|(name, evidence)| Violation {
        name,
        evidence: format!("form: {evidence}"),
        status: status_of(name),
    })
}

/// A charset the detection cannot read text in (EBCDIC, UTF-16, UTF-7,
/// ...), declared by `Content-Type` or a form's `_charset_` field.
pub const UNREADABLE_CHARSET: &str = "unreadable_charset";

/// A value of a form's `_charset_` field (HTML5, ASP.NET: the charset the
/// rest of the form is decoded in) that names a charset the detection
/// cannot read; every such field counts, whichever one a server takes.
fn unreadable_form_charset(body: &[u8]) -> Option<Vec<u8>> {
    portcullis_detect::decode::form_values(body, "_charset_").find(|l| !charset::readable(l))
}

fn check_json(body: &[u8], complete: bool, protocol: &ProtocolConfig) -> Option<Violation> {
    if protocol.reject_bad_utf8
        && let Err(e) = std::str::from_utf8(body)
    {
        // A truncated body may end inside a character.
        let cut_at_end = !complete && e.error_len().is_none();
        if !cut_at_end {
            return violation("bad_utf8", "json: raw bytes", 400);
        }
    }
    if protocol.reject_bad_json
        && complete
        && !body.trim_ascii().is_empty()
        && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body)
    {
        return violation("bad_json", format!("json: {e}"), 400);
    }
    None
}

fn truncate(s: &str) -> String {
    printable(s.as_bytes())
}

/// A short, log-safe rendering of untrusted bytes.
fn printable(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(32) {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn snippet(raw: &str, at: usize) -> String {
    let end = (at + 3).min(raw.len());
    printable(&raw.as_bytes()[at..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(method: &str, target: &str, headers: &[(&str, &str)]) -> Option<Violation> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        check_head(
            method,
            target,
            &map,
            &ProtocolConfig::default(),
            &LimitsConfig::default(),
        )
    }

    fn name(v: Option<Violation>) -> &'static str {
        v.map_or("ok", |v| v.name)
    }

    #[test]
    fn legacy_gbk_passes_and_wide_byte_tricks_do_not() {
        // 你好 and 中文 in GBK.
        assert_eq!(
            name(head("GET", "/s?q=%C4%E3%BA%C3&w=%D6%D0%CE%C4", &[])),
            "ok"
        );
        // 刀美览, 无愧于, 胡厚昆: GBK characters that are also an overlong
        // `<`, `"` or `%`, between Chinese characters or before the next pair.
        for q in [
            "/search.php?keyword=%B5%B6%C3%C0%C0%BC&charset=gbk",
            "/s?ie=gbk&wd=%CE%DE%C0%A2%D3%DA",
            "/s?ie=gbk&wd=%BA%FA%BA%F1%C0%A5",
        ] {
            assert_eq!(name(head("GET", q, &[])), "ok", "{q}");
        }
        // The same characters beside a path or markup still steer.
        for q in [
            "/s?q=..%c0%af..%c0%afetc",
            "/s?q=%c0%bcscript%c0%be",
            "/s?q=%c0%af",
        ] {
            assert_eq!(name(head("GET", q, &[])), UTF8_EVASION, "{q}");
        }
        assert_eq!(name(head("GET", "/s?q=%bf%27", &[])), "bad_utf8");
        assert_eq!(
            name(head("GET", "/s?q=%81", &[])),
            "bad_utf8",
            "a lone lead byte"
        );
    }

    #[test]
    fn the_review_scanner_request_is_refused() {
        let target =
            "/open/v3/live/record?action=eval&live_id=undefined%bf%27%bf'%27%22'\"\\%5C%0d%0a";
        assert_eq!(name(head("GET", target, &[])), "bad_utf8");
    }

    #[test]
    fn clean_requests_pass() {
        assert_eq!(name(head("GET", "/a/b?q=caf%C3%A9&x=1+2", &[])), "ok");
        assert_eq!(
            name(head("POST", "/", &[("transfer-encoding", "chunked")])),
            "ok"
        );
        assert_eq!(name(head("POST", "/", &[("content-length", "12")])), "ok");
    }

    #[test]
    fn smuggling_markers() {
        let both = [("content-length", "5"), ("transfer-encoding", "chunked")];
        assert_eq!(name(head("POST", "/", &both)), "cl_te_conflict");
        for te in ["xchunked", "chunked, identity", " chunked", "identity"] {
            assert_eq!(
                name(head("POST", "/", &[("transfer-encoding", te)])),
                "te_obfuscated",
                "{te}"
            );
        }
        let two = [
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ];
        assert_eq!(name(head("POST", "/", &two)), "te_obfuscated");
        let cls = [("content-length", "5"), ("content-length", "6")];
        assert_eq!(name(head("POST", "/", &cls)), "cl_repeated");
        assert_eq!(
            name(head("POST", "/", &[("content-length", "99999999999")])),
            "body_too_large"
        );
    }

    #[test]
    fn encoding_errors() {
        // A `%` without two hex digits is a literal by default, as nginx reads it.
        assert_eq!(name(head("GET", "/a%zz?q=%sa", &[])), "ok");
        let strict = ProtocolConfig {
            reject_bad_percent: true,
            ..ProtocolConfig::default()
        };
        let limits = LimitsConfig::default();
        let map = HeaderMap::new();
        assert_eq!(
            name(check_head("GET", "/a%zz", &map, &strict, &limits)),
            "bad_percent_encoding"
        );
        assert_eq!(
            name(check_head("GET", "/a?x=%", &map, &strict, &limits)),
            "bad_percent_encoding"
        );
        assert_eq!(name(head("GET", "/a?x=%00", &[])), "nul_byte");
        assert_eq!(
            name(head("GET", "/%c0%af", &[])),
            UTF8_EVASION,
            "overlong /"
        );
        assert_eq!(
            name(head("GET", "/%ed%a0%80", &[])),
            UTF8_EVASION,
            "surrogate"
        );
        assert_eq!(
            head("GET", "/%c0%ae%c0%ae/", &[]).map(|v| v.status),
            Some(403)
        );
        assert_eq!(name(head("BREW", "/", &[])), "unknown_method");
        let long = format!("/{}", "a".repeat(40_000));
        assert_eq!(name(head("GET", &long, &[])), "uri_too_long");
    }

    #[test]
    fn charsets_that_move_ascii_are_refused() {
        let p = ProtocolConfig::default();
        // `<script>` in EBCDIC code page 037, which reads as GBK bytes.
        let body = b"q=%4C%A2%83%99%89%97%A3%6E";
        let mut h = HeaderMap::new();
        for cs in [
            "ibm037", "IBM500", "cp1026", "ibm273", "cp875", "utf-16", "utf-7",
        ] {
            for mime in [
                "application/x-www-form-urlencoded",
                "application/json",
                "multipart/form-data; boundary=b",
                "text/xml",
            ] {
                let ct = format!("{mime}; charset={cs}");
                h.insert(CONTENT_TYPE, HeaderValue::from_str(&ct).unwrap());
                let v = check_body(&h, body, true, &p);
                assert_eq!(
                    v.as_ref().map(|v| (v.name, v.status)),
                    Some((UNREADABLE_CHARSET, 400)),
                    "{ct}"
                );
            }
        }
        for cs in [
            "utf-8",
            "\"UTF-8\"",
            "iso-8859-1",
            "windows-1252",
            "gbk",
            "big5",
            "shift_jis",
            "euc-jp",
            "koi8-r",
        ] {
            let ct = format!("application/x-www-form-urlencoded; charset={cs}");
            h.insert(CONTENT_TYPE, HeaderValue::from_str(&ct).unwrap());
            assert_eq!(name(check_body(&h, b"q=hello", true, &p)), "ok", "{ct}");
        }
    }

    #[test]
    fn multipart_parts_the_detection_cannot_read_are_refused() {
        let p = ProtocolConfig::default();
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=\"BB\""),
        );
        let part = |headers: &str, body: &str| {
            format!(
                "--BB\r\nContent-Disposition: form-data; name=\"q\"\r\n{headers}\r\n{body}\r\n--BB--\r\n"
            )
        };
        let refused =
            |body: String| check_body(&h, body.as_bytes(), true, &p).map(|v| (v.name, v.status));
        for cs in ["ibm037", "cp500", "utf-16le", "x-unknown"] {
            let body = part(&format!("Content-Type: text/plain; charset={cs}\r\n"), "x");
            assert_eq!(refused(body), Some((UNREADABLE_CHARSET, 400)), "{cs}");
        }
        for cte in ["x-uuencode", "rot13"] {
            let body = part(&format!("Content-Transfer-Encoding: {cte}\r\n"), "x");
            assert_eq!(
                refused(body),
                Some((UNKNOWN_TRANSFER_ENCODING, 400)),
                "{cte}"
            );
        }
        let field = "--BB\r\nContent-Disposition: form-data; name=\"_charset_\"\r\n\r\nibm037\r\n--BB--\r\n";
        assert_eq!(refused(field.to_string()), Some((UNREADABLE_CHARSET, 400)));
        for ok in [
            part("Content-Type: text/plain; charset=utf-8\r\n", "hello"),
            part(
                "Content-Transfer-Encoding: quoted-printable\r\n",
                "caf=C3=A9",
            ),
            part("Content-Transfer-Encoding: base64\r\n", "aGVsbG8="),
            part(
                "",
                "Content-Type: text/plain; charset=ibm037 (text of the field, not a header)",
            ),
            "--BB\r\nContent-Disposition: form-data; name=\"_charset_\"\r\n\r\nutf-8\r\n--BB--\r\n"
                .to_string(),
        ] {
            assert_eq!(refused(ok.clone()), None, "{ok}");
        }
    }

    fn strict_percent() -> ProtocolConfig {
        ProtocolConfig {
            reject_bad_percent: true,
            ..ProtocolConfig::default()
        }
    }

    #[test]
    fn bodies() {
        let p = ProtocolConfig::default();
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(name(check_body(&h, br#"{"a":[1,2]}"#, true, &p)), "ok");
        assert_eq!(
            name(check_body(&h, br#"{"a":"#, true, &p)),
            "ok",
            "not JSON: inspected as text"
        );
        let strict = ProtocolConfig {
            reject_bad_json: true,
            ..ProtocolConfig::default()
        };
        assert_eq!(name(check_body(&h, br#"{"a":"#, true, &strict)), "bad_json");
        assert_eq!(
            name(check_body(&h, br#"{"a":"#, false, &p)),
            "ok",
            "truncated"
        );
        assert_eq!(
            name(check_body(&h, b"{\"a\":\"\xff\"}", true, &p)),
            "bad_utf8"
        );
        assert_eq!(
            name(check_body(&h, br#"{"a":"\u0000"}"#, true, &p)),
            "ok",
            "an escaped NUL inside a JSON string is data"
        );
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(name(check_body(&h, b"a=1&b=%E4%BD%A0", true, &p)), "ok");
        assert_eq!(name(check_body(&h, b"a=%bf", true, &p)), "bad_utf8");
        assert_eq!(name(check_body(&h, b"a=%g1", true, &p)), "ok");
        assert_eq!(
            name(check_body(&h, b"_charset_=utf-8&q=caf%C3%A9", true, &p)),
            "ok"
        );
        assert_eq!(
            name(check_body(&h, b"_charset_=ibm037&q=%4C%A2%83", true, &p)),
            UNREADABLE_CHARSET
        );
        assert_eq!(
            name(check_body(&h, b"q=1&%5Fcharset%5F=cp1026", true, &p)),
            UNREADABLE_CHARSET
        );
        // Every `_charset_` field counts, whichever one a server reads.
        for form in [
            &b"_charset_=utf-8&_charset_=utf-7"[..],
            b"_charset_&+_CHARSET_+=utf%2D16",
        ] {
            assert_eq!(name(check_body(&h, form, true, &p)), UNREADABLE_CHARSET);
        }
        assert_eq!(
            name(check_body(&h, b"a=%g1", true, &strict_percent())),
            "bad_percent_encoding"
        );
    }
}
