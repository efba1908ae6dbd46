//! Response heads as bytes, and how the body after them is framed
//! (RFC 9112 6). No I/O.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};
use http_body::SizeHint;

use crate::http::headers::list_tokens;

/// How the response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// Nothing after the head (`HEAD`, `204`, `304`, `101`).
    NoBody,
    Length(u64),
    Chunked,
    /// An HTTP/1.0 client with a body of unknown length: the end of the
    /// connection ends the body.
    UntilClose,
}

/// What the request said that shapes its answer.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    pub head: bool,
    pub http10: bool,
    pub keep_alive: bool,
}

impl Asked {
    pub fn of(method: &Method, version: Version, keep_alive: bool) -> Self {
        Asked {
            head: method == Method::HEAD,
            http10: version == Version::HTTP_10,
            keep_alive,
        }
    }
}

/// The head written, and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    pub framing: ResponseFraming,
    /// The connection may carry another request after this answer.
    pub keep_alive: bool,
}

/// Writes the head of a response with `headers` into `out`. The gateway
/// sets the framing (`content-length` or chunks) and the connection
/// headers itself; `date` is added when absent.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &SizeHint,
    asked: Asked,
) -> Encoded {
    out.extend_from_slice(if asked.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The switch's own `connection` and `upgrade` headers stay as they are.
        for (name, value) in headers {
            field(out, name.as_str().as_bytes(), value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        return Encoded {
            framing: ResponseFraming::NoBody,
            keep_alive: false,
        };
    }
    let mut keep_alive = asked.keep_alive;
    let mut has_date = false;
    let mut length = None;
    for (name, value) in headers {
        if name == header::CONNECTION {
            keep_alive &= !list_tokens(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close"));
            continue;
        }
        if name == header::CONTENT_LENGTH {
            length = length.or_else(|| {
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        has_date |= name == header::DATE;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length = length.or(body.exact());
    let framing = match length {
        _ if bodiless => ResponseFraming::NoBody,
        Some(n) => {
            field(
                out,
                b"content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
            if asked.head {
                ResponseFraming::NoBody
            } else {
                ResponseFraming::Length(n)
            }
        }
        None if asked.head => ResponseFraming::NoBody,
        None if asked.http10 => {
            keep_alive = false;
            ResponseFraming::UntilClose
        }
        None => {
            field(out, b"transfer-encoding", b"chunked");
            ResponseFraming::Chunked
        }
    };
    if !has_date {
        DATE.with(|date| field(out, b"date", date.borrow_mut().now()));
    }
    if !keep_alive {
        field(out, b"connection", b"close");
    } else if asked.http10 {
        field(out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    Encoded {
        framing,
        keep_alive,
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The size line of a chunk of `len` bytes.
pub fn chunk_size_line(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

thread_local! {
    static DATE: RefCell<CachedDate> = RefCell::new(CachedDate::default());
}

/// The `date` value, formatted once a second per worker.
#[derive(Default)]
struct CachedDate {
    second: u64,
    text: String,
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        self.text.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const GET11: Asked = Asked {
        head: false,
        http10: false,
        keep_alive: true,
    };

    fn encode(
        status: u16,
        headers: &[(&str, &str)],
        body: SizeHint,
        asked: Asked,
    ) -> (String, Encoded) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let mut out = Vec::new();
        let status = StatusCode::from_u16(status).unwrap();
        let encoded = encode_head(&mut out, status, &map, &body, asked);
        (String::from_utf8(out).unwrap(), encoded)
    }

    #[test]
    fn a_sized_body_gets_its_length_and_a_date() {
        let (head, encoded) = encode(
            200,
            &[("content-type", "text/plain")],
            SizeHint::with_exact(5),
            GET11,
        );
        assert!(
            head.starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\ndate: "
            ),
            "{head}"
        );
        assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
        assert_eq!(
            encoded,
            Encoded {
                framing: ResponseFraming::Length(5),
                keep_alive: true
            }
        );
    }

    #[test]
    fn framing_headers_are_the_gateways_own() {
        let (head, encoded) = encode(
            200,
            &[
                ("transfer-encoding", "gzip"),
                ("date", "x"),
                ("connection", "keep-alive, close"),
            ],
            SizeHint::default(),
            GET11,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ndate: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            encoded,
            Encoded {
                framing: ResponseFraming::Chunked,
                keep_alive: false
            }
        );
    }

    #[test]
    fn heads_and_bodiless_statuses_have_no_body() {
        let head_request = Asked {
            head: true,
            ..GET11
        };
        let (head, encoded) = encode(
            200,
            &[("content-length", "42"), ("date", "x")],
            SizeHint::with_exact(0),
            head_request,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 42\r\n\r\n"
        );
        assert_eq!(encoded.framing, ResponseFraming::NoBody);
        for status in [204, 304] {
            let (head, encoded) = encode(
                status,
                &[("content-length", "3"), ("date", "x")],
                SizeHint::with_exact(3),
                GET11,
            );
            assert!(!head.contains("content-length"), "{head}");
            assert_eq!(encoded.framing, ResponseFraming::NoBody);
        }
    }

    #[test]
    fn http10_clients_get_their_version_and_close_delimited_bodies() {
        let asked = Asked {
            head: false,
            http10: true,
            keep_alive: true,
        };
        let (head, encoded) = encode(200, &[("date", "x")], SizeHint::default(), asked);
        assert_eq!(
            head,
            "HTTP/1.0 200 OK\r\ndate: x\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            encoded,
            Encoded {
                framing: ResponseFraming::UntilClose,
                keep_alive: false
            }
        );
        let (head, _) = encode(200, &[("date", "x")], SizeHint::with_exact(2), asked);
        assert!(head.ends_with("connection: keep-alive\r\n\r\n"), "{head}");
    }

    #[test]
    fn a_switch_keeps_its_headers() {
        let (head, encoded) = encode(
            101,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            SizeHint::default(),
            GET11,
        );
        assert_eq!(
            head,
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        );
        assert_eq!(encoded.framing, ResponseFraming::NoBody);
    }

    #[test]
    fn chunk_sizes_are_hex() {
        for (len, line) in [(0, "0\r\n"), (10, "a\r\n"), (4096, "1000\r\n")] {
            let mut out = Vec::new();
            chunk_size_line(&mut out, len);
            assert_eq!(out, line.as_bytes());
        }
    }
}
