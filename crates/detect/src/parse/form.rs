//! `application/x-www-form-urlencoded` and query strings.

use super::at_location;
use crate::analyze::{Ctx, Sink};
use crate::decode;

/// Most parameters read from one query string or form.
const MAX_PAIRS: usize = 256;

/// Inspect `k=v&k2=v2` under `prefix.k`; keys are inspected too when they
/// hold anything beyond a plain name.
pub(crate) fn pairs(s: &[u8], prefix: &str, ctx: Ctx, sink: &mut Sink) {
    if s.split(|&c| c == b'&')
        .filter(|p| !p.is_empty())
        .nth(MAX_PAIRS)
        .is_some()
    {
        sink.overflow(|i| i.pairs = true);
    }
    let mut key = Vec::new();
    for pair in s
        .split(|&c| c == b'&')
        .filter(|p| !p.is_empty())
        .take(MAX_PAIRS)
    {
        let (k, v) = match memchr::memchr(b'=', pair) {
            Some(p) => (&pair[..p], &pair[p + 1..]),
            None => (&b""[..], pair),
        };
        key.clear();
        decode::percent_decode(k, true, &mut key);
        at_location(sink, prefix, &key, |sink, loc| {
            if !key
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
            {
                sink.value(loc, k, ctx);
            }
            // `_charset_` names the charset of the whole form (HTML5, ASP.NET).
            if key == b"_charset_" {
                let mut label = Vec::with_capacity(v.len());
                decode::percent_decode(v, true, &mut label);
                if !crate::charset::readable(&label) {
                    super::body::unreadable_charset(loc, &label, sink);
                }
            }
            sink.value(loc, v, ctx);
        });
    }
}
