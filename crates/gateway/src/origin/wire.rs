//! HTTP/1.1 on the origin connection, without I/O: the request head as
//! bytes, the response head parsed in place, and how the response body is
//! framed.

use bytes::BytesMut;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};

use super::OriginError;
use crate::http::headers::{MAX_LISTED, ends_in_chunked, is_hop_by_hop, list_tokens};

/// A response head larger than this is refused (502).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header fields read from one response head.
const MAX_HEADERS: usize = 128;

/// How the request body is framed toward the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no `content-length`.
    None,
    Length(u64),
    Chunked,
}

/// The request head as bytes: the request line, the header lines given,
/// `host` when none was, and the body framing, which only the writer sets.
pub struct HeadWriter {
    head: Vec<u8>,
    has_host: bool,
}

impl HeadWriter {
    pub fn new(method: &Method, target: &str, headers: usize) -> Self {
        let mut head = Vec::with_capacity(128 + headers * 48);
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        HeadWriter {
            head,
            has_host: false,
        }
    }

    /// One header line; `name` in lower case. A framing header is left
    /// out: the body's framing is the writer's.
    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        if name == b"content-length" || name == b"transfer-encoding" {
            return;
        }
        self.has_host |= name == b"host";
        line(&mut self.head, name, value);
    }

    pub fn finish(mut self, default_host: &str, framing: RequestFraming) -> Vec<u8> {
        if !self.has_host {
            line(&mut self.head, b"host", default_host.as_bytes());
        }
        match framing {
            RequestFraming::None => {}
            RequestFraming::Length(n) => {
                line(&mut self.head, b"content-length", n.to_string().as_bytes());
            }
            RequestFraming::Chunked => line(&mut self.head, b"transfer-encoding", b"chunked"),
        }
        self.head.extend_from_slice(b"\r\n");
        self.head
    }
}

fn line(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// A parsed response head. Its headers are the end-to-end ones: the
/// hop-by-hop headers, and those its `Connection` header lists, are read
/// for the framing and left out, except in a `101`, whose own `connection`
/// and `upgrade` headers go to the client with the switch.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    framing: FramingFields,
}

/// What the head's framing headers said, read as the head is parsed.
#[derive(Debug, Default)]
struct FramingFields {
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// With a `transfer-encoding`: whether its last coding is `chunked`.
    chunked: Option<bool>,
    length: Length,
}

/// The `content-length` of a head: every value (repeated headers, or a
/// list) must agree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Length {
    #[default]
    Absent,
    Is(u64),
    Invalid,
}

impl FramingFields {
    /// Reads a hop-by-hop header; the names its `Connection` lists go to
    /// `listed` (the first [`MAX_LISTED`]). A value that is not visible
    /// ASCII says nothing.
    fn read_hop(
        &mut self,
        name: &[u8],
        value: &[u8],
        listed: &mut smallvec::SmallVec<[HeaderName; 2]>,
    ) {
        if !visible(value) {
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                self.chunked = Some(false);
            }
            return;
        }
        if name.eq_ignore_ascii_case(b"connection") {
            for token in list_tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if listed.len() < MAX_LISTED
                    && let Ok(name) = HeaderName::from_bytes(token)
                {
                    listed.push(name);
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked = Some(ends_in_chunked(value));
        }
    }

