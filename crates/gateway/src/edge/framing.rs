//! What the HTTP/1 parser hides, and what it refuses that the web sends.
//!
//! The scanner follows the framing of every HTTP/1 request on a connection
//! (heads, then bodies by `Content-Length` or chunks), so that it reads
//! heads only: a body that contains the words `Transfer-Encoding` never
//! changes how the connection is framed.
//!
//! - hyper resolves `Content-Length` + `Transfer-Encoding` itself (it drops
//!   the length), so the service never sees it. Such a request is a
//!   smuggling probe, and the gateway must refuse it, not repair it: the
//!   scanner notes the head and the request that reads it is refused.
//! - hyper refuses a request target with a raw `"`, `<`, `>`, `\`, `^`,
//!   `` ` ``, `{`, `|`, `}` or raw UTF-8 bytes, which browsers and apps do
//!   send (`?q=你好`). The scanner percent-encodes those bytes in the target,
//!   so the parser accepts it, detection inspects it, and the origin decodes
//!   the same value.
//! - An HTTP/2 connection, an upgraded connection and `CONNECT` are passed
//!   through untouched.
//!
//! The connection wrapper also rewrites the parser's own bare error answers
//! into the gateway's answer with a request id.

/// The first bytes kept of each head line: enough for the framing headers
/// and a `Content-Length` value.
const LINE_PREFIX: usize = 64;

/// Where the scanner is in the connection's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line (blank lines are skipped).
    Start,
    Method,
    Target,
    /// The rest of the request line.
    Version,
    Headers,
    /// A body of this many more bytes.
    Fixed(u64),
    ChunkSize {
        size: u64,
        digits: bool,
    },
    /// A chunk extension, up to the end of the line.
    ChunkExtension {
        size: u64,
    },
    ChunkData(u64),
    /// The CR LF after a chunk's data.
    ChunkEnd,
    Trailers,
    /// HTTP/2, an upgraded connection, CONNECT, or framing the scanner
    /// cannot follow (the parser refuses it): not scanned any more.
    Passthrough,
}

/// The framing facts of the head being read.
#[derive(Debug, Default)]
struct Head {
    /// At most 16 bytes: on the stack, no allocation per head.
    method: smallvec::SmallVec<[u8; 16]>,
    lengths: u32,
    content_length: Option<u64>,
    transfer_encoding: bool,
    upgrade: bool,
    connection_upgrade: bool,
}

/// The state after a part of a body: the same with `left` bytes to go, or
/// what follows the body (a new head, or the end of the chunk).
fn body_left(state: State, left: u64) -> State {
    match (state, left) {
        (State::Fixed(_), 0) => State::Start,
        (State::Fixed(_), left) => State::Fixed(left),
        (State::ChunkData(_), 0) => State::ChunkEnd,
        (_, left) => State::ChunkData(left),
    }
}

/// Scans raw request bytes of one connection.
#[derive(Debug)]
pub struct FramingScanner {
    state: State,
    head: Head,
    /// The start of the current head line.
    line: Vec<u8>,
    /// A head framed by both `Content-Length` and `Transfer-Encoding` was
    /// seen and not yet taken.
    conflict: bool,
    /// A head asked to switch protocols (an upgrade, `CONNECT`) and the
    /// scanner stopped reading the connection; not yet taken.
    switch_asked: bool,
}

