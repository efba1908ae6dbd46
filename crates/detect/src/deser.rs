//! Serialized objects: Java (`rO0AB`, `aced0005`), PHP (`O:8:"Foo":1:{`),
//! .NET (BinaryFormatter, Json.NET `$type`, ObjectDataProvider), fastjson
//! `@type`, Python pickle and YAML object tags.

use crate::text::{Hits, Text};
use crate::{Family, score};

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let s = t.s.as_bytes();
    let b = t.bytes();
    let find_cs = |n: &[u8]| crate::text::find_bytes(s, n);
    let java = if t.may_contain(b"ro0ab") {
        find_cs(b"rO0AB")
    } else {
        None
    };
    let dotnet = if t.may_contain(b"aed/") {
        find_cs(b"AAEAAAD/////")
    } else {
        None
    };
    if let Some(p) = java.or(dotnet) {
        hits.add(
            Family::Deserialization,
            score::STRONG,
            "deser.serialized-base64",
            p,
        );
    }
    if let Some(p) = t.find("aced0005") {
        hits.add(Family::Deserialization, score::STRONG, "deser.java-hex", p);
    }
    if let Some(p) = t.has(b':').then(|| php_object(s)).flatten() {
        hits.add(
            Family::Deserialization,
            score::STRONG,
            "deser.php-object",
            p,
        );
    }
    let Some(ac) = GADGET_AC.as_ref() else {
        return;
    };
    if !t.has_any(b".$@!\n") {
        return;
    }
    for m in ac.find_iter(b).take(8) {
        let sc = GADGETS[m.pattern().as_usize()].1;
        hits.add(Family::Deserialization, sc, "deser.gadget", m.start());
    }
}

const GADGETS: &[(&str, u32)] = &[
    ("objectdataprovider", score::STRONG),
    ("system.windows.data", score::STRONG),
    ("system.diagnostics.process", score::STRONG),
    ("\"$type\"", score::MEDIUM),
    ("com.sun.rowset.jdbcrowsetimpl", score::STRONG),
    ("\"@type\"", score::MEDIUM),
    ("!!python/object", score::STRONG),
    ("!!javax.", score::STRONG),
    ("!!java.", score::STRONG),
    ("cposix\nsystem", score::STRONG),
    ("cos\nsystem", score::STRONG),
    ("java.util.priorityqueue", score::MEDIUM + 1),
    ("org.apache.commons.collections", score::STRONG),
];

static GADGET_AC: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| crate::text::dfa(GADGETS.iter().map(|g| g.0)));

/// `O:<digits>:"<class>":<digits>:{` or `a:<digits>:{` followed by `s:<digits>:"`.
fn php_object(s: &[u8]) -> Option<usize> {
    for p in memchr::memchr_iter(b':', s).take(512) {
        if p == 0 {
            continue;
        }
        let kind = s[p - 1];
        if !matches!(kind, b'O' | b'C' | b'a') || (p >= 2 && s[p - 2].is_ascii_alphanumeric()) {
            continue;
        }
        let digits = s[p + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || s.get(p + 1 + digits) != Some(&b':') {
            continue;
        }
        let rest = &s[p + 2 + digits..];
        let ok = if kind == b'a' {
            rest.starts_with(b"{")
                && crate::text::find_bytes(&rest[..rest.len().min(64)], b"s:").is_some()
        } else {
            rest.starts_with(b"\"")
                && crate::text::find_bytes(&rest[..rest.len().min(256)], b"\":").is_some()
        };
        if ok {
            return Some(p - 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        for (s, want) in [
            ("rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZQ", true),
            ("O:8:\"stdClass\":1:{s:1:\"a\";i:1;}", true),
            ("a:2:{i:0;s:1:\"a\";}", true),
            (
                "{\"$type\":\"System.Windows.Data.ObjectDataProvider, PresentationFramework\"}",
                true,
            ),
            ("Ratio 3:4:5 and O:1", false),
            ("a:1 b:2", false),
        ] {
            let lower = s.to_ascii_lowercase();
            let mut h = Hits::default();
            check(&Text::new(s, &lower), &mut h);
            assert_eq!(
                h.best(Family::Deserialization) >= score::MEDIUM,
                want,
                "{s}"
            );
        }
    }
}
