//! The compiled form of an expression and its evaluation against one request.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::parse::Cmp;
use crate::request;

/// A request field an expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Method,
    Host,
    Path,
    /// The raw query string, without the `?`.
    Query,
    QueryParam(Box<[u8]>),
    /// A query parameter, else a field of a url-encoded form body.
    Arg(Box<[u8]>),
    /// Lowercased name.
    Header(Box<str>),
    Cookie(Box<[u8]>),
    Ip,
    Body,
    UserAgent,
}

/// What is asked of a field's value.
#[derive(Debug)]
pub(crate) enum Check {
    /// Equality; the flag folds ASCII case (host names).
    Eq(Box<[u8]>, bool),
    Contains(Box<memchr::memmem::Finder<'static>>),
    IContains(aho_corasick::AhoCorasick),
    StartsWith(Box<[u8]>, bool),
    EndsWith(Box<[u8]>, bool),
    Matches(regex::bytes::Regex),
    In(Vec<Box<[u8]>>, bool),
    /// The value (the client address, or a field holding an address) in one of these networks.
    InCidr(Vec<IpNet>),
    IpEq(IpAddr),
    Len(Cmp, u64),
}

#[derive(Debug)]
pub(crate) struct Test {
    pub field: Field,
    pub check: Check,
}

#[derive(Debug)]
pub(crate) enum Node {
    Const(bool),
    Not(Box<Node>),
    All(Vec<Node>),
    Any(Vec<Node>),
    Test(Box<Test>),
}

/// One request as the rules see it. Build it once per request and evaluate
/// every rule against it: the normalised path is computed at most once.
#[derive(Debug)]
pub struct Request<'a> {
    method: &'a str,
    host: &'a str,
    raw_path: &'a str,
    query: &'a str,
    headers: &'a [(&'a str, &'a [u8])],
    ip: IpAddr,
    body: &'a [u8],
    path: OnceCell<Cow<'a, [u8]>>,
}

impl<'a> Request<'a> {
    /// `target` is `path?query` as received; `host` is the host name (a
    /// port is dropped); header names are lowercase; `body` is the part of
    /// the body that was read.
    pub fn new(
        method: &'a str,
        host: &'a str,
        target: &'a str,
        headers: &'a [(&'a str, &'a [u8])],
        ip: IpAddr,
        body: &'a [u8],
    ) -> Self {
        let (raw_path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method,
            host: request::strip_port(host),
            raw_path,
            query,
            headers,
            ip,
            body,
            path: OnceCell::new(),
        }
    }

    /// The path as rules see it: percent-decoded, with empty, `.` and `..`
    /// segments resolved, so `/api//%61dmin` is `/api/admin`.
    pub fn path(&self) -> &[u8] {
        self.path
            .get_or_init(|| request::normalise_path(self.raw_path.as_bytes()))
    }

    fn header(&self, name: &str) -> &'a [u8] {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[][..], |(_, v)| *v)
    }

    fn value(&self, field: &Field) -> Cow<'_, [u8]> {
        match field {
            Field::Method => Cow::Borrowed(self.method.as_bytes()),
            Field::Host => Cow::Borrowed(self.host.as_bytes()),
            Field::Path => Cow::Borrowed(self.path()),
            Field::Query => Cow::Borrowed(self.query.as_bytes()),
            Field::QueryParam(name) => {
                request::form_value(self.query.as_bytes(), name).unwrap_or_default()
            }
            Field::Arg(name) => request::form_value(self.query.as_bytes(), name)
                .or_else(|| {
                    request::is_form(self.header("content-type"))
                        .then(|| request::form_value(self.body, name))
                        .flatten()
                })
                .unwrap_or_default(),
            Field::Header(name) => Cow::Borrowed(self.header(name)),
            Field::Cookie(name) => Cow::Borrowed(
                self.headers
                    .iter()
                    .filter(|(n, _)| *n == "cookie")
                    .find_map(|(_, v)| request::cookie(v, name))
                    .unwrap_or_default(),
            ),
            Field::Body => Cow::Borrowed(self.body),
            Field::UserAgent => Cow::Borrowed(self.header("user-agent")),
            // Only the ip checks read the address, and they read it typed.
            Field::Ip => Cow::Borrowed(&[]),
        }
    }
}

impl Node {
    pub fn eval(&self, req: &Request) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::Not(n) => !n.eval(req),
            Node::All(items) => items.iter().all(|n| n.eval(req)),
            Node::Any(items) => items.iter().any(|n| n.eval(req)),
            Node::Test(test) => test.eval(req),
        }
    }
}

impl Test {
    fn eval(&self, req: &Request) -> bool {
        if self.field == Field::Ip {
            return match &self.check {
                Check::IpEq(ip) => canonical(req.ip) == canonical(*ip),
                Check::InCidr(nets) => in_nets(nets, req.ip),
                // The parser builds no other check for ip.
                _ => false,
            };
        }
        let value = req.value(&self.field);
        let v: &[u8] = &value;
        match &self.check {
            Check::Eq(lit, fold) => eq(v, lit, *fold),
            Check::Contains(finder) => finder.find(v).is_some(),
            Check::IContains(ac) => ac.is_match(v),
            Check::StartsWith(lit, fold) => v.get(..lit.len()).is_some_and(|p| eq(p, lit, *fold)),
            Check::EndsWith(lit, fold) => v
                .len()
                .checked_sub(lit.len())
                .is_some_and(|start| eq(&v[start..], lit, *fold)),
            Check::Matches(re) => re.is_match(v),
            Check::In(list, fold) => list.iter().any(|lit| eq(v, lit, *fold)),
            Check::InCidr(nets) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| in_nets(nets, ip)),
            Check::IpEq(_) => false,
            Check::Len(cmp, n) => cmp.holds(v.len() as u64, *n),
        }
    }
}

fn eq(a: &[u8], b: &[u8], fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, from a dual-stack
/// listener) is the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_nets(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|net| net.contains(&ip))
}
