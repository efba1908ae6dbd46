//! `multipart/form-data`: field values, field names, file names, part
//! content types, and script code in uploaded files.

use super::location;
use crate::analyze::{Ctx, Sink};
use crate::{Family, charset, decode, score, webshell};

/// Most parts read.
const MAX_PARTS: usize = 64;

/// Returns false when no boundary or no part could be found.
pub(crate) fn parse(data: &[u8], content_type: &str, sink: &mut Sink) -> bool {
    let Some(boundary) = boundary(content_type).filter(|b| b.len() <= 200) else {
        return false;
    };
    // Parsers disagree on which of two boundaries counts.
    if count_param(content_type, "boundary") > 1 {
        sink.overflow(|i| i.ambiguous_multipart = true);
    }
    let delim = format!("--{boundary}");
    let mut parts = 0;
    let mut pos = match memchr::memmem::find(data, delim.as_bytes()) {
        Some(p) => {
            outside_parts(&data[..p], "preamble", sink);
            p + delim.len()
        }
        None => return false,
    };
    while parts < MAX_PARTS {
        let rest = &data[pos..];
        if let Some(epilogue) = rest.strip_prefix(b"--") {
            outside_parts(epilogue, "epilogue", sink);
            break;
        }
        let next = memchr::memmem::find(rest, delim.as_bytes());
        let part = match next {
            Some(n) => &rest[..n],
            None => rest,
        };
        one_part(part, sink);
        parts += 1;
        if parts == MAX_PARTS && next.is_some_and(|n| !rest[n + delim.len()..].starts_with(b"--")) {
            sink.overflow(|i| i.parts = true);
        }
        match next {
            Some(n) => pos += n + delim.len(),
            None => break,
        }
    }
    parts > 0
}

/// Text before the first part or after the last: parsers are meant to
/// skip it, but a lenient one may read it as a part, so it is inspected.
fn outside_parts(text: &[u8], name: &str, sink: &mut Sink) {
    if text.iter().any(|b| !b.is_ascii_whitespace()) {
        sink.value(
            &location("multipart", name.as_bytes()),
            text,
            Ctx::Multipart,
        );
    }
}

/// The boundary a multipart `Content-Type` names, quotes removed; `None`
/// when it names none.
pub fn boundary(content_type: &str) -> Option<&str> {
    let at = content_type.to_ascii_lowercase().find("boundary=")? + "boundary=".len();
    let value = content_type[at..]
        .split(';')
        .next()?
        .trim()
        .trim_matches('"');
    (!value.is_empty()).then_some(value)
}

/// The header block and the content of one part, from the bytes between
/// two delimiters; the content keeps the line break before the next one.
pub fn split_part(part: &[u8]) -> (&[u8], &[u8]) {
    let part = part
        .strip_prefix(b"\r\n")
        .or_else(|| part.strip_prefix(b"\n"))
        .unwrap_or(part);
    match memchr::memmem::find(part, b"\r\n\r\n") {
        Some(p) => (&part[..p], &part[p + 4..]),
        None => match memchr::memmem::find(part, b"\n\n") {
            Some(p) => (&part[..p], &part[p + 2..]),
            None => (part, &b""[..]),
        },
    }
}

