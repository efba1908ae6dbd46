//! Cross-site scripting: an HTML tag tokenizer (tag names, event-handler
//! attributes, script URLs in attribute values), attribute injection
//! outside tags, `javascript:` URLs, and JS sink calls (`alert(`,
//! `prompt\``, `confirm.call(`, `(alert)(1)`), also after removing string
//! concatenation and dummy tags used to split keywords.

use crate::text::{Hits, Text, empty_call_in_prose, ident_end, is_ident, skip_ws};
use crate::{Family, score};
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

const SCRIPT_TAGS: &[&[u8]] = &[b"script"];
const RISKY_TAGS: &[&[u8]] = &[
    b"iframe",
    b"frame",
    b"frameset",
    b"object",
    b"embed",
    b"applet",
    b"base",
    b"svg",
    b"math",
    b"meta",
    b"link",
    b"style",
    b"template",
    b"isindex",
    b"xmp",
    b"noscript",
    b"portal",
];

const SINKS: &[&str] = &[
    "alert",
    "prompt",
    "confirm",
    "eval",
    "atob",
    "settimeout",
    "setinterval",
    "fromcharcode",
    "execscript",
    "document.write",
    "document.cookie",
    "document.domain",
    "document[",
    "window[",
    "innerhtml",
    "outerhtml",
    "location.href",
    "window.location",
    "document.location",
    "javascript",
    "vbscript",
];

static SINK_AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| crate::text::dfa(SINKS));

/// `libinjection`: also run the libinjection HTML5 check (not on whole XML documents).
/// `rich_text`: the value sits in JSON, where editors and analytics send
/// HTML as data; embedding tags (`<iframe>`, `<svg>`) count there only with
/// script in them (a handler, a script URL, a script element).
pub(crate) fn check(t: &Text, libinjection: bool, rich_text: bool, hits: &mut Hits) {
    let b = t.bytes();
    if memchr::memchr(b'<', b).is_some() {
        tags(b, rich_text, hits);
    }
    if t.has(b'[') && t.has(b'!') {
        jsfuck(b, hits);
    }
    if memchr::memchr(b'=', b).is_some() {
        loose_handlers(b, hits);
    }
    if may_have_sink(t) {
        sinks(b, hits);
    }
    if let Some(stripped) = t.stripped() {
        loose_handlers(stripped, hits);
        sinks(stripped, hits);
    }
    if libinjection
        && !hits.has(Family::Xss)
        && memchr::memchr(b'<', b).is_some()
        && libinjection_xss(t)
    {
        hits.add(Family::Xss, score::MEDIUM, "xss.libinjection", 0);
    }
}

/// libinjection's HTML5 check, on the value as HTML would read it: without
/// a leading XML declaration and with namespace declarations (`xmlns=`,
/// `xmlns:soap=`), which an HTML parser ignores, renamed.
fn libinjection_xss(t: &Text) -> bool {
    let s = without_xml_declaration(t.s.as_bytes());
    let lower = &t.bytes()[t.bytes().len() - s.len()..];
    let styled = with_inert_styles(s, lower);
    let linked = with_inert_links(&styled, lower);
    let s = &linked[..];
    // The XHTML and SVG namespaces make markup live in an XML document.
    let live_namespace = memchr::memmem::find(lower, b"w3.org/1999/xhtml").is_some()
        || memchr::memmem::find(lower, b"w3.org/2000/svg").is_some();
    if live_namespace || memchr::memmem::find(lower, b"xmlns").is_none() {
        return libinjectionrs::detect_xss(s).is_injection();
    }
    let mut renamed = s.to_vec();
    for p in memchr::memmem::find_iter(lower, b"xmlns") {
        renamed[p + 4] = b'x';
    }
    libinjectionrs::detect_xss(&renamed).is_injection()
}

/// CSS that can run script or fetch (old IE `expression()`, bindings,
/// imports, URLs) or hide such words behind escapes.
fn css_can_act(lower: &[u8]) -> bool {
    const ACTIVE: [&[u8]; 7] = [
        b"expression",
        b"url(",
        b"javascript",
        b"behavior",
        b"binding",
        b"@import",
        b"\\",
    ];
    ACTIVE
        .iter()
        .any(|word| memchr::memmem::find(lower, word).is_some())
}

