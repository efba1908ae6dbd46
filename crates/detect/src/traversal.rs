//! Path traversal and local file inclusion: `../` sequences after slash
//! normalisation, sensitive files and PHP stream wrappers, UNC admin shares.

use crate::text::{Hits, Text};
use crate::{Family, score};
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

const SENSITIVE: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/hosts",
    "etc/issue",
    "etc/sudoers",
    "etc/crontab",
    "proc/self/",
    "proc/version",
    "win.ini",
    "boot.ini",
    "system.ini",
    "windows/system32",
    "system32/",
    "inetpub/",
    "web.config",
    "wp-config.php",
    ".htaccess",
    ".htpasswd",
    "id_rsa",
    ".bash_history",
    ".aws/credentials",
    ".git/config",
    "ntuser.dat",
    "var/log/",
    "php://filter",
    "php://input",
    "zip://",
    "phar://",
    "expect://",
    "/c$/",
    "web-inf/web.xml",
];

static AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| crate::text::dfa(SENSITIVE));

/// Files a scanner asks a web root for by name (`/.git/config`,
/// `/wp-config.php`): what a site may serve by mistake, not a way out of it.
fn is_web_root_probe(at: &[u8]) -> bool {
    at.starts_with(b".")
        || at.starts_with(b"wp-config.php")
        || at.starts_with(b"web.config")
        || at.starts_with(b"web-inf/")
}

