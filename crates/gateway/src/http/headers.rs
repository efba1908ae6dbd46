//! Header helpers: cookies, the headers a client could forge about the
//! verdict or its own address, hop-by-hop headers and upgrades.

use std::borrow::Cow;
use std::collections::HashSet;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// The value of one cookie, from any `Cookie` header.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    cookie_pairs(headers).find_map(|(k, v)| (k == name).then_some(v))
}

fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// Header names compared the way frameworks read them: case, `_` and `-`
/// alike (CGI-style servers turn both into `HTTP_X_WX_RISK_RANK`).
pub fn same_name(name: &str, wanted: &str) -> bool {
    name.len() == wanted.len()
        && name.bytes().zip(wanted.bytes()).all(|(a, b)| {
            let fold = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            fold(a) == fold(b)
        })
}

/// Whether `name` starts with `prefix` under [`same_name`]'s folding.
pub fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && same_name(&name[..prefix.len()], prefix)
}

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The gateway's own headers: the verdict (`x-wx-*`, `x-portcullis-*`) and
/// the client protocol (`x-pc-*`). A client's copies never reach the origin.
pub const RESERVED_PREFIXES: [&str; 3] = ["x-wx-", "x-portcullis-", "x-pc-"];

/// The forwarding headers the gateway sets on every origin request.
pub const FORWARDING: [&str; 5] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// The headers only the gateway may send to the origin, `_` and `-` alike
/// (`x_request_id` is `x-request-id`): the client-address and forwarding
/// headers a client could forge (`remove`, from `[headers]`), the
/// gateway's own [`FORWARDING`] headers and the reserved prefixes.
fn owned_headers(remove: &[String]) -> NameSet {
    let forged = remove.iter().map(String::as_str);
    NameSet::new(forged.chain(FORWARDING), &RESERVED_PREFIXES)
}

/// Header names and name prefixes compared as [`same_name`] compares them,
/// compiled once: a name is folded once and looked up, not compared with
/// every entry.
pub struct NameSet {
    names: HashSet<Box<[u8]>, foldhash::fast::FixedState>,
    prefixes: Vec<Box<[u8]>>,
    shapes: NameShapes,
}

/// By folded first byte, the lengths (bit `min(len, 63)`) that names of a
/// set can have: a name outside them is in no set of these names, which
/// rules most names out at the cost of one table read.
#[derive(Clone)]
struct NameShapes(Box<[u64; 256]>);

/// The bit of a name's length in [`NameShapes`].
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl NameShapes {
    fn new() -> Self {
        NameShapes(Box::new([0; 256]))
    }

    /// (An empty name needs no entry: [`NameShapes::may_match`] lets it
    /// through.)
    fn add_name(&mut self, name: &str) {
        if let Some(&first) = name.as_bytes().first() {
            self.0[usize::from(fold(first))] |= length_bit(name.len());
        }
    }

    /// A prefix allows its own length and every longer one.
    fn add_prefix(&mut self, prefix: &str) {
        let longer = !(length_bit(prefix.len()) - 1);
        match prefix.as_bytes().first() {
            Some(&first) => self.0[usize::from(fold(first))] |= longer,
            None => self.0.iter_mut().for_each(|s| *s = u64::MAX),
        }
    }

    /// False when `name` is none of the names and has none of the prefixes.
    fn may_match(&self, name: &str) -> bool {
        let shape = name
            .as_bytes()
            .first()
            .map_or(u64::MAX, |&first| self.0[usize::from(fold(first))]);
        shape & length_bit(name.len()) != 0
    }
}

/// What [`same_name`] compares: `_` as `-`, lower case.
fn fold(c: u8) -> u8 {
    if c == b'_' {
        b'-'
    } else {
        c.to_ascii_lowercase()
    }
}

fn folded(name: &str) -> Box<[u8]> {
    name.bytes().map(fold).collect()
}

