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

/// Schemes a server fetches over the network, read as WHATWG reads its
/// special schemes: any run of `/` and `\` after the colon (none too)
/// comes before the host.
const FETCHED: &[&str] = &["http:", "https:", "ftp:", "ws:", "wss:"];

static FETCHED_AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| crate::text::dfa(FETCHED));

/// Most URLs of one kind read in one value.
const MAX_URLS: usize = 64;

/// `in_json`: the value sits in a JSON document, where a loopback or private
/// URL is configuration far more often than a fetch target (cloud metadata
/// hosts, in any spelling, and odd schemes count everywhere).
/// `in_json`, or a browser's redirect target (`redirect_uri`): a loopback
/// or private host there is configuration or where the browser goes, not a
/// fetch by the server, and weighs little; metadata hosts count everywhere.
pub(crate) fn check(t: &Text, in_json: bool, hits: &mut Hits) {
    let b = t.bytes();
    if !t.has_any(b".@:/\\") {
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
    // A scheme-relative URL (`//host/`, `\\host\share`) as the whole value:
    // a redirect target or a fetch a server resolves against its own
    // scheme.
    let slashes = b.iter().take_while(|c| matches!(c, b'/' | b'\\')).count();
    if slashes >= 2 {
        internal_url(t.lower, 0, slashes, in_json, hits);
    }
    if t.has(b':') {
        if let Some(ac) = FETCHED_AC.as_ref() {
            for m in ac.find_iter(b).take(MAX_URLS) {
                if scheme_starts_at(b, m.start()) {
                    internal_url(t.lower, m.start(), m.end(), in_json, hits);
                }
            }
        }
    }
    if !t.may_contain(b"://") {
        return;
    }
    for p in crate::text::find_iter(b, b"://").take(MAX_URLS) {
        odd_scheme_at(b, p, hits);
    }
    for scheme in ["jar:", "netdoc:"] {
        if let Some(p) = t.find(scheme) {
            if p == 0 || !b[p - 1].is_ascii_alphanumeric() {
                hits.add(Family::Ssrf, score::MEDIUM + 1, "ssrf.scheme", p);
            }
        }
    }
}

/// Whether a scheme name found at `at` is a whole word.
fn scheme_starts_at(b: &[u8], at: usize) -> bool {
    at == 0 || !(b[at - 1].is_ascii_alphanumeric() || matches!(b[at - 1], b'+' | b'.' | b'-'))
}

/// Schemes that reach other services than the web (`gopher://`,
/// `dict://`, `file://`).
fn odd_scheme_at(b: &[u8], sep: usize, hits: &mut Hits) {
    let mut s = sep;
    while s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'.' | b'-')) {
        s -= 1;
    }
    match &b[s..sep] {
        b"gopher" | b"dict" | b"ldap" | b"ldaps" | b"rmi" | b"expect" | b"tftp" | b"netdoc"
        | b"jar" | b"smb" => hits.add(Family::Ssrf, score::STRONG, "ssrf.scheme", s),
        // `file:// URLs` names the scheme; a file URL has a path (or a
        // host) after the slashes.
        b"file" if b.get(sep + 3).is_some_and(|c| !c.is_ascii_whitespace()) => {
            hits.add(Family::Ssrf, score::MEDIUM + 1, "ssrf.file-scheme", s)
        }
        _ => {}
    }
}

/// The URL whose scheme starts at `start` and whose authority follows the
/// slashes from `after`: flagged when a host it may name is internal.
fn internal_url(lower: &str, start: usize, after: usize, in_json: bool, hits: &mut Hits) {
    let rest = &lower[after..];
    let rest = rest.trim_start_matches(['/', '\\']);
    let Some(sc) = authority_hosts(rest)
        .into_iter()
        .flatten()
        .filter_map(internal_host)
        .max()
    else {
        return;
    };
    let sc = if in_json && sc < score::STRONG {
        score::WEAK
    } else {
        sc
    };
    hits.add(Family::Ssrf, sc, "ssrf.internal-host", start);
}

/// The hosts different URL parsers read in `rest` (what follows the
/// slashes): WHATWG ends the authority at `\`, older parsers do not and
/// take the host after the last `@` (`evil.com\@127.0.0.1`), and some take
/// what comes before the first `@` (`127.0.0.1:80@evil.com`).
fn authority_hosts(rest: &str) -> [Option<&str>; 3] {
    let end = |backslash: bool| {
        rest.find(|c: char| {
            matches!(
                c,
                '/' | '?' | '#' | ' ' | '"' | '\'' | '>' | '<' | '\t' | '\n' | '\r'
            ) || (backslash && c == '\\')
        })
        .unwrap_or(rest.len())
    };
    let whatwg = &rest[..end(true)];
    let lenient = &rest[..end(false)];
    [
        Some(strip_port(after_last_at(whatwg))),
        (lenient.len() != whatwg.len()).then(|| strip_port(after_last_at(lenient))),
        whatwg.find('@').map(|p| strip_port(&whatwg[..p])),
    ]
}

