//! A decoded value as the family checks see it, and small helpers on it.

use crate::Family;
use memchr::memmem;

/// One decoded view of a value: the text and its ASCII-lowercased twin
/// (same byte offsets).
pub(crate) struct Text<'a> {
    pub s: &'a str,
    pub lower: &'a str,
}

impl<'a> Text<'a> {
    pub fn bytes(&self) -> &'a [u8] {
        self.lower.as_bytes()
    }

    pub fn contains(&self, needle: &str) -> bool {
        memmem::find(self.lower.as_bytes(), needle.as_bytes()).is_some()
    }

    pub fn find(&self, needle: &str) -> Option<usize> {
        memmem::find(self.lower.as_bytes(), needle.as_bytes())
    }

    pub fn find_from(&self, needle: &str, from: usize) -> Option<usize> {
        let hay = self.lower.as_bytes().get(from..)?;
        memmem::find(hay, needle.as_bytes()).map(|i| i + from)
    }
}

/// Where a check fired inside a view.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub family: Family,
    pub score: u32,
    pub rule: &'static str,
    pub at: usize,
}

/// The hits of one view, bounded.
#[derive(Default)]
pub(crate) struct Hits {
    pub v: Vec<Hit>,
}

const MAX_HITS: usize = 32;

impl Hits {
    pub fn add(&mut self, family: Family, score: u32, rule: &'static str, at: usize) {
        if let Some(h) = self.v.iter_mut().find(|h| h.family == family) {
            if score > h.score {
                *h = Hit {
                    family,
                    score,
                    rule,
                    at,
                };
            }
            return;
        }
        if self.v.len() < MAX_HITS {
            self.v.push(Hit {
                family,
                score,
                rule,
                at,
            });
        }
    }

    pub fn has(&self, family: Family) -> bool {
        self.v.iter().any(|h| h.family == family)
    }

    pub fn best(&self, family: Family) -> u32 {
        self.v
            .iter()
            .filter(|h| h.family == family)
            .map(|h| h.score)
            .max()
            .unwrap_or(0)
    }
}

pub(crate) fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `lower[at..]` starts with `word` and `word` is a whole word there.
pub(crate) fn word_at(lower: &[u8], at: usize, word: &[u8]) -> bool {
    let end = at + word.len();
    if lower.get(at..end) != Some(word) {
        return false;
    }
    let before_ok = at == 0 || !is_word(lower[at - 1]);
    let after_ok = lower.get(end).is_none_or(|&b| !is_word(b));
    before_ok && after_ok
}

/// Index of the next byte at or after `i` that is not ASCII whitespace.
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == 0x0b) {
        i += 1;
    }
    i
}

/// End of the identifier starting at `i`.
pub(crate) fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ident(b[i]) {
        i += 1;
    }
    i
}

/// A short printable snippet of `s` around byte `at`, at most 64 chars.
pub(crate) fn snippet(s: &str, at: usize) -> String {
    let mut start = at.saturating_sub(16).min(s.len());
    while start > 0 && !s.is_char_boundary(start) {
        start -= 1;
    }
    let mut out = String::with_capacity(64);
    for c in s[start..].chars() {
        if out.chars().count() >= 64 {
            break;
        }
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push(' '),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    if out.chars().count() > 64 {
        out = out.chars().take(64).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_boundaries() {
        assert!(word_at(b"a union b", 2, b"union"));
        assert!(!word_at(b"reunion", 2, b"union"));
        assert!(!word_at(b"unions", 0, b"union"));
    }

    #[test]
    fn snippet_is_bounded_and_clean() {
        let s = "x".repeat(200) + "\r\nSet-Cookie";
        let sn = snippet(&s, 200);
        assert!(sn.chars().count() <= 64);
        assert!(sn.contains("\\r\\n"));
        assert_eq!(snippet("é", 1), "é");
    }
}
