//! NoSQL (MongoDB) injection: query operators in keys or text (`$ne`,
//! `$where`, `a[$gt]=`), `db.coll.method(` and JavaScript statements
//! aimed at `$where` evaluation.

use crate::text::{Hits, Text, is_ident};
use crate::{Family, score};

const OPERATORS: &[&[u8]] = &[
    b"where",
    b"ne",
    b"gt",
    b"gte",
    b"lt",
    b"lte",
    b"in",
    b"nin",
    b"regex",
    b"exists",
    b"or",
    b"and",
    b"nor",
    b"not",
    b"expr",
    b"elemmatch",
    b"function",
    b"accumulator",
    b"eq",
    b"all",
    b"size",
    b"type",
    b"mod",
    b"text",
    b"jsonschema",
];

/// Score of a key or operator name like `$ne`, if it is a Mongo operator.
pub(crate) fn operator_score(name: &[u8]) -> Option<u32> {
    let op = name.strip_prefix(b"$")?;
    let lower: Vec<u8> = op.iter().map(u8::to_ascii_lowercase).collect();
    if !OPERATORS.contains(&lower.as_slice()) {
        return None;
    }
    Some(match lower.as_slice() {
        b"where" | b"function" | b"accumulator" | b"expr" => score::STRONG,
        _ => score::MEDIUM + 1,
    })
}

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    for p in memchr::memchr_iter(b'$', b).take(128) {
        if p > 0 && is_ident(b[p - 1]) {
            continue;
        }
        let mut e = p + 1;
        while e < b.len() && b[e].is_ascii_alphabetic() {
            e += 1;
        }
        let Some(sc) = operator_score(&b[p..e]) else {
            continue;
        };
        // `$ne]`, `$ne":`, `$ne:`, `'$ne':`
        let mut k = e;
        if matches!(b.get(k), Some(b'"' | b'\'')) {
            k += 1;
        }
        while k < b.len() && b[k] == b' ' {
            k += 1;
        }
        if matches!(b.get(k), Some(b':' | b']')) {
            hits.add(Family::Nosql, sc, "nosql.operator", p);
        }
    }
    if let Some(p) = t.may_contain(b"db.(").then(|| db_call(b)).flatten() {
        hits.add(Family::Nosql, score::STRONG, "nosql.db-call", p);
    }
    js_statements(t, hits);
}

/// `db.<collection>.<method>(`
fn db_call(b: &[u8]) -> Option<usize> {
    for p in crate::text::find_iter(b, b"db.").take(32) {
        if p > 0 && is_ident(b[p - 1]) {
            continue;
        }
        let mut i = p + 3;
        let c1 = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i == c1 || b.get(i) != Some(&b'.') {
            continue;
        }
        i += 1;
        let m1 = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i > m1 && b.get(i) == Some(&b'(') {
            return Some(p);
        }
    }
    None
}

const JS_NEEDLES: &[&str] = &[
    "new date(",
    "do{",
    "do {",
    "}while(",
    "} while(",
    "this.",
    "return ",
    "sleep(",
    "function(",
    "=>",
];

static JS_AC: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| crate::text::dfa(JS_NEEDLES));

/// Several JavaScript statement shapes together.
fn js_statements(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    if !t.has_any(b"({=.>") {
        return;
    }
    let mut n = 0;
    let mut first = usize::MAX;
    let mut seen = 0u32;
    if let Some(ac) = JS_AC.as_ref() {
        for m in ac.find_overlapping_iter(b).take(64) {
            let bit = 1u32 << m.pattern().as_usize();
            if seen & bit == 0 {
                seen |= bit;
                n += 1;
                first = first.min(m.start());
            }
        }
    }
    for kw in ["var ", "let ", "const "]
        .into_iter()
        .filter(|k| t.may_contain(k.as_bytes()))
    {
        for p in crate::text::find_iter(b, kw.as_bytes()).take(8) {
            if p > 0 && is_ident(b[p - 1]) {
                continue;
            }
            let i = p + kw.len();
            let e = crate::text::ident_end(b, i);
            let k = crate::text::skip_ws(b, e);
            if e > i && b.get(k) == Some(&b'=') && b.get(k + 1) != Some(&b'=') {
                n += 1;
                first = first.min(p);
                break;
            }
        }
    }
    if n >= 2 {
        let breakout = b
            .iter()
            .take(first.min(b.len()))
            .any(|&c| matches!(c, b';' | b'\'' | b'"'));
        // Script source is data until it leaves the string it is put in
        // (`'; return true; var x='`): without a way out it is a hint.
        let sc = match (breakout, n >= 3) {
            (true, true) => score::STRONG,
            (true, false) => score::MEDIUM,
            (false, _) => score::WEAK,
        };
        hits.add(Family::Nosql, sc, "nosql.js-injection", first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, &mut h);
        h.best(Family::Nosql)
    }

    #[test]
    fn attacks() {
        for a in [
            "db.injection.insert({success:1});",
            "true, $where: '99 == 88'",
            "', $or: [ {}, { 'order':'order",
            ";var date = new Date(); do{curDate = new Date();}while(curDate-date",
            "0;var date=new Date(); do{curDate = new Date();}while(curDate-date<10000)",
            "user[$ne]=x",
            "{\"password\": {\"$ne\": null}}",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "DELETE 75oBC$",
            "costs $100 or $gt",
            "I would like to keep-alive my connection",
            "let me know when you return",
            "the db.example.com host",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
