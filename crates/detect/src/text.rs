//! A decoded value as the family checks see it, and small helpers on it.

use crate::Family;
use memchr::memmem;
use std::cell::OnceCell;

/// One decoded view of a value: the text, its ASCII-lowercased twin (same
/// byte offsets), and the set of bytes it contains, which lets every check
/// skip needles that cannot occur.
pub(crate) struct Text<'a> {
    pub s: &'a str,
    pub lower: &'a str,
    set: [u64; 4],
    stripped: OnceCell<Option<Vec<u8>>>,
}

impl<'a> Text<'a> {
    pub fn new(s: &'a str, lower: &'a str) -> Self {
        let mut set = [0u64; 4];
        for &b in lower.as_bytes() {
            set[usize::from(b >> 6)] |= 1u64 << (b & 63);
        }
        Text {
            s,
            lower,
            set,
            stripped: OnceCell::new(),
        }
    }

    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.lower.as_bytes()
    }

    /// Whether byte `b` occurs (in the lowercased text).
    #[inline]
    pub fn has(&self, b: u8) -> bool {
        self.set[usize::from(b >> 6)] & (1u64 << (b & 63)) != 0
    }

    /// Whether any of `bs` occurs.
    #[inline]
    pub fn has_any(&self, bs: &[u8]) -> bool {
        bs.iter().any(|&b| self.has(b))
    }

    /// Whether every byte of `needle` occurs somewhere (a cheap prefilter).
    #[inline]
    pub fn may_contain(&self, needle: &[u8]) -> bool {
        needle.iter().all(|&b| self.has(b))
    }

    #[inline]
    pub fn find(&self, needle: &str) -> Option<usize> {
        if !self.may_contain(needle.as_bytes()) {
            return None;
        }
        find_bytes(self.lower.as_bytes(), needle.as_bytes())
    }

    /// The text with string concatenation and dummy tags removed, if any
    /// were there (computed once per view).
    pub fn stripped(&self) -> Option<&[u8]> {
        self.stripped
            .get_or_init(|| {
                // Concatenations are quote, `+` or `&`, quote; dummy tags need `<`.
                if self.has(b'<') || (self.has_any(b"'\"") && self.has_any(b"+&")) {
                    crate::xss::strip_obfuscation(self.bytes())
                } else {
                    None
                }
            })
            .as_deref()
    }
}

/// Haystacks up to this length are searched without building a
/// `memmem::Finder`, whose set-up costs more than the search itself there.
const SHORT_HAYSTACK: usize = 256;

/// The first occurrence of `needle` in `hay`.
pub(crate) fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else {
        return Some(0);
    };
    if hay.len() > SHORT_HAYSTACK {
        return memmem::find(hay, needle);
    }
    memchr::memchr_iter(first, hay).find(|&i| hay[i + 1..].starts_with(rest))
}

/// The non-overlapping occurrences of `needle` in `hay`, left to right
/// (what `memmem::find_iter` yields, without its set-up on short input).
pub(crate) fn find_iter<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let at = pos + find_bytes(hay.get(pos..)?, needle)?;
        pos = at + needle.len().max(1);
        Some(at)
    })
}

/// A set of words, searched by bisection behind a filter on the first byte
/// and the length, which turns away most words of prose cheaply.
pub(crate) struct WordSet {
    sorted: Vec<&'static [u8]>,
    /// Bit `len` (at most 31) of entry `first byte` is set when a word has both.
    shapes: [u32; 256],
}

impl WordSet {
    pub fn new(list: &[&'static [u8]]) -> Self {
        let mut sorted = list.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut shapes = [0u32; 256];
        for w in &sorted {
            if let Some(&first) = w.first() {
                shapes[usize::from(first)] |= 1 << w.len().min(31);
            }
        }
        WordSet { sorted, shapes }
    }

    pub fn contains(&self, w: &[u8]) -> bool {
        let Some(&first) = w.first() else {
            return false;
        };
        self.shapes[usize::from(first)] & (1 << w.len().min(31)) != 0
            && self.sorted.binary_search(&w).is_ok()
    }
}

/// A DFA-backed Aho-Corasick automaton (fast search on short inputs).
pub(crate) fn dfa<I, P>(patterns: I) -> Option<aho_corasick::AhoCorasick>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .prefilter(false)
        .build(patterns)
        .ok()
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
    /// Rules not to record (what a place makes data, such as a statement
    /// in a search).
    pub ignored: &'static [&'static str],
}