impl Default for FramingScanner {
    fn default() -> Self {
        FramingScanner {
            state: State::Start,
            head: Head::default(),
            line: Vec::with_capacity(LINE_PREFIX),
            conflict: false,
            switch_asked: false,
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// How many bytes at the start of `bytes` the state `state` only passes
/// over (or keeps in its line): up to the next byte it acts on.
fn plain_run(state: State, bytes: &[u8]) -> usize {
    let end = match state {
        State::Target => bytes
            .iter()
            .position(|&c| c == b' ' || c == b'\n' || needs_encoding(c)),
        _ => memchr::memchr(b'\n', bytes),
    };
    end.unwrap_or(bytes.len())
}

/// Bytes of a request target the HTTP parser refuses but the web sends.
fn needs_encoding(b: u8) -> bool {
    b >= 0x7f
        || matches!(
            b,
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

impl FramingScanner {
    /// Feeds bytes as they are read from the client. Returns the bytes the
    /// parser should read instead, when the scanner had to rewrite some of
    /// them (a request target with bytes the parser refuses).
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut rewritten: Option<Vec<u8>> = None;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Passthrough => {
                    if let Some(out) = rewritten.as_mut() {
                        out.extend_from_slice(&bytes[i..]);
                    }
                    return rewritten;
                }
                State::Fixed(left) | State::ChunkData(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    if let Some(out) = rewritten.as_mut() {
                        out.extend_from_slice(&bytes[i..i + take]);
                    }
                    i += take;
                    self.state = body_left(self.state, left - take as u64);
                    continue;
                }
                State::Target if needs_encoding(b) => {
                    let out = rewritten.get_or_insert_with(|| bytes[..i].to_vec());
                    out.extend_from_slice(&[
                        b'%',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ]);
                    i += 1;
                    continue;
                }
                state @ (State::Target | State::Version | State::Headers | State::Trailers) => {
                    // The bytes up to the next one this state acts on, at once.
                    let run = plain_run(state, &bytes[i..]);
                    if run == 0 {
                        self.step(b);
                    } else {
                        let plain = &bytes[i..i + run];
                        if matches!(state, State::Headers | State::Trailers) {
                            let room = LINE_PREFIX.saturating_sub(self.line.len());
                            self.line.extend_from_slice(&plain[..run.min(room)]);
                        }
                        if let Some(out) = rewritten.as_mut() {
                            out.extend_from_slice(plain);
                        }
                        i += run;
                        continue;
                    }
                }
                _ => self.step(b),
            }
            if let Some(out) = rewritten.as_mut() {
                out.push(b);
            }
            i += 1;
        }
        rewritten
    }

    /// Whether a head framed ambiguously was seen since the last call.
    pub fn take_conflict(&mut self) -> bool {
        std::mem::take(&mut self.conflict)
    }

    /// Whether a head asked to switch protocols since the last call: the
    /// scanner no longer reads this connection, so unless the switch
    /// happens, the connection must close after the answer.
    pub fn take_switch_asked(&mut self) -> bool {
        std::mem::take(&mut self.switch_asked)
    }

    /// One byte of a head or of chunk framing.
    fn step(&mut self, b: u8) {
        self.state = match self.state {
            State::Start if b == b'\r' || b == b'\n' => State::Start,
            State::Start => {
                self.head = Head::default();
                self.head.method.push(b);
                State::Method
            }
            State::Method if b == b' ' => {
                if self.head.method.as_slice() == b"PRI" {
                    State::Passthrough
                } else {
                    State::Target
                }
            }
            State::Method => {
                if self.head.method.len() < 16 {
                    self.head.method.push(b);
                }
                State::Method
            }
            State::Target if b == b' ' => State::Version,
            State::Target if b == b'\n' => self.line_end(),
            State::Target => State::Target,
            State::Version if b == b'\n' => {
                self.line.clear();
                State::Headers
            }
            State::Version => State::Version,
            State::Headers | State::Trailers if b == b'\n' => self.line_end(),
            state @ (State::Headers | State::Trailers) => {
                if self.line.len() < LINE_PREFIX {
                    self.line.push(b);
                }
                state
            }
            State::ChunkSize { size, digits } => match (b as char).to_digit(16) {
                Some(d) => match size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(d)))
                {
                    Some(size) => State::ChunkSize { size, digits: true },
                    None => State::Passthrough,
                },
                None if !digits => State::Passthrough,
                None if b == b'\n' => self.chunk_start(size),
                None => State::ChunkExtension { size },
            },
            State::ChunkExtension { size } if b == b'\n' => self.chunk_start(size),
            state @ State::ChunkExtension { .. } => state,
            State::ChunkEnd if b == b'\n' => State::ChunkSize {
                size: 0,
                digits: false,
            },
            State::ChunkEnd if b == b'\r' => State::ChunkEnd,
            State::ChunkEnd => State::Passthrough,
            // Counted in `feed`.
            state @ (State::Fixed(_) | State::ChunkData(_) | State::Passthrough) => state,
        };
    }

    fn chunk_start(&mut self, size: u64) -> State {
        self.line.clear();
        if size == 0 {
            State::Trailers
        } else {
            State::ChunkData(size)
        }
    }

    /// The end of a head or trailer line.
    fn line_end(&mut self) -> State {
        // The line's buffer is lent out and given back: no copy per line.
        let mut buffer = std::mem::take(&mut self.line);
        let line = buffer.strip_suffix(b"\r").unwrap_or(&buffer);
        let state = if line.is_empty() {
            match self.state {
                State::Trailers => State::Start,
                _ => self.body_state(),
            }
        } else {
            if self.state == State::Headers {
                self.header_line(line);
            }
            self.state
        };
        buffer.clear();
        self.line = buffer;
        state
    }

    fn header_line(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        let head = &mut self.head;
        if name.eq_ignore_ascii_case(b"content-length") {
            head.lengths += 1;
            head.content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            head.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            head.connection_upgrade |= value.windows(7).any(|w| w.eq_ignore_ascii_case(b"upgrade"));
        }
    }