/// The value with `style=` attributes renamed when no CSS in it can act:
/// rich-text editors write `<span style="color: rgb(51, 51, 51)">` on every
/// line, and libinjection flags every `style` attribute.
fn with_inert_styles<'a>(s: &'a [u8], lower: &[u8]) -> std::borrow::Cow<'a, [u8]> {
    if memchr::memmem::find(lower, b"style").is_none() || css_can_act(lower) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut renamed = s.to_vec();
    for p in memchr::memmem::find_iter(lower, b"style") {
        if lower[p + 5..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'=') {
            renamed[p + 2] = b'x';
        }
    }
    std::borrow::Cow::Owned(renamed)
}

/// The value with `javascript:void(0)` links renamed (libinjection flags
/// every `javascript:`): pages and the rich text copied from them carry
/// them on every other link, and they run nothing.
fn with_inert_links<'a>(s: &'a [u8], lower: &[u8]) -> std::borrow::Cow<'a, [u8]> {
    let no_op_at = |p: usize| is_no_op(lower[p + b"javascript:".len()..].trim_ascii_start());
    if !memchr::memmem::find_iter(lower, b"javascript:").any(no_op_at) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut renamed = s.to_vec();
    for p in memchr::memmem::find_iter(lower, b"javascript:").filter(|&p| no_op_at(p)) {
        renamed[p] = b'x';
    }
    std::borrow::Cow::Owned(renamed)
}

/// The value after a leading `<?xml ...?>`: HTML reads that declaration as
/// a bogus comment, while libinjection flags every `<?`. What follows is
/// still judged.
fn without_xml_declaration(s: &[u8]) -> &[u8] {
    let start = skip_ws(s, 0);
    let rest = &s[start..];
    if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"<?xml") {
        if let Some(end) = memchr::memmem::find(rest, b"?>") {
            return &rest[end + 2..];
        }
    }
    s
}

/// JSFuck and its kin: a long run written only in `[]()!+`, which builds
/// and calls any function from coerced booleans and arrays.
fn jsfuck(b: &[u8], hits: &mut Hits) {
    const MIN_RUN: usize = 48;
    let mut run = 0usize;
    for (i, &c) in b.iter().enumerate() {
        if matches!(c, b'[' | b']' | b'(' | b')' | b'!' | b'+') {
            run += 1;
            if run >= MIN_RUN {
                hits.add(Family::Xss, score::STRONG, "xss.jsfuck", i + 1 - run);
                return;
            }
        } else {
            run = 0;
        }
    }
}

/// Walk every `<name ...>` tag.
fn tags(b: &[u8], rich_text: bool, hits: &mut Hits) {
    let mut i = 0;
    let mut seen = 0;
    while let Some(p) = memchr::memchr(b'<', &b[i..]) {
        let at = i + p;
        i = at + 1;
        seen += 1;
        if seen > 4096 {
            return;
        }
        let mut j = at + 1;
        if b.get(j) == Some(&b'/') {
            j += 1;
        }
        let name_start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b':') {
            j += 1;
        }
        if j == name_start || !b[name_start].is_ascii_alphabetic() {
            continue;
        }
        // `x:script` is a script element once `x` names the XHTML namespace.
        let qualified = &b[name_start..j];
        let name = match memchr::memrchr(b':', qualified) {
            Some(p) => &qualified[p + 1..],
            None => qualified,
        };
        let after = b.get(j).copied();
        let delimited =
            after.is_none_or(|c| c == b'>' || c == b'/' || c.is_ascii_whitespace() || c == 0x0c);
        if !delimited {
            continue;
        }
        // `1<script` ending the value opens nothing: a search for a tag name.
        let sc = if after.is_none() {
            score::WEAK
        } else {
            score::STRONG
        };
        let risky = if after.is_none() || rich_text {
            score::WEAK
        } else {
            score::MEDIUM
        };
        if SCRIPT_TAGS.contains(&name) {
            hits.add(Family::Xss, sc, "xss.script-tag", at);
        } else if RISKY_TAGS.contains(&name) && b[at + 1] != b'/' {
            hits.add(Family::Xss, risky, "xss.risky-tag", at);
        }
        attributes(b, j, at, hits);
    }
}