const MAX_HITS: usize = 32;

impl Hits {
    pub fn add(&mut self, family: Family, score: u32, rule: &'static str, at: usize) {
        if self.ignored.contains(&rule) {
            return;
        }
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

    #[cfg(test)]
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

/// Index of the next byte at or after `i` that is not ASCII whitespace.
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == 0x0b) {
        i += 1;
    }
    i
}

/// Whether the name ending at `e` is followed by an empty call and then a
/// plain word (`eval() is evil`): prose naming a function. No JavaScript
/// or PHP parses a word right after a call on the same line, except the
/// operators spelled as words.
pub(crate) fn empty_call_in_prose(b: &[u8], e: usize) -> bool {
    let Some(rest) = b.get(e..).and_then(|r| r.strip_prefix(b"()")) else {
        return false;
    };
    let word_at = skip_ws(rest, 0);
    if word_at == 0 || !rest.get(word_at).is_some_and(u8::is_ascii_alphabetic) {
        return false;
    }
    let word = &rest[word_at..ident_end(rest, word_at)];
    !matches!(
        word.to_ascii_lowercase().as_slice(),
        b"in" | b"instanceof" | b"and" | b"or" | b"xor"
    )
}

/// End of the identifier starting at `i`.
pub(crate) fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ident(b[i]) {
        i += 1;
    }
    i
}

/// Most code blocks looked for in one value.
const MAX_BLOCKS: usize = 64;

/// Closed code blocks of rich text and markdown: `<pre>...</pre>`,
/// `<code>...</code>`, and fences (a line opening with three or more
/// backticks or tildes, up to the next such line).
pub(crate) fn code_blocks(b: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    for (open, close) in [(&b"<pre"[..], &b"</pre>"[..]), (b"<code", b"</code>")] {
        let mut from = 0;
        while out.len() < MAX_BLOCKS {
            let Some(start) = find_bytes(&b[from..], open).map(|p| from + p) else {
                break;
            };
            let Some(end) = find_bytes(&b[start..], close).map(|p| start + p) else {
                break;
            };
            out.push(start..end);
            from = end;
        }
    }
    let mut fence_open: Option<usize> = None;
    let mut line_start = 0;
    while line_start < b.len() && out.len() < MAX_BLOCKS {
        let line_end = memchr::memchr(b'\n', &b[line_start..]).map_or(b.len(), |p| line_start + p);
        let line = b[line_start..line_end].trim_ascii_start();
        if line.starts_with(b"```") || line.starts_with(b"~~~") {
            match fence_open.take() {
                Some(start) => out.push(start..line_start),
                None => fence_open = Some(line_end),
            }
        }
        line_start = line_end + 1;
    }
    out
}

/// `s` and its lowercased twin with every code block blanked out (same
/// length and offsets), when there is one: what the text says outside the
/// code it shows.
pub(crate) fn outside_code_blocks(t: &Text) -> Option<(String, String)> {
    if !(t.has(b'<') || (t.has(b'\n') && t.has_any(b"`~"))) {
        return None;
    }
    let blocks = code_blocks(t.bytes());
    if blocks.is_empty() {
        return None;
    }
    let blank = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        for r in &blocks {
            b[r.clone()].fill(b' ');
        }
        // Whole characters were blanked or kept, so the bytes stay UTF-8.
        String::from_utf8(b).ok()
    };
    Some((blank(t.s)?, blank(t.lower)?))
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
    fn snippet_is_bounded_and_clean() {
        let s = "x".repeat(200) + "\r\nSet-Cookie";
        let sn = snippet(&s, 200);
        assert!(sn.chars().count() <= 64);
        assert!(sn.contains("\\r\\n"));
        assert_eq!(snippet("é", 1), "é");
    }
}
