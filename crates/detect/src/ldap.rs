//! LDAP filter injection: composite filters `(&(`, `(|(`, `(!(`, closing
//! and reopening `*)(`, presence tests on `objectClass`, and extensible
//! match rules (`attr:2.5.13.18:=`).

use crate::text::{Hits, Text};
use crate::{Family, score};

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    if memchr::memchr(b'=', b).is_none() {
        return;
    }
    if memchr::memchr(b'(', b).is_some() {
        for needle in ["(&(", "(|(", "(!(", ")(|", ")(&", ")(!", "*)(", "*(|("] {
            if let Some(p) = t.find(needle) {
                hits.add(Family::Ldap, score::STRONG, "ldap.filter", p);
                return;
            }
        }
        if let Some(p) = t.find("objectclass=*") {
            hits.add(Family::Ldap, score::STRONG, "ldap.objectclass", p);
            return;
        }
    }
    if let Some(p) = extensible_match(b) {
        hits.add(Family::Ldap, score::MEDIUM + 1, "ldap.extensible-match", p);
    }
}

/// `attr:1.2.3:=` or `attr:dn:=`.
fn extensible_match(b: &[u8]) -> Option<usize> {
    for p in crate::text::find_iter(b, b":=").take(16) {
        let mut k = p;
        while k > 0 && (b[k - 1].is_ascii_digit() || b[k - 1] == b'.') {
            k -= 1;
        }
        let oid = &b[k..p];
        let is_oid = oid.iter().filter(|&&c| c == b'.').count() >= 2;
        let is_dn = b[..p].ends_with(b":dn");
        if (is_oid && k > 0 && b[k - 1] == b':') || is_dn {
            return Some(k);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let mut h = Hits::default();
        check(&Text::new(s, &lower), &mut h);
        h.best(Family::Ldap)
    }

    #[test]
    fn filters() {
        for a in [
            "(&(uid=admin)(!(&(1=0)(userPassword=q))))",
            "*(|(objectclass=*))",
            "userPassword:2.5.13.18:=123",
            "admin*)(uid=*",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
        for b in [
            ")I would like to request information about the address: (#)saddr",
            "a := b",
            "f(x)=(y)",
            "x=(1)(2)",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