/// Attributes of the tag whose name ends at `i`, up to its `>`.
fn attributes(b: &[u8], mut i: usize, tag_at: usize, hits: &mut Hits) {
    let end = (i + 512).min(b.len());
    while i < end {
        let c = b[i];
        if c == b'>' || c == b'<' {
            return;
        }
        if !(c.is_ascii_alphabetic() || c == b'_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < end
            && !matches!(
                b[i],
                b'=' | b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | 0x0c
            )
        {
            i += 1;
        }
        let name = &b[start..i];
        let j = skip_ws(b, i);
        if b.get(j) != Some(&b'=') {
            continue;
        }
        if is_event_name(name) {
            hits.add(Family::Xss, score::STRONG, "xss.event-handler", tag_at);
        }
        let (value, next) = attr_value(b, skip_ws(b, j + 1));
        if is_script_url(value) {
            hits.add(Family::Xss, score::STRONG, "xss.script-url", tag_at);
        }
        i = next.max(i + 1);
    }
}

fn attr_value(b: &[u8], i: usize) -> (&[u8], usize) {
    match b.get(i) {
        Some(&q @ (b'"' | b'\'' | b'`')) => {
            let window = &b[i + 1..(i + 1 + 512).min(b.len())];
            let end = memchr::memchr(q, window).map_or(i + 1 + window.len(), |p| i + 1 + p);
            (&b[i + 1..end], end + 1)
        }
        Some(_) => {
            let mut j = i;
            let stop = (i + 512).min(b.len());
            while j < stop && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                j += 1;
            }
            (&b[i..j], j)
        }
        None => (&[], i),
    }
}

fn is_event_name(name: &[u8]) -> bool {
    name.len() >= 4 && name.starts_with(b"on") && name[2..].iter().all(|c| c.is_ascii_alphabetic())
}

/// `javascript:`, `vbscript:`, `data:text/html` once whitespace and control
/// characters are removed.
fn is_script_url(v: &[u8]) -> bool {
    let mut compact = [0u8; 24];
    let mut n = 0;
    for &c in v {
        if c.is_ascii_whitespace() || c < 0x20 {
            continue;
        }
        if n == compact.len() {
            break;
        }
        compact[n] = c;
        n += 1;
    }
    let c = &compact[..n];
    let no_op_link = || {
        let colon = v.iter().position(|&c| c == b':').map_or(v.len(), |p| p + 1);
        is_no_op(v[colon..].trim_ascii())
    };
    c.starts_with(b"javascript:") && !no_op_link()
        || c.starts_with(b"vbscript:")
        || c.starts_with(b"livescript:")
        || c.starts_with(b"data:text/html")
        || c.starts_with(b"data:image/svg")
        || c.starts_with(b"data:application/x")
}

/// `" onfocus=alert(1)`, `'onwheel=x(1)`, `/onload=...` outside a tag.
fn loose_handlers(b: &[u8], hits: &mut Hits) {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'=', &b[i..]) {
        let eq = i + p;
        i = eq + 1;
        // Walk back over whitespace and the attribute name.
        let mut k = eq;
        while k > 0 && b[k - 1].is_ascii_whitespace() {
            k -= 1;
        }
        let name_end = k;
        while k > 0 && b[k - 1].is_ascii_alphabetic() {
            k -= 1;
        }
        let name = &b[k..name_end];
        if !is_event_name(name) {
            continue;
        }
        let before_ok = k > 0
            && matches!(
                b[k - 1],
                b'"' | b'\'' | b'`' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b';'
            );
        if !before_ok {
            continue;
        }
        let v = skip_ws(b, eq + 1);
        let v = if matches!(b.get(v), Some(b'"' | b'\'' | b'`')) {
            v + 1
        } else {
            v
        };
        if js_like(&b[v.min(b.len())..]) {
            hits.add(Family::Xss, score::STRONG, "xss.event-handler", k);
        }
    }
}

/// Whether an attribute value starts like JS with a call: `alert(1)`,
/// `(prompt)(1)`, `` prompt`1` ``, up to the first blank, `&` or `>`.
fn js_like(s: &[u8]) -> bool {
    let first = match s.first() {
        Some(&c) => c,
        None => return false,
    };
    if !(is_ident(first) || matches!(first, b'(' | b'[' | b'{' | b'!' | b'`')) {
        return false;
    }
    s.iter()
        .take(120)
        .take_while(|&&c| !(c.is_ascii_whitespace() || c == b'&' || c == b'>'))
        .any(|&c| c == b'(' || c == b'`')
}

/// Whether [`sinks`] can fire: a call needs `(` or `` ` ``, a script URL
/// `:`, `document[` and `window[` a `[`, and the DOM properties JS
/// punctuation plus, except `innerhtml` and `outerhtml`, a dot.
fn may_have_sink(t: &Text) -> bool {
    if t.has_any(b"(`[:") {
        return true;
    }
    t.has_any(b"=<>;\"'+")
        && (t.has(b'.') || t.find("innerhtml").is_some() || t.find("outerhtml").is_some())
}

