//! Request heads: the bytes of a head into an `http` request head and the
//! facts that frame its body and its connection (RFC 9112). No I/O.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use smallvec::SmallVec;

use crate::http::headers::{ends_in_chunked, list_tokens};

/// The headers a head may have before a heap allocation (the default limit).
const INLINE_HEADERS: usize = 100;

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub parts: http::request::Parts,
    pub framing: BodyFraming,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before its body.
    pub expect_continue: bool,
    /// An upgrade (`Upgrade` with `Connection: upgrade`) or `CONNECT`: the
    /// connection ends after the answer unless it switches protocols.
    pub switch_asked: bool,
    /// Both `Content-Length` and `Transfer-Encoding`: a smuggling probe the
    /// pipeline refuses (the body is read as chunked, and the connection
    /// closes after the answer).
    pub framing_conflict: bool,
}

/// Why a head was refused before the pipeline saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the request head is too large")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The status of the answer.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) => 400,
        }
    }
}

/// Limits of a head, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_bytes: usize,
    pub max_headers: usize,
}

/// Parses the head at the start of `buf`, taking its bytes out of `buf`.
/// `Ok(None)`: the head is not complete yet. `headers` is a map to reuse
/// (cleared; its capacity is kept from the connection's previous request).
pub fn parse(
    buf: &mut BytesMut,
    limits: HeadLimits,
    headers: HeaderMap,
) -> Result<Option<Head>, HeadError> {
    // Blank lines before a request line are skipped (RFC 9112 2.2).
    let blank = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if blank > 0 {
        let _ = buf.split_to(blank);
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let mut fields = SmallVec::new();
    let Some(Located {
        len,
        method,
        version,
        target,
    }) = locate(buf, limits, &mut fields)?
    else {
        return Ok(None);
    };
    let bytes = buf.split_to(len).freeze();
    let uri = request_target(&bytes, target)?;
    let mut facts = Facts::new(version == Version::HTTP_11, method == Method::CONNECT);
    let mut headers = headers;
    headers.clear();
    headers.reserve(fields.len());
    for (name, range) in fields {
        let value = HeaderValue::from_maybe_shared(bytes.slice(range))
            .map_err(|_| HeadError::Malformed("header value"))?;
        facts.header(&name, &value)?;
        headers.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    facts.finish(parts)
}

/// Whether a head in `buf` may be complete, or too large: the bytes past
/// the first `checked` (known not to end a head) hold an empty line, or
/// the buffer reached the limit.
pub fn may_end(buf: &[u8], checked: usize, limits: HeadLimits) -> bool {
    if buf.len() >= limits.max_bytes {
        return true;
    }
    let new = &buf[checked.saturating_sub(3).min(buf.len())..];
    memchr::memchr_iter(b'\n', new)
        .any(|at| matches!(&new[at + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

/// A complete head in a buffer, parsed in place.
struct Located {
    /// The head's length in bytes.
    len: usize,
    method: Method,
    version: Version,
    /// Where the request target is.
    target: Range<usize>,
}

/// The field names of a head, and where their values are.
type Fields = SmallVec<[(HeaderName, Range<usize>); 32]>;

/// Parses the head at the start of `buf` without taking it out, its
/// fields into `fields` (filled in place: they are too large to move).
/// `Ok(None)`: not complete yet.
fn locate(
    buf: &[u8],
    limits: HeadLimits,
    fields: &mut Fields,
) -> Result<Option<Located>, HeadError> {
    let mut inline = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; INLINE_HEADERS];
    let mut heap = Vec::new();
    let slots = match limits.max_headers.max(1) {
        n if n <= INLINE_HEADERS => &mut inline[..n],
        n => {
            heap.resize_with(n, MaybeUninit::uninit);
            &mut heap[..]
        }
    };
    let mut req = httparse::Request::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len > limits.max_bytes => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_bytes => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("request line or header")),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("method"))?;
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let target = req.path.unwrap_or_default().as_bytes();
    let target = offset(target)..offset(target) + target.len();
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("header name"))?;
        fields.push((name, offset(h.value)..offset(h.value) + h.value.len()));
    }
    Ok(Some(Located {
        len,
        method,
        version,
        target,
    }))
}

/// The request target as a URI. Bytes the web sends raw but a URI may not
/// hold (`?q=你好`, `"`, `{`, `|`...) are percent-encoded, as browsers do for
/// the path: the pipeline inspects and the origin decodes the same value.
fn request_target(head: &Bytes, range: Range<usize>) -> Result<Uri, HeadError> {
    let raw = &head[range.clone()];
    let target = if raw.iter().any(|&b| needs_encoding(b)) {
        let mut encoded = Vec::with_capacity(raw.len() + 16);
        for &b in raw {
            if needs_encoding(b) {
                encoded.extend_from_slice(&[
                    b'%',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            } else {
                encoded.push(b);
            }
        }
        Bytes::from(encoded)
    } else {
        head.slice(range)
    };
    Uri::from_maybe_shared(target).map_err(|_| HeadError::Malformed("request target"))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Bytes of a request target the URI grammar refuses but the web sends.
fn needs_encoding(b: u8) -> bool {
    b >= 0x7f
        || matches!(
            b,
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

/// What the framing and connection headers of a head say.
struct Facts {
    http11: bool,
    connect: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    close: bool,
    keep_alive_token: bool,
    upgrade: bool,
    connection_upgrade: bool,
    expect_continue: bool,
}

impl Facts {
    fn new(http11: bool, connect: bool) -> Self {
        Facts {
            http11,
            connect,
            content_length: None,
            transfer_encoding: false,
            chunked_last: false,
            close: false,
            keep_alive_token: false,
            upgrade: false,
            connection_upgrade: false,
            expect_continue: false,
        }
    }

    fn header(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), HeadError> {
        let value = value.as_bytes();
        if name == header::CONTENT_LENGTH {
            let length = content_length(value).ok_or(HeadError::Malformed("content-length"))?;
            if self.content_length.is_some_and(|seen| seen != length) {
                return Err(HeadError::Malformed("differing content-length"));
            }
            self.content_length = Some(length);
        } else if name == header::TRANSFER_ENCODING {
            // RFC 9112 6.1: an HTTP/1.0 message with it is faulty.
            if !self.http11 {
                return Err(HeadError::Malformed("transfer-encoding in HTTP/1.0"));
            }
            self.transfer_encoding = true;
            // Only the last coding of the last line frames the body.
            self.chunked_last = ends_in_chunked(value);
        } else if name == header::CONNECTION {
            for token in list_tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive_token = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    self.connection_upgrade = true;
                }
            }
        } else if name == header::UPGRADE {
            self.upgrade = true;
        } else if name == header::EXPECT {
            self.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    fn finish(self, parts: http::request::Parts) -> Result<Option<Head>, HeadError> {
        if self.transfer_encoding && !self.chunked_last {
            return Err(HeadError::Malformed(
                "transfer-encoding not ending in chunked",
            ));
        }
        let framing_conflict = self.transfer_encoding && self.content_length.is_some();
        let framing = match (self.transfer_encoding, self.content_length) {
            (true, _) => BodyFraming::Chunked,
            (false, Some(0) | None) => BodyFraming::None,
            (false, Some(n)) => BodyFraming::Length(n),
        };
        let keep_alive = !self.close && (self.http11 || self.keep_alive_token) && !framing_conflict;
        Ok(Some(Head {
            parts,
            framing,
            keep_alive,
            expect_continue: self.expect_continue && self.http11 && framing != BodyFraming::None,
            switch_asked: self.connect || (self.http11 && self.upgrade && self.connection_upgrade),
            framing_conflict,
        }))
    }
}

/// A `Content-Length` value: digits only, within `u64`.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 8192,
        max_headers: 16,
    };

    fn head(raw: &[u8]) -> Result<Option<Head>, HeadError> {
        parse(&mut BytesMut::from(raw), LIMITS, HeaderMap::new())
    }

    fn complete(raw: &[u8]) -> Head {
        match head(raw) {
            Ok(Some(head)) => head,
            other => panic!("{}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn a_head_and_what_follows_it() {
        let mut buf = BytesMut::from(
            &b"\r\nGET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET /next"[..],
        );
        let head = parse(&mut buf, LIMITS, HeaderMap::new()).unwrap().unwrap();
        assert_eq!(head.parts.method, Method::GET);
        assert_eq!(head.parts.uri, "/a?b=1");
        assert_eq!(head.parts.headers["host"], "x");
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive && !head.switch_asked && !head.framing_conflict);
        assert_eq!(
            &buf[..],
            b"GET /next",
            "the next request stays in the buffer"
        );
        assert!(parse(&mut buf, LIMITS, HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn only_an_empty_line_or_the_limit_may_end_a_head() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in 0..head.len() {
            assert!(!may_end(&head[..split], 0, LIMITS), "{split}");
        }
        assert!(may_end(head, 0, LIMITS));
        assert!(
            may_end(head, head.len() - 1, LIMITS),
            "an end across the last check"
        );
        assert!(may_end(b"GET / HTTP/1.0\n\n", 0, LIMITS));
        assert!(may_end(&[b'a'; 8192], 8000, LIMITS));
    }

    #[test]
    fn partial_heads_wait_and_oversize_heads_are_refused() {
        assert!(head(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n", "a".repeat(9000));
        assert_eq!(head(long.as_bytes()).unwrap_err(), HeadError::TooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..17 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(head(many.as_bytes()).unwrap_err().status(), 431);
    }

    #[test]
    fn malformed_heads_are_bad_requests() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        ] {
            assert_eq!(
                head(raw).map(|h| h.is_some()).map_err(HeadError::status),
                Err(400),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn raw_bytes_the_web_sends_are_percent_encoded() {
        let head = complete("GET /s?q=你好&r={a|b}\"<> HTTP/1.1\r\n\r\n".as_bytes());
        assert_eq!(
            head.parts.uri,
            "/s?q=%E4%BD%A0%E5%A5%BD&r=%7Ba%7Cb%7D%22%3C%3E"
        );
    }

    #[test]
    fn bodies_are_framed_by_length_or_chunks() {
        let sized = complete(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(sized.framing, BodyFraming::Length(3));
        let empty = complete(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(empty.framing, BodyFraming::None);
        let chunked = complete(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!(chunked.framing, BodyFraming::Chunked);
    }

    #[test]
    fn smuggling_framings_are_refused_or_flagged() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(head(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n",
        ] {
            let head = complete(raw);
            assert!(head.framing_conflict && !head.keep_alive);
            assert_eq!(head.framing, BodyFraming::Chunked);
        }
    }

    #[test]
    fn connection_persistence_by_version_and_header() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n")
                .keep_alive
        );
    }

    #[test]
    fn switches_and_expectations() {
        assert!(
            complete(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .switch_asked
        );
        assert!(!complete(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").switch_asked);
        assert!(complete(b"CONNECT x:443 HTTP/1.1\r\n\r\n").switch_asked);
        assert!(
            complete(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n")
                .expect_continue
        );
        assert!(!complete(b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    }
}