fn after_last_at(a: &str) -> &str {
    a.rfind('@').map_or(a, |p| &a[p + 1..])
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return match h.find(']') {
            Some(p) => &h[..=p],
            None => h,
        };
    }
    match h.rfind(':') {
        Some(p) => &h[..p],
        None => h,
    }
}

/// Where an address points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A cloud metadata service (credentials of the machine).
    Metadata,
    /// This machine: loopback, or the unspecified address.
    Loopback,
    /// A private, link-local, unique-local, shared (CGNAT) or benchmark
    /// network.
    Private,
    /// Anywhere else.
    Public,
}

/// Score for a host that points inside: metadata, loopback, private.
fn internal_host(raw: &str) -> Option<u32> {
    let host = normalize_host(raw);
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host.is_empty() {
        return None;
    }
    let (place, spelled_plainly) = match host.strip_prefix('[') {
        Some(v6) => ipv6_place(v6.strip_suffix(']')?)?,
        None => match ipv4(host) {
            Some((addr, spelling)) => {
                // `10.5` is a version or a figure as often as a host:
                // only a plain shorthand of a sensitive address counts.
                if spelling == Spelling::Shorthand && ipv4_place(addr) == Place::Private {
                    return None;
                }
                (
                    ipv4_place(addr),
                    spelling != Spelling::Disguised && raw.is_ascii(),
                )
            }
            None => (name_place(host), true),
        },
    };
    match place {
        Place::Metadata => Some(score::STRONG),
        Place::Loopback => Some(score::MEDIUM + 1),
        // No one writes an address as one number, in octal or hex, or
        // inside an IPv6 one, but to get past a filter: the spelling counts
        // wherever it points.
        _ if !spelled_plainly => Some(score::MEDIUM + 1),
        Place::Private => Some(score::MEDIUM),
        Place::Public => None,
    }
}

/// The host as IDNA reads it: compatibility forms folded (fullwidth and
/// circled digits), the ideographic full stops as dots, lowercase.
fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization as _;
    if raw.is_ascii() {
        return std::borrow::Cow::Borrowed(raw);
    }
    let folded: String = raw
        .nfkc()
        .map(|c| match c {
            '\u{3002}' | '\u{FF0E}' | '\u{FF61}' => '.',
            c => c,
        })
        .collect();
    std::borrow::Cow::Owned(folded.to_lowercase())
}

fn name_place(host: &str) -> Place {
    const METADATA: &[&str] = &[
        "metadata",
        "metadata.google.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    ];
    if METADATA.contains(&host) {
        Place::Metadata
    } else if host == "localhost" || host.ends_with(".localhost") {
        Place::Loopback
    } else {
        Place::Public
    }
}

fn ipv4_place(a: std::net::Ipv4Addr) -> Place {
    let o = a.octets();
    const METADATA: &[[u8; 4]] = &[
        [169, 254, 169, 254],
        [169, 254, 170, 2],
        [100, 100, 100, 200],
    ];
    if METADATA.contains(&o) {
        Place::Metadata
    } else if a.is_loopback() || a.is_unspecified() {
        Place::Loopback
    } else if a.is_private()
        || a.is_link_local()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1]))
        || (o[0] == 198 && (18..20).contains(&o[1]))
    {
        Place::Private
    } else {
        Place::Public
    }
}

/// Where an IPv6 address points, and whether it was written as itself
/// (not as an IPv4 address in disguise).
fn ipv6_place(s: &str) -> Option<(Place, bool)> {
    // A zone (`fe80::1%eth0`) names an interface, not another address.
    let s = s.split('%').next().unwrap_or(s);
    let a: std::net::Ipv6Addr = s.parse().ok()?;
    let seg = a.segments();
    if a == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some((Place::Metadata, true));
    }
    if a.is_loopback() || a.is_unspecified() {
        return Some((Place::Loopback, true));
    }
    // IPv4-mapped, IPv4-compatible and NAT64 addresses reach the IPv4
    // address they embed.
    let embeds_v4 = seg[..5] == [0; 5] && matches!(seg[5], 0 | 0xffff)
        || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if embeds_v4 {
        let [.., a, b, c, d] = a.octets();
        return Some((ipv4_place(std::net::Ipv4Addr::new(a, b, c, d)), false));
    }
    let unique_local = seg[0] & 0xfe00 == 0xfc00;
    let link_local = seg[0] & 0xffc0 == 0xfe80;
    let site_local = seg[0] & 0xffc0 == 0xfec0;
    let place = if unique_local || link_local || site_local {
        Place::Private
    } else {
        Place::Public
    };
    Some((place, true))
}