impl NameSet {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, prefixes: &[&str]) -> NameSet {
        let mut shapes = NameShapes::new();
        let names = names
            .into_iter()
            .inspect(|name| shapes.add_name(name))
            .map(folded)
            .collect();
        prefixes.iter().for_each(|prefix| shapes.add_prefix(prefix));
        NameSet {
            names,
            prefixes: prefixes.iter().map(|p| folded(p)).collect(),
            shapes,
        }
    }

    /// The shapes of the set's names and prefixes.
    fn shapes(&self) -> &NameShapes {
        &self.shapes
    }

    /// Whether `name` is one of the names or starts with one of the prefixes.
    pub fn matches(&self, name: &str) -> bool {
        if !self.shapes.may_match(name) {
            return false;
        }
        let name: smallvec::SmallVec<[u8; 64]> = name.bytes().map(fold).collect();
        self.names.contains(name.as_slice()) || self.prefixes.iter().any(|p| name.starts_with(p))
    }
}

/// A `Cookie` header's value without the named cookies: the value itself
/// when it has none of them, `None` when nothing else is left. Read as
/// bytes: a value that is not UTF-8 loses the named cookies all the same.
pub fn without_cookies<'a>(value: &'a HeaderValue, names: &[&str]) -> Option<Cow<'a, [u8]>> {
    let bytes = value.as_bytes();
    let ours = |pair: &[u8]| {
        let pair = pair.trim_ascii();
        let name = pair
            .iter()
            .position(|&b| b == b'=')
            .map_or(pair, |eq| pair[..eq].trim_ascii());
        names.iter().any(|n| n.as_bytes() == name)
    };
    if !bytes.split(|&b| b == b';').any(ours) {
        return Some(Cow::Borrowed(bytes));
    }
    let kept: Vec<&[u8]> = bytes
        .split(|&b| b == b';')
        .filter(|p| !ours(p))
        .map(<[u8]>::trim_ascii)
        .collect();
    (!kept.is_empty()).then(|| Cow::Owned(kept.join(&b"; "[..])))
}

/// The hop-by-hop headers besides `upgrade` (RFC 9110 7.6.1, and the
/// `keep-alive` and `proxy-connection` of older clients).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Whether a header name, in any case, is one of [`HOP_BY_HOP`].
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| hop.len() == name.len() && hop.as_bytes().eq_ignore_ascii_case(name))
}

/// The names the origin request's headers treat apart, compiled once per
/// configuration: the headers only the gateway may set, the risk headers,
/// and the shapes of every name treated apart from a plain header.
pub struct ForwardingNames {
    /// Headers only the gateway may set ([`owned_headers`]).
    owned: NameSet,
    /// The risk headers: a client must never set its own risk.
    risk: Vec<HeaderName>,
    risk_shapes: NameShapes,
    /// Owned and risk names, hop-by-hop headers, `host`, `cookie`: a name
    /// outside their shapes passes as it is.
    apart: NameShapes,
}

impl ForwardingNames {
    /// `remove`: the configured forgeable headers (`[headers] remove`).
    pub fn new(remove: &[String], risk: &[HeaderName]) -> Self {
        let owned = owned_headers(remove);
        let mut risk_shapes = NameShapes::new();
        risk.iter()
            .for_each(|name| risk_shapes.add_name(name.as_str()));
        let mut apart = owned.shapes().clone();
        let others = [header::HOST, header::COOKIE, header::UPGRADE];
        for name in risk.iter().chain(&others) {
            apart.add_name(name.as_str());
        }
        HOP_BY_HOP.iter().for_each(|name| apart.add_name(name));
        ForwardingNames {
            owned,
            risk: risk.to_vec(),
            risk_shapes,
            apart,
        }
    }

    /// A name none of the others is: the header passes as it is.
    pub fn is_plain(&self, name: &HeaderName) -> bool {
        !self.apart.may_match(name.as_str())
    }

    /// A header only the gateway may set: a client's copy is removed.
    pub fn owns(&self, name: &HeaderName) -> bool {
        self.owned.matches(name.as_str())
    }