/// Slashes unified, `/./` and `//` collapsed.
fn normalise(b: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    for &c in b {
        let c = if c == b'\\' { b'/' } else { c };
        if c == b'/' {
            if out.last() == Some(&b'/') {
                continue;
            }
            if out.ends_with(b"/.") {
                out.pop();
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn traversals(b: &[u8]) -> usize {
    memchr::memchr_iter(b'.', b)
        .filter(|&i| {
            b.get(i + 1) == Some(&b'.')
                && (i == 0 || matches!(b[i - 1], b'/' | b'=' | b'"' | b'\'' | b' ' | b':'))
                && b.get(i + 2).is_none_or(|&c| c == b'/' || c == b';')
        })
        .count()
}

pub(crate) fn check(t: &Text, in_path: bool, hits: &mut Hits) {
    judge(t, t.bytes(), in_path, hits);
    // Dots and separators spelled the ways path decoders of some servers
    // still accept (`0x2f`, `∕`, IIS `%c0%qf`, stray invalid bytes): read
    // once more with each of them as the `.` or `/` it stands for.
    if may_have_disguise(t) {
        if let Some(sk) = skeleton(t.bytes()) {
            judge(t, &sk, in_path, hits);
        }
    }
}

/// Bytes without which [`skeleton`] changes nothing: `0x..` spellings,
/// non-ASCII (look-alike slashes, replacement characters), leftover `%`
/// and control characters.
fn may_have_disguise(t: &Text) -> bool {
    t.may_contain(b"0x") || t.has(b'%') || t.bytes().iter().any(|&c| !(0x20..0x80).contains(&c))
}

/// Unicode characters that path decoders have mapped to a separator:
/// division slash, set minus, fraction slash, and two private-use code
/// points IIS folded to `/` and `\`.
const LOOKALIKE_SEPARATORS: &[char] = &['\u{2215}', '\u{2216}', '\u{2044}', '\u{EFC8}', '\u{F025}'];

/// The text with disguised dots and separators replaced by `.` and `/`,
/// and bytes that decoders drop (controls, U+FFFD) removed; `None` when
/// nothing was replaced.
fn skeleton(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let c = b[i];
        let (emit, len) = if rest.starts_with(b"0x2e") {
            (Some(b'.'), 4)
        } else if rest.starts_with(b"0x2f") || rest.starts_with(b"0x5c") {
            (Some(b'/'), 4)
        } else if c == b'%'
            && rest.len() >= 3
            && rest[1].is_ascii_alphanumeric()
            && rest[2].is_ascii_alphanumeric()
        {
            // `%` with two characters that are not both hex digits (the
            // decoder left it): an escape some servers read as a separator.
            (Some(b'/'), 3)
        } else if c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t') {
            (None, 1)
        } else if c >= 0x80 {
            let len = utf8_len(c).min(rest.len());
            match std::str::from_utf8(&rest[..len])
                .ok()
                .and_then(|s| s.chars().next())
            {
                // An undecodable byte sitting between dots and names.
                Some('\u{FFFD}') => (Some(b'/'), len),
                Some(ch) if LOOKALIKE_SEPARATORS.contains(&ch) => (Some(b'/'), len),
                _ => (Some(c), 1),
            }
        } else {
            (Some(c), 1)
        };
        if len > 1 || emit != Some(c) {
            changed = true;
        }
        match emit {
            Some(e) if len == 1 || e != c || len > 1 && e == b'/' => out.push(e),
            Some(_) => out.extend_from_slice(&rest[..len]),
            None => {}
        }
        i += len;
    }
    changed.then_some(out)
}

fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn judge(t: &Text, raw: &[u8], in_path: bool, hits: &mut Hits) {
    // Traversal and file paths need a separator.
    if memchr::memchr2(b'/', b'\\', raw).is_none() {
        return;
    }
    let needs_norm =
        memchr::memchr(b'\\', raw).is_some() || raw.windows(2).any(|w| w == b"//" || w == b"/.");
    let normalised;
    let b: &[u8] = if needs_norm {
        normalised = normalise(raw);
        &normalised
    } else {
        raw
    };
    let n = if t.may_contain(b"..") || b.windows(2).any(|w| w == b"..") {
        traversals(b)
    } else {
        0
    };
    let sensitive = AC.as_ref().and_then(|ac| {
        ac.find(b)
            .or_else(|| {
                if needs_norm && raw.windows(3).any(|w| w == b"://") {
                    ac.find(raw)
                } else {
                    None
                }
            })
            .map(|m| m.start())
    });
    match (sensitive, n) {
        (Some(p), 1..) => hits.add(
            Family::PathTraversal,
            score::STRONG,
            "lfi.traversal-to-file",
            p,
        ),
        // Asking for `/.git/config` by name is a scanner's probe, a risk
        // signal; naming the file in a parameter is an inclusion attempt.
        (Some(p), 0) if in_path && is_web_root_probe(&b[p..]) => hits.add(
            Family::ScannerPath,
            score::MEDIUM + 1,
            "scanner.sensitive-file",
            p,
        ),
        (Some(p), 0) => hits.add(
            Family::PathTraversal,
            score::MEDIUM + 1,
            "lfi.sensitive-file",
            p,
        ),
        // A value of several lines is a document (YAML, a log), not a path:
        // relative paths in it climb nowhere by themselves.
        (None, _) if memchr::memchr(b'\n', raw).is_some() => {
            hits.add(Family::PathTraversal, score::WEAK, "lfi.traversal", 0)
        }
        (None, 3..) => hits.add(Family::PathTraversal, score::MEDIUM + 1, "lfi.traversal", 0),
        (None, 2) => hits.add(Family::PathTraversal, score::MEDIUM, "lfi.traversal", 0),
        (None, 1) if in_path => hits.add(Family::PathTraversal, score::MEDIUM, "lfi.traversal", 0),
        (None, 1) => hits.add(Family::PathTraversal, score::WEAK, "lfi.traversal", 0),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, false, &mut h);
        h.best(Family::PathTraversal)
    }

    #[test]
    fn attacks() {
        for a in [
            "/static/img/../../etc/passwd",
            "\\\\::1\\c$\\users\\default\\ntuser.dat",
            "file:///etc/./passwd",
            "../../../../windows/win.ini",
            "....//....//etc/passwd",
            "php://filter/convert.base64-encode/resource=index.php",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "I would like to request the /cc serviceCode",
            "url=/?usr=subject;-",
            "see page 2.. or 3",
            "version 1.2.3",
            "the etc. passwords",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
