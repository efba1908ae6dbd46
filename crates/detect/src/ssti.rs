//! Server-side template injection: expressions in `{{ }}`, `${ }`, `#{ }`,
//! `<%= %>` that compute (arithmetic) or reach objects (dunder attributes,
//! calls), and FreeMarker / Velocity directives.

use crate::text::{Hits, Text};
use crate::{Family, score};

const OBJECT_WORDS: &[&[u8]] = &[
    b"__",
    b"config",
    b"self",
    b"request",
    b"lipsum",
    b"cycler",
    b"joiner",
    b"namespace",
    b"|attr",
    b".constructor",
    b"range(",
    b"getclass",
    b"runtime",
    b"class.",
    b"popen",
    b"import",
];

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    for (open, close, rule) in [
        (&b"{{"[..], &b"}}"[..], "ssti.double-brace"),
        (b"${", b"}", "ssti.dollar-brace"),
        (b"#{", b"}", "ssti.hash-brace"),
        (b"*{", b"}", "ssti.star-brace"),
        (b"<%=", b"%>", "ssti.erb"),
    ] {
        if !t.may_contain(open) {
            continue;
        }
        for p in crate::text::find_iter(b, open).take(32) {
            let inner_start = p + open.len();
            let limit = (inner_start + 256).min(b.len());
            let window = &b[inner_start..limit];
            let inner = match crate::text::find_bytes(window, close) {
                Some(e) => &window[..e],
                None => window,
            };
            if let Some(sc) = judge_expr(inner, open == b"<%=") {
                hits.add(Family::Ssti, sc, rule, p);
            }
        }
    }
    for (needle, rule) in [
        ("<#assign", "ssti.freemarker"),
        ("freemarker.template", "ssti.freemarker"),
        ("?new()", "ssti.freemarker"),
        ("#set($", "ssti.velocity"),
        ("$class.inspect", "ssti.velocity"),
        ("{php}", "ssti.smarty"),
        ("{system(", "ssti.smarty"),
    ] {
        if let Some(p) = t.find(needle) {
            hits.add(Family::Ssti, score::STRONG, rule, p);
        }
    }
}

fn judge_expr(inner: &[u8], erb: bool) -> Option<u32> {
    if inner.is_empty() || inner.starts_with(b"jndi:") || inner.starts_with(b"@") {
        return None;
    }
    if arithmetic(inner) {
        return Some(score::STRONG);
    }
    if OBJECT_WORDS
        .iter()
        .any(|w| crate::text::find_bytes(inner, w).is_some())
    {
        return Some(score::STRONG);
    }
    let call = inner.contains(&b'(') && inner.contains(&b')');
    if call || erb {
        return Some(score::MEDIUM);
    }
    None
}

/// `7*7`, `1337 * 1338`, `7*'7'`: two operands around an operator.
fn arithmetic(s: &[u8]) -> bool {
    let t: Vec<u8> = s
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    t.windows(3).any(|w| {
        w[0].is_ascii_digit()
            && matches!(w[1], b'*' | b'+' | b'/' | b'-' | b'%')
            && (w[2].is_ascii_digit() || w[2] == b'\'' || w[2] == b'"')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, &mut h);
        h.best(Family::Ssti)
    }

    #[test]
    fn attacks() {
        for a in [
            "<#assign ex = \"freemarker.template.utility.Execute\"?new()>${ ex(\"id\")}",
            "aaaa'+#{16*8787}+'bbb",
            "{{1337*1338}}",
            "{{config.__class__}}",
            "${7*7}",
            "<%= 7*7 %>",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "The standard for the <$ tag is to enclose text",
            "Hello {{name}}",
            "costs ${price}",
            "}I would like to request the /cc serviceCode with the parameter: serviceCode|{}",
            "[Host: type: {[",
            "{\"a\": {\"b\": 1}}",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