/// How an IPv4 address was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// Four decimal parts, no leading zeros: `10.0.0.1`.
    Dotted,
    /// Two or three decimal parts, or a small number: `10.1`, `127.0.1`.
    Shorthand,
    /// One number of four bytes, octal or hex parts: `2852039166`,
    /// `0x7f.1`, `0177.0.0.1`.
    Disguised,
}

/// A host as WHATWG's IPv4 parser (and `inet_aton`) reads it: one to four
/// parts, each decimal, octal (leading `0`) or hex (`0x`), the last filling
/// the remaining bytes.
fn ipv4(host: &str) -> Option<(std::net::Ipv4Addr, Spelling)> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut spelling = match parts.len() {
        4 => Spelling::Dotted,
        _ => Spelling::Shorthand,
    };
    let mut values = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = match p.strip_prefix("0x") {
            Some(hex) => (hex, 16),
            None if p.len() > 1 && p.starts_with('0') => (&p[1..], 8),
            None => (*p, 10),
        };
        if radix != 10 {
            spelling = Spelling::Disguised;
        }
        let v = if digits.is_empty() {
            0
        } else if digits.len() > 12 || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        values.push(v);
    }
    let (last, init) = values.split_last()?;
    // A number alone below 2^24 (`2024`) is a figure more often than an
    // address; above, it names an address outside `0.0.0.0/8`.
    if init.is_empty() && *last >= 1 << 24 {
        spelling = Spelling::Disguised;
    }
    if init.iter().any(|&v| v > 255) || *last >= 1u64 << (8 * (5 - values.len())) {
        return None;
    }
    let addr = init
        .iter()
        .enumerate()
        .fold(*last, |acc, (i, &v)| acc | v << (8 * (3 - i)));
    Some((
        std::net::Ipv4Addr::from(u32::try_from(addr).ok()?),
        spelling,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_in(s: &str, in_json: bool) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, in_json, &mut h);
        h.best(Family::Ssrf)
    }

    fn score_of(s: &str) -> u32 {
        score_in(s, false)
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

    fn json_score_of(s: &str) -> u32 {
        score_in(s, true)
    }

    /// Other spellings of internal addresses: WHATWG / `inet_aton` number
    /// forms, IPv6 forms, compatibility characters, parser differentials.
    #[test]
    fn other_spellings_of_internal_hosts() {
        for a in [
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[::ffff:169.254.169.254]/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://169.16689662/",
            "http://00000177.0.0.1/",
            "http://0177.0.0.01/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://0000/",
            "http://0/",
            "http://[0000::1]/",
            "http://[0:0::1]/",
            "http://[::1%eth0]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://127\u{3002}0\u{3002}0\u{3002}1/",
            "http://127\u{ff61}0\u{ff61}0\u{ff61}1/",
            "http://\u{2460}\u{2461}\u{2466}.\u{24ea}.\u{24ea}.\u{2460}/",
            "http://evil.com\\@127.0.0.1/",
            "http:/\\127.0.0.1/",
            "http:127.0.0.1/",
            "http:\\\\127.0.0.1/",
            "//127.0.0.1/admin",
            "\\\\127.0.0.1\\share",
            "http://127.0.0.1:80@evil.com/",
            "http://1.1.1.1&@127.0.0.1#@evil/",
            "HtTp://LocalHost./",
            "http://169.254.170.2/v2/credentials/x",
            "http://instance-data/latest/",
            "http://100.64.0.1/",
            "http://198.18.0.1/",
            "http://10.0.0.1/",
            "http://167772161/",
            // A public address disguised is a filter evasion too.
            "http://134744072/",
            "http://[::ffff:808:808]/",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn metadata_counts_in_json_in_every_spelling() {
        for a in [
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://169.16689662/",
            "http://169.254.170.2/v2/credentials/x",
            "http://[fd00:ec2::254]/latest/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://instance-data/latest/",
            "http://100.100.100.200/latest/meta-data/",
            "//169.254.169.254/latest/",
        ] {
            assert!(json_score_of(a) >= score::STRONG, "missed in JSON: {a}");
        }
        // Loopback and private URLs in JSON stay configuration.
        for b in [
            "http://localhost:8080/callback",
            "http://127.0.0.1:9200",
            "http://10.0.0.5/api",
            "http://[fd00::1]/",
        ] {
            assert!(json_score_of(b) < score::MEDIUM, "flagged in JSON: {b}");
        }
    }

    #[test]
    fn public_hosts_in_any_spelling_are_not_internal() {
        for b in [
            "http://8.8.8.8/",
            "http://[2001:db8::1]/",
            "//cdn.example.com/app.js",
            "///etc/passwd",
            "http://1.2/",
            "//1<b>",
            "http://2024/",
            "see http: the protocol",
            "https://user:pass@example.com/",
            "http://\u{4f8b}\u{5b50}\u{3002}\u{6d4b}\u{8bd5}/",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
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
