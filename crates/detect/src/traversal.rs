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
    let raw = t.bytes();
    // Traversal and file paths need a separator.
    if !t.has(b'/') && !t.has(b'\\') {
        return;
    }
    let needs_norm = t.has(b'\\') || raw.windows(2).any(|w| w == b"//" || w == b"/.");
    let normalised;
    let b: &[u8] = if needs_norm {
        normalised = normalise(raw);
        &normalised
    } else {
        raw
    };
    let n = if t.may_contain(b"..") {
        traversals(b)
    } else {
        0
    };
    let sensitive = AC.as_ref().and_then(|ac| {
        ac.find(b)
            .or_else(|| {
                if needs_norm && t.may_contain(b"://") {
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
        (Some(p), 0) => hits.add(
            Family::PathTraversal,
            score::MEDIUM + 1,
            "lfi.sensitive-file",
            p,
        ),
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
