//! What the HTTP/1 parser hides: a request head that carries both
//! `Content-Length` and `Transfer-Encoding`.
//!
//! hyper resolves that conflict itself (it drops `Content-Length` and frames
//! by chunks), so the service never sees it. Such a request is a smuggling
//! probe, and the gateway must refuse it, not repair it. The scanner watches
//! the raw bytes of a connection for a head holding both header lines, and the
//! connection wrapper rewrites the parser's own bare error answers into the
//! gateway's answer with a request id.

/// Header names looked for at the start of a line (lower case, with the colon).
const CONTENT_LENGTH: &[u8] = b"content-length:";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding:";
/// Longest prefix kept across reads.
const CARRY: usize = 18;

/// Scans raw request bytes line by line. A blank line ends a head.
#[derive(Debug, Default)]
pub struct FramingScanner {
    /// Start of the current line, when it began in an earlier read.
    carry: Vec<u8>,
    /// The current line is longer than any name we look for.
    long_line: bool,
    saw_length: bool,
    saw_encoding: bool,
    conflict: bool,
}

impl FramingScanner {
    /// Feeds bytes as they are read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match memchr::memchr(b'\n', bytes) {
                Some(end) => {
                    self.line_part(&bytes[..end]);
                    self.end_line();
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.line_part(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// Whether some head carried both framing headers.
    pub fn conflict(&self) -> bool {
        self.conflict
    }

    fn line_part(&mut self, part: &[u8]) {
        if self.long_line {
            return;
        }
        let room = CARRY - self.carry.len();
        self.carry.extend_from_slice(&part[..part.len().min(room)]);
        if part.len() > room {
            self.long_line = true;
        }
    }

    fn end_line(&mut self) {
        let line = self.carry.strip_suffix(b"\r").unwrap_or(&self.carry);
        if line.is_empty() && !self.long_line {
            self.saw_length = false;
            self.saw_encoding = false;
        } else if starts_with_ignore_case(line, CONTENT_LENGTH) {
            self.saw_length = true;
        } else if starts_with_ignore_case(line, TRANSFER_ENCODING) {
            self.saw_encoding = true;
        }
        self.conflict |= self.saw_length && self.saw_encoding;
        self.carry.clear();
        self.long_line = false;
    }
}

fn starts_with_ignore_case(line: &[u8], name: &[u8]) -> bool {
    line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name)
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

    fn scan(chunks: &[&[u8]]) -> bool {
        let mut s = FramingScanner::default();
        for c in chunks {
            s.feed(c);
        }
        s.conflict()
    }

    #[test]
    fn both_headers_in_one_head() {
        assert!(scan(&[
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        assert!(scan(&[
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n"
        ]));
    }

    #[test]
    fn split_across_reads() {
        assert!(scan(&[
            b"POST / HTTP/1.1\r\nConte",
            b"nt-Len",
            b"gth: 3\r\nTransfer-",
            b"Encoding: chunked\r\n\r\n"
        ]));
    }

    #[test]
    fn separate_requests_are_not_a_conflict() {
        let pipelined: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(!scan(&[pipelined]));
        assert!(!scan(&[
            b"GET / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
    }

    #[test]
    fn long_lines_do_not_grow_the_carry() {
        let mut s = FramingScanner::default();
        s.feed(&vec![b'a'; 100_000]);
        assert!(s.carry.len() <= CARRY);
        s.feed(b"\r\nContent-Length: 1\r\n");
        assert!(!s.conflict());
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