fn one_part(part: &[u8], sink: &mut Sink) {
    let (head, body) = split_part(part);
    let body = body
        .strip_suffix(b"\r\n")
        .or_else(|| body.strip_suffix(b"\n"))
        .unwrap_or(body);
    let head_s = String::from_utf8_lossy(head);
    let mut name = String::new();
    let mut filename: Option<String> = None;
    let mut ctype = String::new();
    let mut transfer = String::new();
    for line in head_s.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-disposition:") {
            name = param(line, "name").unwrap_or_default();
            filename = param(line, "filename");
            // RFC 5987 `filename*=utf-8''...` and repeated parameters are
            // read differently by different servers: inspect the extended
            // name too and say the header is ambiguous.
            let extended = param(line, "filename*").map(|f| match f.find("''") {
                Some(p) => f[p + 2..].to_string(),
                None => f,
            });
            let repeated = count_param(line, "name") > 1 || count_param(line, "filename") > 1;
            if extended.is_some() || repeated {
                sink.overflow(|i| i.ambiguous_multipart = true);
            }
            if let Some(ext) = extended {
                filename = Some(match filename {
                    Some(f) => format!("{f} {ext}"),
                    None => ext,
                });
            }
        } else if let Some(v) = lower.strip_prefix("content-type:") {
            ctype = v.trim().to_string();
        } else if let Some(v) = lower.strip_prefix("content-transfer-encoding:") {
            transfer = v.trim().to_string();
        }
    }
    let loc = location("multipart", name.as_bytes());
    let qp;
    let body = match transfer.as_str() {
        "quoted-printable" => {
            qp = decode::quoted_printable(body);
            &qp[..]
        }
        _ => body,
    };
    readable_part(&loc, &name, &ctype, &transfer, body, sink);
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'[' | b']'))
    {
        sink.value(&loc, name.as_bytes(), Ctx::Multipart);
    }
    if let Some(f) = &filename {
        sink.value(&format!("{loc}.filename"), f.as_bytes(), Ctx::Filename);
        if let Some(rule) = webshell::content_marker(body) {
            sink.direct(
                &loc,
                Family::Webshell,
                score::STRONG,
                rule,
                &String::from_utf8_lossy(&body[..body.len().min(64)]),
            );
        }
        let texty = ctype.is_empty()
            || ctype.starts_with("text/")
            || ctype.contains("json")
            || ctype.contains("xml")
            || served_as_markup(f, body);
        if !texty {
            return;
        }
    }
    if !ctype.is_empty()
        && !ctype.starts_with("text/plain")
        && !ctype.starts_with("application/octet-stream")
    {
        sink.value(
            &format!("{loc}.content-type"),
            ctype.as_bytes(),
            Ctx::Header,
        );
    }
    sink.value(&loc, body, Ctx::Multipart);
}

/// A file whose declared type says binary but that a web server or a
/// browser would serve or read as markup or script: by its extension
/// (servers pick the type from it) or by content that opens with `<`
/// (browsers sniff it; no image or archive format starts so).
fn served_as_markup(filename: &str, body: &[u8]) -> bool {
    const MARKUP: [&str; 10] = [
        "html", "htm", "xhtml", "shtml", "svg", "xml", "xsl", "xslt", "js", "mjs",
    ];
    let extension = filename.rsplit_once('.').map_or("", |(_, e)| e.trim_end());
    let opens_as_markup = body
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(body)
        .trim_ascii_start()
        .starts_with(b"<");
    MARKUP.iter().any(|m| m.eq_ignore_ascii_case(extension)) || opens_as_markup
}

/// A part the checks cannot read as its server will: an unknown transfer
/// encoding, or text (or a `_charset_` field naming the form's charset) in
/// a charset that moves ASCII.
fn readable_part(loc: &str, name: &str, ctype: &str, transfer: &str, body: &[u8], sink: &mut Sink) {
    if !transfer.is_empty() && !charset::known_transfer_encoding(transfer.as_bytes()) {
        sink.direct(
            loc,
            Family::Protocol,
            score::STRONG,
            "protocol.unknown-transfer-encoding",
            transfer,
        );
    }
    if let Some(label) = charset::param(ctype.as_bytes()).filter(|l| !charset::readable(l)) {
        super::body::unreadable_charset(loc, label, sink);
    }
    if name.eq_ignore_ascii_case("_charset_") && !charset::readable(body) {
        super::body::unreadable_charset(loc, body, sink);
    }
}

/// How many times `key=` occurs as a parameter of the line.
fn count_param(line: &str, key: &str) -> usize {
    let lower = line.to_ascii_lowercase();
    lower
        .match_indices(key)
        .filter(|&(at, _)| {
            (at == 0 || matches!(lower.as_bytes()[at - 1], b' ' | b';' | b'\t'))
                && lower[at + key.len()..].trim_start().starts_with('=')
        })
        .count()
}

/// `name="value"` (or unquoted) in a Content-Disposition line.
fn param(line: &str, key: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(key) {
        let at = from + p;
        from = at + key.len();
        let before_ok = at == 0 || matches!(lower.as_bytes()[at - 1], b' ' | b';' | b'\t');
        let rest = &line[at + key.len()..];
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let rest = &rest[1..];
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            return Some(r[..end].to_string());
        }
        let end = rest.find(';').unwrap_or(rest.len());
        return Some(rest[..end].trim().to_string());
    }
    None
}