    pub fn is_risk(&self, name: &HeaderName) -> bool {
        self.risk_shapes.may_match(name.as_str()) && self.risk.contains(name)
    }

    pub fn risk(&self) -> &[HeaderName] {
        &self.risk
    }
}

/// The most names a message's `Connection` header is read for: every
/// header is compared with each of them, and a client listing thousands
/// would make that a cost per request. Names past them pass as ordinary
/// headers (owned and risk names are removed whatever `Connection` says).
pub const MAX_LISTED: usize = 64;

/// The hop-by-hop headers of one message: the standard ones and those its
/// `Connection` header lists (the first [`MAX_LISTED`]).
pub struct HopByHop {
    listed: smallvec::SmallVec<[HeaderName; 4]>,
    keep_upgrade: bool,
}

impl HopByHop {
    /// With `keep_upgrade`, `Upgrade` is not one of them (a WebSocket
    /// handshake passes through).
    pub fn of(headers: &HeaderMap, keep_upgrade: bool) -> HopByHop {
        let listed = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter(|v| v.to_str().is_ok())
            .flat_map(|v| list_tokens(v.as_bytes()))
            .filter_map(|name| HeaderName::from_bytes(name).ok())
            .filter(|name| name != header::UPGRADE)
            .take(MAX_LISTED)
            .collect();
        HopByHop {
            listed,
            keep_upgrade,
        }
    }

    /// Whether the `Connection` header listed names of its own.
    pub fn lists_names(&self) -> bool {
        !self.listed.is_empty()
    }

    pub fn covers(&self, name: &HeaderName) -> bool {
        is_hop_by_hop(name.as_str().as_bytes())
            || self.listed.contains(name)
            || (!self.keep_upgrade && name == header::UPGRADE)
    }
}

/// The comma-separated elements of a list header (`Connection`,
/// `Transfer-Encoding`), trimmed.
pub fn list_tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Whether the last coding of a `Transfer-Encoding` value is `chunked`:
/// only then does it frame the body (RFC 9112 6.3).
pub fn ends_in_chunked(value: &[u8]) -> bool {
    list_tokens(value)
        .next_back()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
}

/// The protocol a request asks to switch to, when it is an upgrade request
/// (`Connection: upgrade` with an `Upgrade` header).
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<&str> {
    let asks = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok() && list_tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
    });
    if !asks {
        return None;
    }
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok())
}

