//! The client address: the socket peer, or what a trusted proxy says.

use std::net::IpAddr;

use http::HeaderMap;

use crate::edge::ipset::{IpSet, canonical};

/// An address as text, on the stack. The standard formatting goes through
/// the formatter's padding machinery, about 1,300 instructions for an IPv4
/// address, and every request formats its client's address at least twice.
pub struct IpText {
    buf: [u8; 46],
    len: usize,
}

impl IpText {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }
}

pub fn ip_text(ip: IpAddr) -> IpText {
    let mut text = IpText {
        buf: [0; 46],
        len: 0,
    };
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b'.');
                }
                if octet >= 100 {
                    text.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    text.push(b'0' + octet / 10 % 10);
                }
                text.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let mut rest = &mut text.buf[..];
            // The longest IPv6 text (45 bytes) fits.
            let _ = write!(rest, "{v6}");
            let left = rest.len();
            text.len = text.buf.len() - left;
        }
    }
    text
}

/// Where forwarded addresses are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
    /// A header holding one address, such as `x-real-ip`.
    Single(http::HeaderName),
}

impl ForwardedHeader {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(ForwardedHeader::XForwardedFor),
            "forwarded" => Some(ForwardedHeader::Forwarded),
            other => http::HeaderName::from_bytes(other.as_bytes())
                .ok()
                .map(ForwardedHeader::Single),
        }
    }
}

/// The client address of a request from `peer`. Forwarded headers count only
/// when the peer is a trusted proxy; then the right-most address that is not
/// itself a trusted proxy is the client (left-most entries are client-written).
/// A hop that names no address (`for=unknown`, an obfuscated `_id`, junk)
/// ends the walk at the peer: what lies left of it is the client's own word.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &IpSet,
    source: &ForwardedHeader,
) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    match source {
        ForwardedHeader::XForwardedFor => {
            for value in headers.get_all("x-forwarded-for") {
                let Ok(text) = value.to_str() else {
                    return peer;
                };
                // Empty elements (`a,,b`) name no hop.
                let elements = text.split(',').map(str::trim).filter(|s| !s.is_empty());
                hops.extend(elements.map(parse_addr));
            }
        }
        ForwardedHeader::Forwarded => {
            for value in headers.get_all(http::header::FORWARDED) {
                let Ok(text) = value.to_str() else {
                    return peer;
                };
                hops.extend(text.split(',').filter_map(forwarded_for));
            }
        }
        ForwardedHeader::Single(name) => {
            if let Some(addr) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| parse_addr(s.trim()))
            {
                return canonical(addr);
            }
        }
    }
    hops.into_iter()
        .rev()
        .map(|hop| hop.map(canonical))
        .find(|hop| hop.is_none_or(|ip| !trusted.contains(ip)))
        .flatten()
        .unwrap_or(peer)
}

/// `for=` of one `Forwarded` element: `None` when the element has none (it
/// claims no hop), `Some(None)` when it names no address (`unknown`, an
/// obfuscated `_id`).
fn forwarded_for(element: &str) -> Option<Option<IpAddr>> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_addr(value.trim().trim_matches('"')))
    })
}

/// An address as proxies write it: bare, `[v6]`, `[v6]:port` or `v4:port`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(host, _)| host.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_text_read_as_the_standard_formatting() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.100.9.255",
            "255.255.255.255",
            "::",
            "2001:db8::1",
            "::ffff:192.168.1.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip).as_str(), ip.to_string());
        }
    }

    use crate::edge::ipset::parse_net;
    use http::HeaderValue;

    fn trusted() -> IpSet {
        let nets: Vec<_> = ["10.0.0.0/8"].iter().filter_map(|s| parse_net(s)).collect();
        IpSet::from_nets(&nets)
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn untrusted_peer_cannot_choose_its_address() {
        let h = headers("x-forwarded-for", "1.1.1.1");
        let ip = client_ip(
            "8.8.8.8".parse().unwrap(),
            &h,
            &trusted(),
            &ForwardedHeader::XForwardedFor,
        );
        assert_eq!(ip, "8.8.8.8".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted_hop() {
        let h = headers("x-forwarded-for", "6.6.6.6, 2.2.2.2, 10.1.1.1");
        let ip = client_ip(
            "10.0.0.1".parse().unwrap(),
            &h,
            &trusted(),
            &ForwardedHeader::XForwardedFor,
        );
        assert_eq!(ip, "2.2.2.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_and_single_headers() {
        let h = headers(
            "forwarded",
            "for=\"[2001:db8::1]:443\";proto=https, for=10.2.2.2",
        );
        let ip = client_ip(
            "10.0.0.1".parse().unwrap(),
            &h,
            &trusted(),
            &ForwardedHeader::Forwarded,
        );
        assert_eq!(ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        let h = headers("x-real-ip", "3.3.3.3");
        let source = ForwardedHeader::parse("X-Real-IP").unwrap();
        let ip = client_ip("10.0.0.1".parse().unwrap(), &h, &trusted(), &source);
        assert_eq!(ip, "3.3.3.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_hop_without_an_address_leaves_the_client_unknown() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        for (name, value) in [
            ("forwarded", "for=1.2.3.4, for=unknown"),
            ("forwarded", "for=1.2.3.4, for=\"_hidden\""),
            ("forwarded", "for=1.2.3.4, for=unknown, for=10.3.3.3"),
            ("x-forwarded-for", "1.2.3.4, unknown"),
            ("x-forwarded-for", "1.2.3.4, junk, 10.3.3.3"),
        ] {
            let source = ForwardedHeader::parse(name).unwrap();
            let ip = client_ip(peer, &headers(name, value), &trusted(), &source);
            assert_eq!(ip, peer, "{name}: {value}");
        }
        // An element without `for`, or an empty one, claims no hop.
        let client: IpAddr = "2.2.2.2".parse().unwrap();
        for (name, value) in [
            ("forwarded", "for=2.2.2.2, proto=https"),
            ("x-forwarded-for", "2.2.2.2, , 10.3.3.3,"),
        ] {
            let source = ForwardedHeader::parse(name).unwrap();
            let ip = client_ip(peer, &headers(name, value), &trusted(), &source);
            assert_eq!(ip, client, "{name}: {value}");
        }
    }
}