fn sinks(b: &[u8], hits: &mut Hits) {
    let Some(ac) = SINK_AC.as_ref() else {
        return;
    };
    for m in ac.find_iter(b).take(256) {
        let (s, e) = (m.start(), m.end());
        let name = &b[s..e];
        let prev = if s > 0 { b[s - 1] } else { b' ' };
        match name {
            b"javascript" | b"vbscript" => {
                if script_scheme_call(b, e) && !is_ident(prev) {
                    hits.add(Family::Xss, score::STRONG, "xss.javascript-url", s);
                }
            }
            b"document.cookie" | b"document.domain" | b"document.write" | b"innerhtml"
            | b"outerhtml" | b"location.href" | b"window.location" | b"document.location" => {
                if !is_ident(prev) && b.get(e).is_none_or(|&c| !is_ident(c)) && has_js_punct(b) {
                    hits.add(Family::Xss, score::MEDIUM + 1, "xss.dom-access", s);
                }
            }
            b"document[" | b"window[" => {
                let q = b.get(e).copied();
                if !is_ident(prev) && matches!(q, Some(b'"' | b'\'' | b'`')) {
                    hits.add(Family::Xss, score::MEDIUM + 1, "xss.dom-access", s);
                }
            }
            _ => {
                if (prev == b'.' && !dotted_global(b, s)) || is_ident(prev) {
                    continue;
                }
                if is_call(b, e) && !is_stack_frame(b, s, e) && !empty_call_in_prose(b, e) {
                    hits.add(Family::Xss, score::MEDIUM + 1, "xss.js-sink-call", s);
                }
            }
        }
    }
}

/// `at eval (eval at <anonymous> (app.js:1:1))`: a frame of a V8 stack
/// trace (error beacons carry them), which names a function and where it
/// ran; `at name (` is no JS a browser runs.
fn is_stack_frame(b: &[u8], s: usize, e: usize) -> bool {
    s >= 3 && &b[s - 3..s] == b"at " && (s == 3 || !is_ident(b[s - 4])) && b[e..].starts_with(b" (")
}

fn dotted_global(b: &[u8], dot_plus_one: usize) -> bool {
    let dot = dot_plus_one - 1;
    let mut k = dot;
    while k > 0 && is_ident(b[k - 1]) {
        k -= 1;
    }
    matches!(
        &b[k..dot],
        b"window"
            | b"self"
            | b"top"
            | b"parent"
            | b"this"
            | b"globalthis"
            | b"frames"
            | b"string"
            | b"document"
    )
}

fn has_js_punct(b: &[u8]) -> bool {
    b.iter().any(|&c| {
        matches!(
            c,
            b'(' | b'=' | b'<' | b'>' | b';' | b'"' | b'\'' | b'`' | b'+'
        )
    })
}

/// After a sink name: `(`, `` ` ``, `.call(`, `.apply(`, `.bind(`, `?.(`, `)(`.
fn is_call(b: &[u8], e: usize) -> bool {
    if b.get(e).is_some_and(|&c| is_ident(c)) {
        return false;
    }
    let i = skip_ws(b, e);
    let rest = &b[i.min(b.len())..];
    if rest.starts_with(b"(") || rest.starts_with(b"`") || rest.starts_with(b"?.(") {
        return true;
    }
    for m in [&b".call"[..], b".apply", b".bind"] {
        if rest.starts_with(m) {
            return rest[m.len()..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'(');
        }
    }
    // `(alert)(1)`
    if rest.starts_with(b")") && e > 0 {
        let open = b[..e].iter().rposition(|&c| !is_ident(c));
        if open.is_some_and(|o| b[o] == b'(') {
            return skip_ws(b, i + 1) < b.len() && matches!(b[skip_ws(b, i + 1)], b'(' | b'`');
        }
    }
    false
}

/// After `javascript`: optional blanks, `:`, then code with a call or index.
fn script_scheme_call(b: &[u8], e: usize) -> bool {
    let mut i = e;
    while i < b.len() && (b[i].is_ascii_whitespace() || b[i] < 0x20) {
        i += 1;
    }
    if b.get(i) != Some(&b':') {
        return false;
    }
    let start = i + 1;
    let first = b.get(start).copied();
    if first.is_none_or(|c| c.is_ascii_whitespace()) {
        return false;
    }
    let end = b[start..]
        .iter()
        .position(|c| c.is_ascii_whitespace())
        .map_or(b.len(), |p| start + p);
    let code = &b[start..end];
    if is_no_op(code) {
        return false;
    }
    code.iter().any(|&c| matches!(c, b'(' | b'`' | b'[' | b'=')) || code.starts_with(b"//")
}

