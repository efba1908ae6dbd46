//! Code injection: calls of dangerous functions in PHP, Python, Java, Node
//! and classic ASP (also once string concatenation is removed), PHP open
//! tags and `${@...}`, OGNL/SpEL, prototype pollution, and GraphQL
//! introspection queries.

use crate::text::{Hits, Text, empty_call_in_prose, is_ident, skip_ws};
use crate::{Family, score};
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

/// (pattern, score, must be followed by `(`)
const PATTERNS: &[(&str, u32, bool)] = &[
    // PHP
    ("<?php", score::STRONG, false),
    ("${@", score::STRONG, false),
    ("shell_exec", score::STRONG, true),
    ("passthru", score::STRONG, true),
    ("proc_open", score::STRONG, true),
    ("pcntl_exec", score::STRONG, true),
    ("popen", score::MEDIUM + 1, true),
    ("phpinfo", score::STRONG, true),
    ("base64_decode", score::MEDIUM + 1, true),
    ("gzinflate", score::STRONG, true),
    ("str_rot13", score::MEDIUM + 1, true),
    ("file_put_contents", score::STRONG, true),
    ("file_get_contents", score::MEDIUM + 1, true),
    ("create_function", score::STRONG, true),
    ("call_user_func", score::STRONG, true),
    ("call_user_func_array", score::STRONG, true),
    ("fsockopen", score::STRONG, true),
    ("move_uploaded_file", score::STRONG, true),
    ("preg_replace", score::MEDIUM, true),
    ("system", score::MEDIUM + 1, true),
    ("exec", score::MEDIUM + 1, true),
    ("assert", score::MEDIUM, true),
    ("eval", score::MEDIUM + 1, true),
    ("md5", score::WEAK, true),
    ("print", score::WEAK, true),
    // Python
    ("__import__", score::STRONG, true),
    ("os.system", score::STRONG, true),
    ("os.popen", score::STRONG, true),
    ("subprocess.", score::STRONG, false),
    ("__builtins__", score::STRONG, false),
    ("__globals__", score::STRONG, false),
    ("__subclasses__", score::STRONG, false),
    ("__mro__", score::STRONG, false),
    ("!!python/", score::STRONG, false),
    ("socket.gethostbyname", score::STRONG, true),
    // Java / EL / OGNL
    ("java.lang.runtime", score::STRONG, false),
    ("getruntime()", score::STRONG, false),
    ("processbuilder", score::STRONG, true),
    ("class.forname", score::STRONG, true),
    ("scriptenginemanager", score::STRONG, false),
    ("#_memberaccess", score::STRONG, false),
    ("@ognl.", score::STRONG, false),
    ("t(java.", score::STRONG, false),
    // Node
    ("child_process", score::STRONG, false),
    ("process.mainmodule", score::STRONG, false),
    ("process.binding", score::STRONG, true),
    ("constructor.constructor", score::STRONG, false),
    ("new function", score::MEDIUM + 1, true),
    ("require", score::WEAK, true),
    // Prototype pollution
    ("__proto__", score::MEDIUM + 1, false),
    ("constructor.prototype", score::MEDIUM + 1, false),
    ("constructor[prototype]", score::MEDIUM + 1, false),
    // Classic ASP / VBScript
    ("response.write", score::MEDIUM + 1, true),
    ("response.end", score::MEDIUM, false),
    ("server.createobject", score::STRONG, true),
    ("createobject", score::MEDIUM + 1, true),
    ("execute", score::MEDIUM, true),
    ("executeglobal", score::STRONG, true),
    // A VBScript statement people also say: telling with other constructs.
    ("on error resume next", score::WEAK, false),
    ("server.scripttimeout", score::STRONG, false),
    ("wscript.shell", score::STRONG, false),
];

static AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .prefilter(false)
        .build(PATTERNS.iter().map(|p| p.0))
        .ok()
});

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    let dotted = t.has(b'.')
        && [
            "java.",
            "process.",
            "constructor.",
            "response.",
            "server.",
            "wscript.",
            "subprocess.",
        ]
        .iter()
        .any(|n| t.find(n).is_some());
    if !t.has_any(b"(_<!#@[") && !dotted && t.find("on error").is_none() {
        return;
    }
    scan(b, hits);
    if let Some(stripped) = t.stripped() {
        scan(stripped, hits);
    }
}

fn scan(b: &[u8], hits: &mut Hits) {
    let Some(ac) = AC.as_ref() else {
        return;
    };
    let mut total = 0u32;
    let mut best: Option<(u32, usize)> = None;
    for m in ac.find_iter(b).take(256) {
        let (pat, sc, call) = PATTERNS[m.pattern().as_usize()];
        let (s, e) = (m.start(), m.end());
        let first = pat.as_bytes()[0];
        if is_ident(first) && s > 0 && is_ident(b[s - 1]) {
            continue;
        }
        if call {
            if b.get(e).is_some_and(|&c| is_ident(c)) {
                continue;
            }
            let k = skip_ws(b, e);
            if b.get(k) != Some(&b'(') {
                continue;
            }
            // `system (as designed)` is prose; `system ('id')` is code.
            if k > e && !matches!(b.get(k + 1), Some(b'"' | b'\'' | b'$' | b'@' | b'`')) {
                continue;
            }
            // `eval() is evil` too; `phpinfo()` alone still tells.
            if sc < score::STRONG && empty_call_in_prose(b, e) {
                continue;
            }
        }
        total = total.saturating_add(sc);
        if best.is_none_or(|(bs, _)| sc > bs) {
            best = Some((sc, s));
        }
    }
    if let Some((sc, at)) = best {
        // Several code constructs together are as telling as a strong one.
        let sc = if total >= 2 * score::MEDIUM {
            sc.max(score::STRONG)
        } else {
            sc
        };
        hits.add(Family::CodeInjection, sc, "code.dangerous-call", at);
    }
}

/// `__schema {` / `__type(` in a GraphQL query.
pub(crate) fn check_graphql_introspection(t: &Text, hits: &mut Hits) {
    for needle in ["__schema", "__type"] {
        if let Some(p) = t.find(needle) {
            let b = t.bytes();
            let mut k = p + needle.len();
            while k < b.len() && (b[k].is_ascii_whitespace() || b[k] == b'+') {
                k += 1;
            }
            if matches!(b.get(k), Some(b'{' | b'(')) {
                hits.add(Family::Protocol, score::MEDIUM, "graphql.introspection", p);
                return;
            }
        }
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
        check_graphql_introspection(&t, &mut h);
        h.best(Family::CodeInjection).max(h.best(Family::Protocol))
    }

    #[test]
    fn attacks() {
        for a in [
            "cmd=${@print(md5(31337))}",
            "<?php system($_GET['c']); ?>",
            "Ev al (\"Ex\"&\"e\"&\"cute(\"\"Server.ScriptTimeout=3600:On Error Resume Next\"\")",
            "!!python/object/new:exec [import socket; socket.gethostbyname('x')]",
            "__import__('os').system('id')",
            "${T(java.lang.Runtime).getRuntime().exec('id')}",
            "require('child_process').exec('id')",
            "__proto__[v-if]=_c.constructor('alert(1)')()",
            "{\"query\": \"IntrospectionQuery{__schema {queryType { name }}\"}",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "exec noun",
            "java lang courses",
            "The system (as designed) works",
            "please print this page",
            "I would like to see the runtime for the payload, please.",
            "execute the plan",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