    /// How the body after a complete head is framed (RFC 9112 6.3).
    fn body_state(&mut self) -> State {
        let head = &self.head;
        if head.transfer_encoding && head.lengths > 0 {
            self.conflict = true;
        }
        if head.method.as_slice() == b"CONNECT" || (head.upgrade && head.connection_upgrade) {
            self.switch_asked = true;
            return State::Passthrough;
        }
        if head.transfer_encoding {
            return State::ChunkSize {
                size: 0,
                digits: false,
            };
        }
        match head.content_length {
            Some(0) => State::Start,
            Some(n) => State::Fixed(n),
            None if head.lengths > 0 => State::Passthrough,
            None => State::Start,
        }
    }
}

/// The answers hyper writes by itself when it cannot parse a request head.
pub fn parser_error_status(head: &[u8]) -> Option<u16> {
    const PREFIXES: [(&[u8], u16); 3] = [
        (b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n", 400),
        (b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n", 431),
        (b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n", 414),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| head.starts_with(prefix))
        .map(|(_, status)| *status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks`; the conflict flag and what the parser reads.
    fn scan(chunks: &[&[u8]]) -> (bool, Vec<u8>) {
        let mut s = FramingScanner::default();
        let mut seen = Vec::new();
        let mut conflict = false;
        for c in chunks {
            match s.feed(c) {
                Some(rewritten) => seen.extend_from_slice(&rewritten),
                None => seen.extend_from_slice(c),
            }
            conflict |= s.take_conflict();
        }
        (conflict, seen)
    }

    #[test]
    fn both_headers_in_one_head() {
        assert!(
            scan(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"])
                .0
        );
        assert!(
            scan(&[b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n"])
                .0
        );
    }

    #[test]
    fn split_across_reads() {
        assert!(
            scan(&[
                b"POST / HTTP/1.1\r\nConte",
                b"nt-Len",
                b"gth: 3\r\nTransfer-",
                b"Encoding: chunked\r\n\r\n"
            ])
            .0
        );
    }

    #[test]
    fn separate_requests_are_not_a_conflict() {
        let pipelined: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(!scan(&[pipelined]).0);
        assert!(!scan(&[b"GET / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]).0);
    }

    #[test]
    fn body_bytes_never_frame_the_connection() {
        let body = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut request = format!(
            "POST /a HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!scan(&[&request]).0);
        // The same words in chunks of a chunked body.
        let mut chunked = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for data in [
            "Content-Length: 1\r\n\r\n",
            "Transfer-Encoding: chunked\r\n\r\n",
        ] {
            chunked.extend_from_slice(format!("{:x};ext=1\r\n{data}\r\n", data.len()).as_bytes());
        }
        chunked.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut s = FramingScanner::default();
        assert!(s.feed(&chunked).is_none());
        assert!(
            s.take_conflict(),
            "the head after the chunked body is read as a head"
        );
    }

    #[test]
    fn long_lines_do_not_grow_the_line_buffer() {
        let mut s = FramingScanner::default();
        s.feed(b"GET / HTTP/1.1\r\nX-Long: ");
        s.feed(&vec![b'a'; 100_000]);
        assert!(s.line.len() <= LINE_PREFIX);
        s.feed(b"\r\nContent-Length: 1\r\n\r\n");
        assert!(!s.take_conflict());
    }

    #[test]
    fn targets_the_parser_refuses_are_percent_encoded() {
        let (_, seen) =
            scan(&["GET /s?q=你好&x=\"<a>\"|{}^` HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes()]);
        assert_eq!(
            String::from_utf8(seen).unwrap(),
            "GET /s?q=%E4%BD%A0%E5%A5%BD&x=%22%3Ca%3E%22%7C%7B%7D%5E%60 HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        // Header values and bodies are left alone.
        let request = "POST / HTTP/1.1\r\nX-Name: 你\r\nContent-Length: 3\r\n\r\n<a>".as_bytes();
        assert_eq!(scan(&[request]).1, request);
        // A plain request is not copied at all.
        let mut s = FramingScanner::default();
        assert!(s.feed(b"GET /plain?a=1 HTTP/1.1\r\n\r\n").is_none());
    }

    #[test]
    fn http2_and_upgrades_pass_through() {
        let mut s = FramingScanner::default();
        s.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(s.feed("GET /你 HTTP/1.1\r\n".as_bytes()).is_none());
        let mut s = FramingScanner::default();
        s.feed(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        assert!(s.take_switch_asked());
        assert!(
            s.feed("\u{81}\u{fe}binary frame \"<>\"".as_bytes())
                .is_none()
        );
    }

    #[test]
    fn recognises_parser_errors_only() {
        assert_eq!(
            parser_error_status(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            parser_error_status(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"),
            None
        );
    }
}
