//! `Transfer-Encoding: chunked` decoding (RFC 9112 7.1), for request
//! bodies from clients and response bodies from origins alike. No I/O.

use bytes::{Buf, Bytes, BytesMut};

/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer bytes read (and dropped) after the last chunk.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Chunked framing that does not parse: what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(pub &'static str);

/// What the chunked decoder took out of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The buffer holds no complete piece: read more.
    NeedMore,
    /// The last chunk and the trailers were read.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Decodes `transfer-encoding: chunked` strictly (CRLF line ends, hex
/// sizes, bounded lines and trailers): a reused connection must never be
/// read out of step with the origin. Trailers are dropped.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            trailer_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = match size {
                        0 => ChunkState::Trailers,
                        n => ChunkState::Data(n),
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = match left {
                        0 => ChunkState::DataEnd,
                        left => ChunkState::Data(left),
                    };
                    return Ok(Decoded::Data(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError("chunk end"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf, MAX_TRAILER_BYTES)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.trailer_bytes += line.len() + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(ChunkError("trailers too large"));
                    }
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// Takes a CRLF-ended line (without its end) off the front of `buf`.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ChunkError> {
    match memchr::memchr(b'\n', buf) {
        Some(end) if end > 0 && buf[end - 1] == b'\r' && end <= max => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end - 1);
            Ok(Some(line))
        }
        Some(_) => Err(ChunkError("chunk line")),
        None if buf.len() > max => Err(ChunkError("chunk line too long")),
        None => Ok(None),
    }
}

/// The hex size of a chunk-size line, before any extension.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let rest = &line[digits_end..];
    let extension_ok = rest.is_empty()
        || rest
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t'))
            .is_some_and(|&b| b == b';');
    if digits_end == 0 || digits_end > 16 || !extension_ok {
        return Err(ChunkError("chunk size"));
    }
    let text = std::str::from_utf8(&line[..digits_end]).map_err(|_| ChunkError("chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| ChunkError("chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => out.extend_from_slice(&data),
                Decoded::Done => {
                    assert!(buf.is_empty(), "nothing after the body: {buf:?}");
                    return Ok(out);
                }
                Decoded::NeedMore if fed < input.len() => {
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Decoded::NeedMore => return Err(ChunkError("truncated")),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_reads_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA \t;x\r\n0123456789\r\n0\r\ntrailer: x\r\n\r\n";
        for step in [1, 2, 3, 7, body.len()] {
            assert_eq!(
                decode_all(body, step).unwrap(),
                b"hello 0123456789",
                "step {step}"
            );
        }
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"z\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"-5\r\n",
        ] {
            assert!(
                decode_all(bad, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("{}\r\n", "0".repeat(MAX_CHUNK_LINE + 1));
        assert!(decode_all(long.as_bytes(), 64).is_err());
        let trailers = format!("0\r\n{}", "t: x\r\n".repeat(MAX_TRAILER_BYTES / 6 + 1));
        assert!(decode_all(trailers.as_bytes(), 512).is_err());
    }
}
