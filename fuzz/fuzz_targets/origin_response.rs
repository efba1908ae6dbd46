//! The origin's response as the gateway reads it: the head parsed in place,
//! the body framing chosen, and a chunked body decoded, on arbitrary bytes
//! arriving in arbitrary pieces. None may panic or read out of step.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portcullis_gateway::origin::wire::{BodyFraming, ChunkedDecoder, Decoded, parse_head, response_framing};

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step.max(1));
    let mut buf = BytesMut::new();
    let mut pieces = data.chunks(step);
    let mut head = loop {
        match parse_head(&mut buf) {
            Ok(Some(head)) => break head,
            Ok(None) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => return,
            },
            Err(_) => return,
        }
    };
    let Ok((BodyFraming::Chunked, _)) = response_framing(&http::Method::GET, &mut head) else {
        return;
    };
    let mut decoder = ChunkedDecoder::default();
    let mut decoded = 0;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(piece)) => decoded += piece.len(),
            Ok(Decoded::NeedMore) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => break,
            },
            Ok(Decoded::Done) | Err(_) => break,
        }
    }
    assert!(decoded <= data.len());
});