/// The `Sec-WebSocket-Accept` an origin must answer a WebSocket handshake
/// with; `None` when the request is no valid handshake (RFC 6455 4.1:
/// version 13 and a key of 16 bytes in base64), which is then not tunnelled.
pub fn websocket_accept(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    use sha1::Digest as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let version = headers.get("sec-websocket-version")?.as_bytes();
    let key = headers.get("sec-websocket-key")?.as_bytes().trim_ascii();
    let engine = base64::engine::general_purpose::STANDARD;
    if version.trim_ascii() != b"13" || engine.decode(key).ok()?.len() != 16 {
        return None;
    }
    let digest = sha1::Sha1::new()
        .chain_update(key)
        .chain_update(GUID)
        .finalize();
    Some(engine.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_with_underscores_and_any_case() {
        assert!(same_name("x_wx_risk_rank", "x-wx-risk-rank"));
        assert!(same_name("X-WX-Risk_Rank", "x-wx-risk-rank"));
        assert!(!same_name("x-wx-risk-ranks", "x-wx-risk-rank"));
        assert!(has_prefix("x_portcullis_verdict", "x-portcullis-"));
        assert!(!has_prefix("x-port", "x-portcullis-"));
    }

    #[test]
    fn a_name_set_matches_as_names_are_compared() {
        let names = ["x-real-ip", "X_Forwarded_Host", "forwarded"];
        let prefixes = ["x-wx-", "X_PC-"];
        let set = NameSet::new(names, &prefixes);
        for name in [
            "x-real-ip",
            "x_real_ip",
            "x-real-ips",
            "x-forwarded-host",
            "x_forwarded-host",
            "forwarded",
            "x-forwarded",
            "x-wx-risk-rank",
            "x_wx_",
            "x-wx",
            "x-pc-device",
            "x_pc_device",
            "accept",
            "",
        ] {
            let listed = names.iter().any(|w| same_name(name, w))
                || prefixes.iter().any(|p| has_prefix(name, p));
            assert_eq!(set.matches(name), listed, "{name}");
        }
        let long = "x-a".repeat(30);
        let set = NameSet::new([long.as_str()], &["Y".repeat(70).as_str()]);
        assert!(set.matches(&long.to_uppercase()));
        assert!(!set.matches(&long[..89]));
        assert!(set.matches(&"y".repeat(90)));
        assert!(!set.matches(&"y".repeat(69)));
        assert!(NameSet::new([], &[""]).matches("anything"));
        assert!(NameSet::new([""], &[]).matches(""));
    }

    #[test]
    fn a_websocket_handshake_has_one_accept_value() {
        let mut h = HeaderMap::new();
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            websocket_accept(&h).as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        h.insert("sec-websocket-key", HeaderValue::from_static("c2hvcnQ="));
        assert_eq!(websocket_accept(&h), None, "a key of 5 bytes");
        h.remove("sec-websocket-key");
        assert_eq!(websocket_accept(&h), None, "no key");
    }

    #[test]
    fn gateway_cookies_are_removed_and_others_kept() {
        let names = ["pc_clearance", "pc_device"];
        let mixed = HeaderValue::from_static("a=1; pc_clearance=x;b=2");
        assert_eq!(
            without_cookies(&mixed, &names).as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        let only_ours = HeaderValue::from_static("pc_device=d");
        assert_eq!(without_cookies(&only_ours, &names), None);
        let none_of_ours = HeaderValue::from_static("pc_clearance_x=1; sid=2");
        assert!(matches!(
            without_cookies(&none_of_ours, &names),
            Some(Cow::Borrowed(b"pc_clearance_x=1; sid=2"))
        ));
        // A byte that is not UTF-8 elsewhere in the header hides nothing.
        let forged = HeaderValue::from_bytes(b"pc_clearance=forged\xff; a=b").expect("opaque");
        assert_eq!(
            without_cookies(&forged, &names).as_deref(),
            Some(&b"a=b"[..])
        );
    }

    #[test]
    fn hop_by_hop_and_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        let hop = HopByHop::of(&h, false);
        for name in [
            "connection",
            "keep-alive",
            "te",
            "transfer-encoding",
            "x-secret",
            "upgrade",
        ] {
            assert!(hop.covers(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-length", "x-secrets", "cookie"] {
            assert!(!hop.covers(&HeaderName::from_static(name)), "{name}");
        }
        assert!(!HopByHop::of(&h, true).covers(&header::UPGRADE));
        let many: Vec<String> = (0..10_000).map(|i| format!("x-{i}")).collect();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_str(&many.join(", ")).unwrap(),
        );
        let hop = HopByHop::of(&h, false);
        assert_eq!(hop.listed.len(), MAX_LISTED);
        assert!(hop.covers(&HeaderName::from_static("x-0")));
        assert!(is_hop_by_hop(b"Transfer-Encoding") && !is_hop_by_hop(b"trailers"));
    }

    #[test]
    fn list_elements_are_trimmed_and_only_the_last_coding_frames() {
        let tokens: Vec<&[u8]> = list_tokens(b" close ,\tX-A,").collect();
        assert_eq!(tokens, [&b"close"[..], b"X-A", b""]);
        assert!(ends_in_chunked(b"gzip, Chunked "));
        assert!(!ends_in_chunked(b"chunked, gzip"));
        assert!(!ends_in_chunked(b"xchunked"));
        assert!(!ends_in_chunked(b""));
    }

    #[test]
    fn upgrades_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None, "no Connection: upgrade");
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_protocol(&h), Some("websocket"));
    }
}
