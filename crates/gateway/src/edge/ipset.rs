//! CIDR sets with lookups that do not slow down as lists grow.
//!
//! Every network becomes an inclusive address range; ranges are sorted and
//! merged once, so a lookup is one binary search: about 20 comparisons for a
//! million entries, with no per-lookup allocation.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Default, Clone)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    pub fn from_nets<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> IpSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        IpSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Parses a feed file: one address or CIDR per line, `#` and `;` start comments.
    /// Returns the set and the number of lines that were not addresses.
    pub fn parse_feed(text: &str) -> (IpSet, usize) {
        let (nets, bad) = parse_feed_nets(text);
        (IpSet::from_nets(&nets), bad)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Number of merged ranges.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// An address or CIDR, as written in lists and feeds.
/// The networks of a feed file (see [`IpSet::parse_feed`]) and the number
/// of lines that were not addresses.
pub fn parse_feed_nets(text: &str) -> (Vec<IpNet>, usize) {
    let mut nets = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let entry = line
            .split(['#', ';'])
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .next();
        let Some(entry) = entry else { continue };
        match parse_net(entry) {
            Some(net) => nets.push(net),
            None => bad += 1,
        }
    }
    (nets, bad)
}

pub fn parse_net(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are looked up as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn merge<T: Ord + Copy + One>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_inc() => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged.shrink_to_fit();
    merged
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], addr: T) -> bool {
    // Index of the first range starting after addr; the one before may hold it.
    let i = ranges.partition_point(|&(start, _)| start <= addr);
    i > 0 && ranges[i - 1].1 >= addr
}

trait One {
    fn saturating_inc(self) -> Self;
}

impl One for u32 {
    fn saturating_inc(self) -> Self {
        self.saturating_add(1)
    }
}

impl One for u128 {
    fn saturating_inc(self) -> Self {
        self.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[&str]) -> IpSet {
        let nets: Vec<IpNet> = entries.iter().filter_map(|e| parse_net(e)).collect();
        IpSet::from_nets(&nets)
    }

    #[test]
    fn v4_and_v6_membership() {
        let s = set(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]);
        assert!(s.contains("10.255.0.1".parse().unwrap()));
        assert!(s.contains("192.168.1.7".parse().unwrap()));
        assert!(!s.contains("192.168.1.8".parse().unwrap()));
        assert!(!s.contains("11.0.0.0".parse().unwrap()));
        assert!(s.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!s.contains("2001:db9::1".parse().unwrap()));
        assert!(s.contains("::ffff:10.1.2.3".parse().unwrap()), "mapped v4");
    }

    #[test]
    fn adjacent_and_nested_ranges_merge() {
        let s = set(&["10.0.0.0/25", "10.0.0.128/25", "10.0.0.5", "0.0.0.0/0"]);
        assert_eq!(s.len(), 1);
        assert!(s.contains("255.255.255.255".parse().unwrap()));
    }

    #[test]
    fn feed_parsing_skips_comments_and_counts_junk() {
        let (s, bad) = IpSet::parse_feed("# drop list\n1.2.3.0/24 ; SBL1\n\nnot-an-ip\n5.6.7.8\n");
        assert_eq!(bad, 1);
        assert!(s.contains("1.2.3.200".parse().unwrap()));
        assert!(s.contains("5.6.7.8".parse().unwrap()));
    }

    #[test]
    fn large_sets_agree_with_a_linear_scan() {
        let nets: Vec<IpNet> = (0..200_000u32)
            .map(|i| IpNet::from(IpAddr::from((i.wrapping_mul(2_654_435_761)).to_be_bytes())))
            .collect();
        let s = IpSet::from_nets(&nets);
        for i in 0..2_000u32 {
            let probe = IpAddr::from(i.wrapping_mul(2_654_435_761).to_be_bytes());
            assert!(s.contains(probe));
            let miss = IpAddr::from(i.wrapping_mul(2_654_435_761).wrapping_add(1).to_be_bytes());
            assert_eq!(s.contains(miss), nets.iter().any(|n| n.contains(&miss)));
        }
    }
}