/// `void(0)`, the body of the `javascript:void(0)` links of every site
/// (and of the click beacons that report them): it evaluates a number and
/// runs nothing. Up to the end of an attribute value (`"`, `'`, `>`).
fn is_no_op(code: &[u8]) -> bool {
    let end = code
        .iter()
        .position(|c| matches!(c, b'"' | b'\'' | b'>'))
        .unwrap_or(code.len());
    let code = code[..end].strip_suffix(b";").unwrap_or(&code[..end]);
    code.strip_prefix(b"void(")
        .and_then(|r| r.strip_suffix(b")"))
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// Remove string concatenation (`'ale'+'rt'`, `"Ex"&"e"`) and tiny dummy
/// tags (`o<x>nfocus`) used to split keywords; `None` if there are none.
const CONCAT: &[&[u8]] = &[b"'+'", b"\"+\"", b"\"&\"", b"' + '", b"\" + \""];

pub(crate) fn strip_obfuscation(b: &[u8]) -> Option<Vec<u8>> {
    let has_concat = memchr::memchr2_iter(b'\'', b'"', b)
        .take(256)
        .any(|i| CONCAT.iter().any(|p| b[i..].starts_with(p)));
    let has_dummy = has_any_dummy(b);
    if !has_concat && !has_dummy {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let skip = CONCAT
            .iter()
            .find(|p| rest.starts_with(p))
            .map(|p| p.len())
            .or_else(|| {
                if b[i] == b'<' {
                    dummy_tag_len(b, i)
                } else {
                    None
                }
            });
        match skip {
            Some(n) => i += n,
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    Some(out)
}

fn has_any_dummy(b: &[u8]) -> bool {
    memchr::memchr_iter(b'<', b)
        .take(64)
        .any(|i| dummy_tag_len(b, i).is_some())
}

/// `<x>` / `</x>` with a name of at most 2 letters, glued between letters.
fn dummy_tag_len(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j) == Some(&b'/') {
        j += 1;
    }
    let e = ident_end(b, j);
    if e == j || e - j > 2 || b.get(e) != Some(&b'>') {
        return None;
    }
    let glued = i > 0
        && b[i - 1].is_ascii_alphabetic()
        && b.get(e + 1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'(');
    glued.then_some(e + 1 - i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, true, false, &mut h);
        h.best(Family::Xss)
    }

    #[test]
    fn attacks() {
        for a in [
            "<body onload=alert('test1')>",
            "<IMG SRC=jAvascript:alert('test')>",
            "\"onwheel=ead(111)",
            "sometext<svg onload=alert(document.domain)>?mimeType=text/html",
            "\"));if(!self.x)self.x=!alert(document.domain)}catch(e){}//",
            "confirm.call(null,1)",
            "javascript:setInterval('ale'+'rt(document.domain)')",
            "alert.call( , \"XSS\");",
            "(alert)(1)",
            "\"onClick=\"(prompt)(1)",
            "'>alert(1)</script><script/1='",
            "\"//Onx=\"\"//onfocus=prompt(1)>",
            "\"OnCliCk=\"(prompt`1`)",
            "alert.apply(null, [1])",
            "\\\"autof<x>ocus o<x>nfocus=alert<x>(1)//",
            "<<script/src=http://xss.com/xss.js></script",
            "'-alert(1)//",
            "alert?.(document?.cookie)",
            "document[\"cookie\"]",
            "<iframe src=\"java sc ript:al ert()\"></iframe>",
            "<object/data=javascript:alert()>",
            "eval(atob(\"YWxlcnQoKQ==\"))",
            "javascript:\u{0}alert(XSS)",
            "cat alert (1)",
            "javascript:void(alert(1))",
            "<a href=\"javascript:void(0);alert(1)\">x</a>",
            "javascript:void(0)&alert(1)",
            "<a href=\"javascript:void(0)\">x</a><a href=\"javascript:alert(1)\">y</a>",
            "x;at\nalert(1)",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "h2<h1",
            ">url=/pi?mode=<;>",
            "JavaScript: Basics of JavaScript Language",
            "and >I would like to see all of the items that are type <enter type here>.",
            "The standard for the <$ tag is to enclose text",
            "I will go on=and on",
            "Please confirm your email",
            "a <b>bold</b> move, x < y > z",
            "online=true&onboarding=done",
            "Script error. at eval (eval at <anonymous> (https://a.com/x.js:1:1), <anonymous>:1:1)",
            "TypeError: x is undefined\n    at setTimeout (native)\n    at alert (app.js:3:9)",
            "javascript:void(0)",
            "<a href=\"javascript:void(0);\">more</a>",
            "<p>见<a href=\"javascript:void(0)\" class=\"more\">更多</a></p>",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
