//! Body dispatch by content type, with bounded decompression.

use super::{form, json, multipart, xml};
use crate::analyze::{Ctx, Sink};
use crate::{Family, charset, score};
use std::io::Read;

/// Ratio cap for decompression on top of `Profile::max_body`.
const MAX_INFLATE_RATIO: usize = 100;

pub(crate) fn inspect(raw: &[u8], content_type: &[u8], content_encoding: &[u8], sink: &mut Sink) {
    let max = sink.profile().max_body;
    let inflated = inflate(raw, content_encoding, max);
    let data = match &inflated {
        Some(d) => &d[..],
        None => &raw[..raw.len().min(max)],
    };
    let cut = match &inflated {
        Some(d) => d.len() >= max,
        None => raw.len() > max,
    };
    if cut {
        sink.overflow(|i| i.body = true);
    }
    if let Some(label) = charset::param(content_type).filter(|l| !charset::readable(l)) {
        unreadable_charset("body", label, sink);
    }
    let ct = String::from_utf8_lossy(&content_type[..content_type.len().min(256)]).into_owned();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/x-www-form-urlencoded" {
        form::pairs(data, "form", Ctx::Form, sink);
    } else if mime == "multipart/form-data" || mime == "multipart/mixed" {
        if !multipart::parse(data, &ct, sink) {
            sink.value("body", data, Ctx::Body);
        }
    } else if mime.ends_with("json") || mime.ends_with("+json") {
        if !json::walk(data, sink) {
            sink.value("body", data, Ctx::Body);
        }
    } else if mime.ends_with("xml") {
        xml::walk(data, sink);
    } else {
        sniff(data, sink);
    }
}

/// Text declared in a charset the checks cannot read (EBCDIC, UTF-16,
/// UTF-7, ...): what the origin decodes is not what was inspected.
pub(crate) fn unreadable_charset(location: &str, label: &[u8], sink: &mut Sink) {
    sink.direct(
        location,
        Family::Protocol,
        score::STRONG,
        "protocol.unreadable-charset",
        &String::from_utf8_lossy(&label[..label.len().min(64)]),
    );
}

/// Bodies without a usable content type.
fn sniff(data: &[u8], sink: &mut Sink) {
    let t = data.trim_ascii();
    match t.first() {
        Some(b'{' | b'[') if json::walk(data, sink) => {}
        Some(b'<') => xml::walk(data, sink),
        _ if looks_like_form(t) => {
            form::pairs(t, "form", Ctx::Form, sink);
            sink.value("body", data, Ctx::Body);
        }
        _ => sink.value("body", data, Ctx::Body),
    }
}

fn looks_like_form(t: &[u8]) -> bool {
    match memchr::memchr(b'=', t) {
        Some(p) if p > 0 => t[..p].iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'[' | b']' | b'%')
        }),
        _ => false,
    }
}

/// Decompress gzip / deflate bodies up to a bound; `None` when the body is
/// not compressed or does not decompress (then the raw bytes are used).
fn inflate(raw: &[u8], encoding: &[u8], max: usize) -> Option<Vec<u8>> {
    let enc = String::from_utf8_lossy(encoding)
        .trim()
        .to_ascii_lowercase();
    let limit = max
        .min(raw.len().saturating_mul(MAX_INFLATE_RATIO))
        .max(1024) as u64;
    let mut out = Vec::new();
    let res = match enc.as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(raw)
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => {
            let r = flate2::read::ZlibDecoder::new(raw)
                .take(limit)
                .read_to_end(&mut out);
            if r.is_err() && out.is_empty() {
                flate2::read::DeflateDecoder::new(raw)
                    .take(limit)
                    .read_to_end(&mut out)
            } else {
                r
            }
        }
        _ => return None,
    };
    match res {
        Ok(_) => Some(out),
        Err(_) if !out.is_empty() => Some(out),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_bounded() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&zeros).unwrap();
        let bomb = enc.finish().unwrap();
        let out = inflate(&bomb, b"gzip", 256 * 1024).unwrap();
        assert!(out.len() <= 256 * 1024);
    }

    #[test]
    fn not_really_gzip_is_raw() {
        assert!(inflate(b"cmd=cat /etc/passwd", b"gzip", 1 << 20).is_none());
        assert!(inflate(b"x", b"identity", 1 << 20).is_none());
    }
}