    fn read_length(&mut self, value: &[u8]) {
        if !visible(value) {
            self.length = Length::Invalid;
            return;
        }
        for part in list_tokens(value) {
            let n = (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten();
            self.length = match (self.length, n) {
                (Length::Absent, Some(n)) => Length::Is(n),
                (Length::Is(l), Some(n)) if l == n => Length::Is(n),
                _ => Length::Invalid,
            };
        }
    }
}

/// Whether a header value is visible ASCII (what `HeaderValue::to_str`
/// reads as text): a value that is not says nothing about the framing.
fn visible(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Parses a response head at the start of `buf`, taking its bytes out of
/// it (header values share them); `None` while the head is incomplete.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, OriginError> {
    let mut parsed = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut response, buf, &mut parsed) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(OriginError::Malformed("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(OriginError::Malformed("response head")),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(OriginError::Malformed("status code"))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut framing = FramingFields::default();
    let mut listed = smallvec::SmallVec::new();
    // Offsets into the head, so that values can share its bytes once it
    // is taken out of the buffer.
    let base = buf.as_ptr() as usize;
    let mut fields: smallvec::SmallVec<[(HeaderName, usize, usize); 24]> = Default::default();
    for h in response.headers.iter() {
        let name = h.name.as_bytes();
        let hop = is_hop_by_hop(name) || name.eq_ignore_ascii_case(b"upgrade");
        if hop {
            framing.read_hop(name, h.value, &mut listed);
            if !switching {
                continue;
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            framing.read_length(h.value);
        }
        let name =
            HeaderName::from_bytes(name).map_err(|_| OriginError::Malformed("header name"))?;
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, start, end) in fields {
        if !switching && listed.contains(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| OriginError::Malformed("header value"))?;
        headers.append(name, value);
    }
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
    }))
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Until the origin closes the connection.
    UntilClose,
}

