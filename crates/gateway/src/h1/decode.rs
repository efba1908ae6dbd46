//! Request body framing: bytes off the connection into the body's data,
//! by `Content-Length` or chunks. No I/O.

use bytes::BytesMut;

use super::head::BodyFraming;
use crate::http::chunked::{ChunkError, ChunkedDecoder, Decoded};

/// Where a request body is in its framing.
#[derive(Debug)]
pub enum Decoder {
    Length(u64),
    Chunked(ChunkedDecoder),
    Done,
}

impl Decoder {
    pub fn new(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::None | BodyFraming::Length(0) => Decoder::Done,
            BodyFraming::Length(n) => Decoder::Length(n),
            BodyFraming::Chunked => Decoder::Chunked(ChunkedDecoder::default()),
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }

    /// The bytes still to come, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            Decoder::Chunked(_) => None,
        }
    }

    /// Takes the next data out of `buf`, or the framing in it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        let decoded = match self {
            Decoder::Done => Decoded::Done,
            Decoder::Length(_) if buf.is_empty() => Decoded::NeedMore,
            Decoder::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                Decoded::Data(buf.split_to(take).freeze())
            }
            Decoder::Chunked(chunks) => chunks.decode(buf)?,
        };
        if matches!(decoded, Decoded::Done) || matches!(self, Decoder::Length(0)) {
            *self = Decoder::Done;
        }
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_takes_exactly_its_bytes_whatever_the_reads() {
        let mut decoder = Decoder::new(BodyFraming::Length(5));
        let mut buf = BytesMut::from(&b"hel"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Data("hel".into())));
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        assert_eq!(decoder.remaining(), Some(2));
        buf.extend_from_slice(b"loGET /");
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Data("lo".into())));
        assert!(decoder.is_done());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Done));
        assert_eq!(&buf[..], b"GET /", "the next request is left in the buffer");
    }

    #[test]
    fn chunks_end_with_the_last_chunk() {
        let mut decoder = Decoder::new(BodyFraming::Chunked);
        let mut buf = BytesMut::from(&b"2\r\nok\r\n0\r\n\r\nGET /"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Data("ok".into())));
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Done));
        assert!(decoder.is_done());
        assert_eq!(&buf[..], b"GET /");
    }
}
