//! SSRF and RFI: URLs with odd schemes (`gopher://`, `file://`, `dict://`),
//! URLs to loopback, private and link-local addresses and cloud metadata
//! services, and out-of-band callback domains used to confirm blind bugs.

use crate::text::{Hits, Text};
use crate::{Family, score};
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

const OAST: &[&str] = &[
    "burpcollaborator.net",
    "oastify.com",
    ".oast.me",
    ".oast.pro",
    ".oast.live",
    ".oast.site",
    ".oast.online",
    ".oast.fun",
    ".interact.sh",
    "@interact.sh",
    "interactsh.com",
    ".dnslog.cn",
    ".ceye.io",
    "requestbin.net",
    "canarytokens.com",
    ".xss.ht",
    ".bxss.me",
    "r87.me",
];

static OAST_AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| crate::text::dfa(OAST));

/// `in_json`: the value sits in a JSON document, where a loopback or private
/// URL is configuration far more often than a fetch target (cloud metadata
/// hosts and odd schemes count everywhere).
pub(crate) fn check(t: &Text, in_json: bool, hits: &mut Hits) {
    let b = t.bytes();
    if !t.has_any(b".@:") {
        return;
    }
    if let Some(m) = OAST_AC.as_ref().and_then(|ac| ac.find(b)) {
        hits.add(
            Family::Ssrf,
            score::MEDIUM + 2,
            "ssrf.oast-domain",
            m.start(),
        );
    }
    if !t.may_contain(b"://") {
        return;
    }
    for p in crate::text::find_iter(b, b"://").take(64) {
        url_at(b, p, in_json, hits);
    }
    for scheme in ["jar:", "netdoc:"] {
        if let Some(p) = t.find(scheme) {
            if p == 0 || !b[p - 1].is_ascii_alphanumeric() {
                hits.add(Family::Ssrf, score::MEDIUM + 1, "ssrf.scheme", p);
            }
        }
    }
}

fn url_at(b: &[u8], sep: usize, in_json: bool, hits: &mut Hits) {
    let mut s = sep;
    while s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'.' | b'-')) {
        s -= 1;
    }
    let scheme = &b[s..sep];
    let rest = &b[sep + 3..];
    let auth_end = rest
        .iter()
        .position(|&c| {
            matches!(
                c,
                b'/' | b'?' | b'#' | b' ' | b'"' | b'\'' | b'\\' | b'>' | b'<'
            )
        })
        .unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let host_part = match authority.iter().rposition(|&c| c == b'@') {
        Some(p) => &authority[p + 1..],
        None => authority,
    };
    let host = strip_port(host_part);
    match scheme {
        b"gopher" | b"dict" | b"ldap" | b"ldaps" | b"rmi" | b"expect" | b"tftp" | b"netdoc"
        | b"jar" | b"smb" => hits.add(Family::Ssrf, score::STRONG, "ssrf.scheme", s),
        b"file" => hits.add(Family::Ssrf, score::MEDIUM + 1, "ssrf.file-scheme", s),
        b"http" | b"https" | b"ftp" | b"ws" | b"wss" => {
            if let Some(sc) = internal_host(host) {
                let sc = if in_json && sc < score::STRONG {
                    score::WEAK
                } else {
                    sc
                };
                hits.add(Family::Ssrf, sc, "ssrf.internal-host", s);
            }
        }
        _ => {}
    }
}

fn strip_port(h: &[u8]) -> &[u8] {
    if h.first() == Some(&b'[') {
        return match h.iter().position(|&c| c == b']') {
            Some(p) => &h[..=p],
            None => h,
        };
    }
    match h.iter().rposition(|&c| c == b':') {
        Some(p) => &h[..p],
        None => h,
    }
}

/// Score for a host that points inside: loopback, private, metadata.
fn internal_host(h: &[u8]) -> Option<u32> {
    let h = h.strip_suffix(b".").unwrap_or(h);
    if h == b"169.254.169.254"
        || h == b"metadata.google.internal"
        || h == b"100.100.100.200"
        || h == b"[fd00:ec2::254]"
        || h == b"metadata"
    {
        return Some(score::STRONG);
    }
    if h == b"localhost"
        || h.ends_with(b".localhost")
        || h == b"0"
        || h == b"0.0.0.0"
        || h.starts_with(b"[::")
        || h.starts_with(b"[0:0:")
        || h.starts_with(b"127.")
    {
        return Some(score::MEDIUM + 1);
    }
    if h.starts_with(b"0x")
        || (h.len() >= 8 && h.iter().all(u8::is_ascii_digit))
        || h.starts_with(b"0177.")
        || h.starts_with(b"017700")
    {
        return Some(score::MEDIUM + 1);
    }
    if let Some(oct) = ipv4(h) {
        let private = oct[0] == 10
            || (oct[0] == 192 && oct[1] == 168)
            || (oct[0] == 172 && (16..=31).contains(&oct[1]))
            || (oct[0] == 169 && oct[1] == 254)
            || oct[0] == 0;
        if private {
            return Some(score::MEDIUM);
        }
    }
    None
}

fn ipv4(h: &[u8]) -> Option<[u8; 4]> {
    let s = std::str::from_utf8(h).ok()?;
    let mut out = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 {
            return None;
        }
        out[n] = part.parse().ok()?;
        n += 1;
    }
    (n == 4).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, false, &mut h);
        h.best(Family::Ssrf)
    }

    #[test]
    fn attacks() {
        for a in [
            "http://169.254.169.254/latest/meta-data/",
            "gopher://127.0.0.1:6379/_INFO",
            "http://localhost:8080/admin",
            "http://[::1]/",
            "dict://x:11211/stat",
            "http://lmb1ikpej3yys0gqft8lxewm2d89w5qtgh840sp.burpcollaborator.net/6.17.0.RELEASE",
            "root@w63gecoroprj5um8ypnd7r6in9t0hseg3.interact.sh",
            "http://user@10.0.0.5/",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "url=http://www.example.com/tan?usp=4#8",
            "url=https://api.twitter.com/1.1/statuses/user_timeline.json?screen_name=twitterapi&count=2",
            "lhttps://www.instagram.com/p/B_uHgI7lY0Z/?igshid=1m7xkk7a9v6z4",
            "http://10.5 percent",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