/// The framing of the response to `method` (RFC 9112 section 6.3) and
/// whether the connection can carry another request after it. A
/// `content-length` beside `transfer-encoding` is removed: the encoding
/// wins, and the connection is not reused.
pub fn response_framing(
    method: &Method,
    head: &mut ResponseHead,
) -> Result<(BodyFraming, bool), OriginError> {
    let fields = &head.framing;
    let reusable = match head.version {
        Version::HTTP_10 => fields.keep_alive,
        _ => !fields.close,
    };
    let status = head.status;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((BodyFraming::Empty, reusable));
    }
    if let Some(chunked) = fields.chunked {
        let had_length = head.headers.remove(header::CONTENT_LENGTH).is_some();
        return Ok(match chunked {
            true => (BodyFraming::Chunked, reusable && !had_length),
            false => (BodyFraming::UntilClose, false),
        });
    }
    match fields.length {
        Length::Invalid => Err(OriginError::Malformed("content-length")),
        Length::Is(0) => Ok((BodyFraming::Empty, reusable)),
        Length::Is(n) => Ok((BodyFraming::Length(n), reusable)),
        Length::Absent => Ok((BodyFraming::UntilClose, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::chunked::{ChunkedDecoder, Decoded};

    fn head(text: &str) -> ResponseHead {
        let mut buf = BytesMut::from(text);
        parse_head(&mut buf).expect("parses").expect("complete")
    }

    fn framing(method: Method, text: &str) -> Result<(BodyFraming, bool), OriginError> {
        response_framing(&method, &mut head(text))
    }

    #[test]
    fn the_request_head_has_its_own_framing_and_a_host() {
        let mut head = HeadWriter::new(&Method::POST, "/p?q=1", 2);
        head.header(b"x-a", b"1");
        head.header(b"content-length", b"99");
        assert_eq!(
            std::str::from_utf8(&head.finish("origin:8080", RequestFraming::Length(3))).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nx-a: 1\r\nhost: origin:8080\r\ncontent-length: 3\r\n\r\n"
        );
        let mut head = HeadWriter::new(&Method::PUT, "/", 2);
        head.header(b"host", b"shop.example");
        head.header(b"transfer-encoding", b"gzip");
        let text = String::from_utf8(head.finish("o", RequestFraming::Chunked)).unwrap();
        assert_eq!(
            text,
            "PUT / HTTP/1.1\r\nhost: shop.example\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn a_head_is_parsed_in_place_and_the_body_stays_in_the_buffer() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi");
        let head = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["x-a"], "b");
        assert_eq!(&buf[..], b"hi");
        let mut partial = BytesMut::from("HTTP/1.1 200 OK\r\nContent-");
        assert!(parse_head(&mut partial).unwrap().is_none());
        let mut huge = BytesMut::from(
            format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES)).as_str(),
        );
        assert!(parse_head(&mut huge).is_err());
        let mut folded = BytesMut::from("HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n");
        assert!(parse_head(&mut folded).is_err());
    }

    #[test]
    fn a_head_keeps_only_its_end_to_end_headers() {
        let text = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
                    X-Hop: 1\r\nUpgrade: h2c\r\nTrailer: x\r\nContent-Length: 2\r\nX-Kept: 2\r\n\r\n";
        let kept = head(text);
        let names: Vec<&str> = kept.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-length", "x-kept"]);
        let switch = head(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(switch.headers["upgrade"], "websocket");
        assert_eq!(switch.headers["connection"], "upgrade");
        // Only the first MAX_LISTED names a `Connection` lists are read.
        let names: Vec<String> = (0..1_000).map(|i| format!("x-{i}")).collect();
        let many = head(&format!(
            "HTTP/1.1 200 OK\r\nConnection: {}\r\nx-0: a\r\nx-999: b\r\n\r\n",
            names.join(", ")
        ));
        assert!(!many.headers.contains_key("x-0"));
        assert_eq!(many.headers["x-999"], "b");
    }

    #[test]
    fn response_bodies_are_framed_as_rfc_9112_says() {
        use BodyFraming::*;
        let get = || Method::GET;
        assert_eq!(
            framing(get(), "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n").unwrap(),
            (Length(5), true)
        );
        assert_eq!(
            framing(Method::HEAD, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n").unwrap(),
            (Empty, true)
        );
        assert_eq!(
            framing(
                get(),
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n"
            )
            .unwrap(),
            (Empty, true)
        );
        assert_eq!(
            framing(get(), "HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            (Empty, true)
        );
        assert_eq!(
            framing(
                get(),
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
            )
            .unwrap(),
            (Chunked, true)
        );
        assert_eq!(
            framing(
                get(),
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"
            )
            .unwrap(),
            (Chunked, false)
        );
        assert_eq!(
            framing(get(), "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n").unwrap(),
            (UntilClose, false)
        );
        assert_eq!(
            framing(get(), "HTTP/1.1 200 OK\r\n\r\n").unwrap(),
            (UntilClose, false)
        );
        assert_eq!(
            framing(
                get(),
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
            )
            .unwrap(),
            (Length(5), false)
        );
        assert_eq!(
            framing(get(), "HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n").unwrap(),
            (Length(5), false)
        );
        assert_eq!(
            framing(
                get(),
                "HTTP/1.0 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n"
            )
            .unwrap(),
            (Length(5), true)
        );
        assert_eq!(
            framing(
                get(),
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n"
            )
            .unwrap(),
            (Length(5), true)
        );
        for bad in ["5, 6", "-1", "+5", "0x5", "", "5 5"] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
            assert!(framing(get(), &text).is_err(), "{bad}");
        }
        let mut te_and_cl =
            head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n");
        response_framing(&get(), &mut te_and_cl).unwrap();
        assert!(!te_and_cl.headers.contains_key(header::CONTENT_LENGTH));
    }

    /// Valid responses with bytes flipped, cut and repeated: parsing and
    /// decoding never panic, and a decoded body is never longer than the
    /// bytes it came from.
    #[test]
    fn mangled_responses_never_panic() {
        use rand::{Rng, SeedableRng};
        let seeds: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nt: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
            b"HTTP/1.0 103 Early\r\nlink: </a>\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let mut bytes = seeds[rng.random_range(0..seeds.len())].to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] = rng.random(),
                    1 => bytes.truncate(at),
                    _ => {
                        let piece = bytes[at..].to_vec();
                        bytes.extend_from_slice(&piece);
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let total = bytes.len();
            let mut buf = BytesMut::from(&bytes[..]);
            let Ok(Some(mut head)) = parse_head(&mut buf) else {
                continue;
            };
            let Ok((BodyFraming::Chunked, _)) = response_framing(&Method::GET, &mut head) else {
                continue;
            };
            let mut decoder = ChunkedDecoder::default();
            let mut decoded = 0;
            while let Ok(Decoded::Data(data)) = decoder.decode(&mut buf) {
                decoded += data.len();
            }
            assert!(decoded <= total);
        }
    }
}
