//! XML external entities: DOCTYPE with an external id or internal subset,
//! ENTITY declarations with SYSTEM/PUBLIC, parameter entities, XInclude,
//! remote schema includes, and UTF-7 encoded XML.

use crate::text::{Hits, Text};
use crate::{Family, score};

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    if !t.has(b'<') && t.find("+adw").is_none() {
        return;
    }
    if let Some(p) = t.find("<!entity") {
        let window = &b[p..(p + 1024).min(b.len())];
        let external = has(window, b"system") || has(window, b"public");
        let param = window[8..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'%');
        let sc = if external || param {
            score::STRONG
        } else {
            score::MEDIUM + 1
        };
        hits.add(Family::Xxe, sc, "xxe.entity", p);
    }
    if let Some(p) = t.find("<!doctype") {
        let end = b[p..]
            .iter()
            .position(|&c| c == b'>' || c == b'[')
            .map_or(b.len(), |e| p + e);
        let decl = &b[p..end];
        if has(decl, b" system") || has(decl, b" public") {
            hits.add(Family::Xxe, score::STRONG, "xxe.external-dtd", p);
        } else if b.get(end) == Some(&b'[') {
            hits.add(Family::Xxe, score::MEDIUM, "xxe.internal-subset", p);
        }
    }
    if let Some(p) = t
        .find("xi:include")
        .or_else(|| t.find("w3.org/2001/xinclude"))
    {
        hits.add(Family::Xxe, score::STRONG, "xxe.xinclude", p);
    }
    if let Some(p) = t.find("<xs:include").or_else(|| t.find("<xs:import")) {
        hits.add(Family::Xxe, score::MEDIUM + 1, "xxe.schema-include", p);
    }
    if let Some(p) = t.find("xsi:schemalocation") {
        hits.add(Family::Xxe, score::MEDIUM, "xxe.schema-location", p);
    }
    if let Some(p) = t
        .find("encoding=\"utf-7\"")
        .or_else(|| t.find("encoding='utf-7'"))
        .or_else(|| t.find("+adwaiq-"))
    {
        hits.add(Family::Xxe, score::STRONG, "xxe.utf7", p);
    }
}

fn has(h: &[u8], n: &[u8]) -> bool {
    crate::text::find_bytes(h, n).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, &mut h);
        h.best(Family::Xxe)
    }

    #[test]
    fn attacks() {
        for a in [
            "<!DOCTYPE x SYSTEM \"//x/x\" > <x>a</x>",
            "<!DOCTYPE x [ <!ENTITY % y SYSTEM \"//y/y\" > %y; ]><x>a</x>",
            "<!DOCTYPE foo [ <!ELEMENT foo ANY ><!ENTITY xxe SYSTEM \"expect://id\">]><foo>&xxe;</foo>",
            "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"><xs:include namespace=\"http://x/\"/></xs:schema>",
            "<?xml version=\"1.0\" encoding=\"UTF-7\"?>\n+ADwAIQ-DOCTYPE foo+AFs",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "<!DOCTYPE html><html></html>",
            "<a>system</a>",
            "<?xml version=\"1.0\"?><r>1</r>",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
