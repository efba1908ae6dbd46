//! Bounded recursive decoding of request values.
//!
//! Every function here is linear in its input, allocates at most a few
//! copies of it, and never expands it beyond [`MAX_DECODED`] bytes.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use memchr::memchr;

/// Most bytes of one value that are decoded and analysed.
pub const MAX_DECODED: usize = 256 * 1024;
/// Most decoding rounds (double, triple encoding ...).
pub const MAX_ROUNDS: usize = 4;
/// Most decoded views of one value.
pub const MAX_VIEWS: usize = 4;

/// Anomalies seen while decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// Bytes that were not valid UTF-8 after decoding.
    pub malformed_utf8: bool,
    /// Overlong UTF-8 sequences (`%C0%AE` for `.`).
    pub overlong: bool,
    /// A NUL byte.
    pub nul: bool,
    /// Encoded more than once (`%252e`).
    pub multi_encoded: bool,
    /// Still encoded after the last decoding round (stacked encodings).
    pub undecoded: bool,
}

/// The decoded views of one value.
#[derive(Debug, Default)]
pub struct Views {
    /// Decoded texts, the fully decoded value first.
    pub texts: Vec<String>,
    /// What the decoders noticed.
    pub anomalies: Anomalies,
}

/// Decode `raw` fully, then add base64-decoded views when they decode to text.
/// `plus` turns `+` into a space in the first round (query strings, forms).
pub fn views(raw: &[u8], plus: bool) -> Views {
    let mut out = Views::default();
    let raw = &raw[..raw.len().min(MAX_DECODED)];
    let first = full_decode(raw, plus, &mut out.anomalies);
    // Base64 is tried on the value before '+' became a space.
    let b64_source = if plus && memchr(b'+', raw).is_some() {
        let mut a = Anomalies::default();
        full_decode(raw, false, &mut a)
    } else {
        String::new()
    };
    let mut candidates: Vec<String> = Vec::new();
    for src in [first.as_str(), b64_source.as_str()] {
        for cand in base64_texts(src) {
            if candidates.len() < MAX_VIEWS - 1 && !candidates.contains(&cand) {
                candidates.push(cand);
            }
        }
    }
    let unescaped = unescaped_quotes(&first);
    out.texts.push(first);
    out.texts.extend(unescaped);
    for c in candidates {
        let mut a = Anomalies::default();
        let t = full_decode(c.as_bytes(), false, &mut a);
        if !out.texts.contains(&t) && out.texts.len() < MAX_VIEWS {
            out.texts.push(t);
        }
    }
    out
}

/// The text with `\'` and `\"` read as the quote alone: an application
/// that escapes quotes with a backslash but leaves backslashes alone
/// turns `\'` into `\\'`, an escaped backslash, then a quote that ends
/// the string.
fn unescaped_quotes(s: &str) -> Option<String> {
    (s.contains("\\'") || s.contains("\\\"")).then(|| s.replace("\\'", "'").replace("\\\"", "\""))
}

/// Quoted-printable (`=3C` for `<`, `=` at a line end joins two lines),
/// as mail and multipart parsers decode a part declaring it; an `=` that
/// starts neither is kept.
pub fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let input = &input[..input.len().min(MAX_DECODED)];
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'=' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        // Trailing spaces before a soft line break are padding.
        let pad = rest
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        let byte = match rest {
            [h, l, ..] => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (&rest[pad..], byte) {
            ([b'\r', b'\n', ..], _) => i += 1 + pad + 2,
            ([b'\n', ..], _) => i += 1 + pad + 1,
            (_, Some(b)) => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

/// Percent, `%u`, HTML entity and JS escape decoding repeated until nothing
/// changes (at most [`MAX_ROUNDS`]), then UTF-8 normalisation.
pub fn full_decode(raw: &[u8], plus: bool, anomalies: &mut Anomalies) -> String {
    let raw = &raw[..raw.len().min(MAX_DECODED)];
    // Fast path: plain ASCII with nothing to decode.
    let plain = raw.iter().all(|&b| {
        (0x20..0x7f).contains(&b) && !matches!(b, b'%' | b'&' | b'\\') && !(plus && b == b'+')
            || b == b'\n'
            || b == b'\t'
    });
    if plain {
        // All bytes are printable ASCII, so this never fails.
        return String::from_utf8(raw.to_vec()).unwrap_or_default();
    }
    let mut cur: Vec<u8> = raw[..raw.len().min(MAX_DECODED)].to_vec();
    let mut next = Vec::with_capacity(cur.len());
    let mut changed = false;
    for round in 0..MAX_ROUNDS {
        changed = false;
        // `+` is a space in forms, and in any value that is visibly
        // form-encoded (`%3Ca+href`), in every round that percent-decodes.
        let has_escape = has_percent_escape(&cur);
        let plus_now = (plus && round == 0) || (has_escape && memchr(b'+', &cur).is_some());
        if has_escape || plus_now {
            next.clear();
            if percent_decode(&cur, plus_now, &mut next) {
                std::mem::swap(&mut cur, &mut next);
                changed = true;
                if round > 0 {
                    anomalies.multi_encoded = true;
                }
            }
        }
        if memchr(b'&', &cur).is_some() {
            next.clear();
            if html_entities(&cur, &mut next) {
                std::mem::swap(&mut cur, &mut next);
                changed = true;
            }
        }
        if memchr(b'\\', &cur).is_some() {
            next.clear();
            if js_escapes(&cur, &mut next) {
                std::mem::swap(&mut cur, &mut next);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // The last round still changed something: one more might too.
    if changed
        && (has_percent_escape(&cur)
            || memchr(b'&', &cur).is_some()
            || memchr(b'\\', &cur).is_some())
    {
        let mut probe = Vec::new();
        if percent_decode(&cur, false, &mut probe)
            || html_entities(&cur, &mut probe)
            || js_escapes(&cur, &mut probe)
        {
            anomalies.undecoded = true;
        }
    }
    normalize(&cur, anomalies)
}

fn has_percent_escape(b: &[u8]) -> bool {
    memchr::memchr_iter(b'%', b).any(|i| {
        let h = |k: usize| b.get(i + k).copied().and_then(hex).is_some();
        (h(1) && h(2))
            || (matches!(b.get(i + 1), Some(b'u' | b'U')) && h(2) && h(3) && h(4) && h(5))
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_n(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        v = v.checked_mul(16)? + u32::from(hex(c)?);
    }
    Some(v)
}

fn push_char(out: &mut Vec<u8>, cp: u32) {
    let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Every value of the field `name` in a form-encoded string, decoded
/// (`+` as a space, invalid escapes kept as they are). A field's name
/// matches once decoded and trimmed, in any ASCII case, as lenient form
/// readers (PHP, ASP.NET) match it; a field with no `=` has an empty value.
pub fn form_values<'a>(form: &'a [u8], name: &'a str) -> impl Iterator<Item = Vec<u8>> + 'a {
    form.split(|&b| b == b'&').filter_map(move |pair| {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        let mut decoded = Vec::with_capacity(key.len());
        percent_decode(key, true, &mut decoded);
        if !decoded.trim_ascii().eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        decoded.clear();
        percent_decode(value, true, &mut decoded);
        Some(decoded)
    })
}

/// `%XX`, `%uXXXX` and optionally `+`. Returns whether anything changed.
pub fn percent_decode(input: &[u8], plus: bool, out: &mut Vec<u8>) -> bool {
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                input.get(i + 1).copied().and_then(hex),
                input.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h * 16 + l);
                i += 3;
                changed = true;
                continue;
            }
            if matches!(input.get(i + 1), Some(b'u' | b'U')) {
                if let Some(cp) = input.get(i + 2..i + 6).and_then(hex_n) {
                    push_char(out, cp);
                    i += 6;
                    changed = true;
                    continue;
                }
            }
        } else if b == b'+' && plus {
            out.push(b' ');
            i += 1;
            changed = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    changed
}

const NAMED: &[(&[u8], char)] = &[
    (b"lt", '<'),
    (b"gt", '>'),
    (b"amp", '&'),
    (b"quot", '"'),
    (b"apos", '\''),
    (b"colon", ':'),
    (b"lpar", '('),
    (b"rpar", ')'),
    (b"tab", '\t'),
    (b"newline", '\n'),
    (b"equals", '='),
    (b"sol", '/'),
    (b"bsol", '\\'),
    (b"lsqb", '['),
    (b"rsqb", ']'),
    (b"lbrack", '['),
    (b"rbrack", ']'),
    (b"lcub", '{'),
    (b"rcub", '}'),
    (b"lbrace", '{'),
    (b"rbrace", '}'),
    (b"comma", ','),
    (b"period", '.'),
    (b"semi", ';'),
    (b"excl", '!'),
    (b"quest", '?'),
    (b"num", '#'),
    (b"plus", '+'),
    (b"percnt", '%'),
    (b"nbsp", ' '),
    (b"grave", '`'),
    (b"ast", '*'),
    (b"dollar", '$'),
    (b"verbar", '|'),
    (b"vert", '|'),
    (b"hyphen", '-'),
    (b"lowbar", '_'),
    (b"circ", '^'),
    (b"commat", '@'),
];

/// HTML/XML character references, with or without `;`, any leading zeros.
pub fn html_entities(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'&' {
            if let Some((cp, len)) = entity_at(&input[i + 1..]) {
                push_char(out, cp);
                i += 1 + len;
                changed = true;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    changed
}

fn entity_at(s: &[u8]) -> Option<(u32, usize)> {
    if s.first() == Some(&b'#') {
        let (radix, start) = match s.get(1) {
            Some(b'x' | b'X') => (16u32, 2),
            _ => (10u32, 1),
        };
        let mut i = start;
        let mut v: u32 = 0;
        let mut digits = 0;
        while let Some(d) = s.get(i).and_then(|&b| (b as char).to_digit(radix)) {
            if v > 0 || d > 0 {
                digits += 1;
            }
            if digits > 7 {
                return None;
            }
            v = v * radix + d;
            i += 1;
        }
        if i == start {
            return None;
        }
        if s.get(i) == Some(&b';') {
            i += 1;
        }
        return Some((v, i));
    }
    let end = s.iter().take(10).position(|b| !b.is_ascii_alphabetic())?;
    let name = &s[..end];
    let semi = s.get(end) == Some(&b';');
    let lower: Vec<u8> = name.iter().map(u8::to_ascii_lowercase).collect();
    let (_, c) = NAMED.iter().find(|(n, _)| *n == lower.as_slice())?;
    let needs_semi = !matches!(lower.as_slice(), b"lt" | b"gt" | b"amp" | b"quot");
    if needs_semi && !semi {
        return None;
    }
    Some((*c as u32, end + usize::from(semi)))
}

/// `\uXXXX`, `\u{X}`, `\xHH` escapes. Returns whether anything changed.
pub fn js_escapes(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'\\' {
            if let Some((cp, len)) = js_escape_at(&input[i + 1..]) {
                push_char(out, cp);
                i += 1 + len;
                changed = true;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    changed
}

fn js_escape_at(s: &[u8]) -> Option<(u32, usize)> {
    match s.first()? {
        b'u' | b'U' => {
            if s.get(1) == Some(&b'{') {
                let end = s.iter().take(10).position(|&b| b == b'}')?;
                let v = hex_n(s.get(2..end)?)?;
                return Some((v, end + 1));
            }
            Some((hex_n(s.get(1..5)?)?, 5))
        }
        b'x' | b'X' => Some((hex_n(s.get(1..3)?)?, 3)),
        _ => None,
    }
}

/// Overlong UTF-8 folding, lossy UTF-8, and removal of characters used to
/// hide text (NUL, zero-width, BOM); fullwidth and circled letters become ASCII.
pub fn normalize(bytes: &[u8], anomalies: &mut Anomalies) -> String {
    let folded;
    let bytes = if bytes
        .iter()
        .any(|&b| matches!(b, 0xC0 | 0xC1 | 0xE0 | 0xF0 | 0xF8 | 0xFC))
    {
        let (f, any) = fold_overlong(bytes);
        anomalies.overlong |= any;
        folded = f;
        &folded[..]
    } else {
        bytes
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => {
            anomalies.malformed_utf8 = true;
            String::from_utf8_lossy(bytes)
        }
    };
    let needs_map = text.bytes().any(|b| b == 0 || b >= 0x80);
    if !needs_map {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\0' => anomalies.nul = true,
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => {}
            '\u{FF01}'..='\u{FF5E}' => out.push(shift(c, 0xFEE0)),
            '\u{24B6}'..='\u{24CF}' => out.push(shift(c, 0x24B6 - u32::from(b'a'))),
            '\u{24D0}'..='\u{24E9}' => out.push(shift(c, 0x24D0 - u32::from(b'a'))),
            '\u{560A}' | '\u{010A}' => out.push('\n'),
            '\u{560D}' => out.push('\r'),
            c => out.push(c),
        }
    }
    out
}

fn shift(c: char, by: u32) -> char {
    char::from_u32(u32::from(c) - by).unwrap_or(c)
}

fn fold_overlong(b: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(b.len());
    let mut any = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let cont = |k: usize| b.get(i + k).copied().filter(|&x| x & 0xC0 == 0x80);
        if c == 0xC0 || c == 0xC1 {
            if let Some(&next) = b.get(i + 1) {
                // IIS read the low six bits of the second byte whatever its
                // top bits (`%c1%1c` is `\`); only a separator or a dot is
                // worth folding from such a non-continuation byte.
                let v = ((c & 0x01) << 6) | (next & 0x3F);
                let is_cont = next & 0xC0 == 0x80;
                if is_cont || matches!(v, b'/' | b'\\' | b'.') {
                    any = true;
                    // An overlong letter or digit stays invalid (it reads as
                    // U+FFFD): it never spells a word, it only breaks one.
                    if !v.is_ascii_alphanumeric() {
                        out.push(v);
                        i += 2;
                        continue;
                    }
                }
            }
        }
        // Three- to six-byte forms (`%e0%80%ae`, `%fc%80%80%80%80%ae`):
        // a lead byte with no payload bits and continuation bytes whose
        // value fits in ASCII.
        let len = match c {
            0xE0 => 3,
            0xF0 => 4,
            0xF8 => 5,
            0xFC => 6,
            _ => 0,
        };
        if len > 0 && (1..len).all(|k| cont(k).is_some()) {
            let v = (1..len).fold(0u32, |v, k| (v << 6) | u32::from(b[i + k] & 0x3F));
            if v < 0x80 {
                out.push(v as u8);
                i += len;
                any = true;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    (out, any)
}

const B64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
static B64_STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
static B64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

fn b64_engine(url_safe: bool) -> &'static GeneralPurpose {
    if url_safe { &B64_URL } else { &B64_STD }
}

const fn b64_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=');
        i += 1;
    }
    t
}

static B64_CHARS: [bool; 256] = b64_table();

fn is_b64(b: u8) -> bool {
    B64_CHARS[usize::from(b)]
}

/// Base64 runs of `s` that decode to readable text (at most two).
pub fn base64_texts(s: &str) -> Vec<String> {
    let mut found = Vec::new();
    let t = s.trim().trim_start_matches('/');
    if t.len() >= 8 && t.bytes().all(|b| is_b64(b) || b == b' ') {
        let fixed: String = t.chars().map(|c| if c == ' ' { '+' } else { c }).collect();
        if let Some(d) = base64_text(&fixed) {
            found.push(d);
            return found;
        }
    }
    let b = s.as_bytes();
    let mut i = 0;
    // Only runs of at least MIN_RUN bytes count, and such a run starting at
    // or after `i` covers `i + MIN_RUN - 1`: probing that byte skips prose
    // without looking at every byte. `b[i - 1]`, when it exists, is never
    // base64 here, so a run found by the probe starts at or after `i`.
    const MIN_RUN: usize = 16;
    while i + MIN_RUN <= b.len() && found.len() < 2 {
        let probe = i + MIN_RUN - 1;
        if !is_b64(b[probe]) {
            i = probe + 1;
            continue;
        }
        let mut start = probe;
        while start > i && is_b64(b[start - 1]) {
            start -= 1;
        }
        i = probe + 1;
        while i < b.len() && is_b64(b[i]) {
            i += 1;
        }
        let run = s[start..i].trim_start_matches('/');
        if run.len() >= MIN_RUN && run.len() < s.len() {
            if let Some(d) = base64_text(run) {
                found.push(d);
            }
        }
    }
    found
}

/// Decode one base64 token if the result is mostly printable text.
pub fn base64_text(token: &str) -> Option<String> {
    let token = token.trim_end_matches('=');
    if token.len() < 8 || token.len() > MAX_DECODED {
        return None;
    }
    // Words made only of letters are rarely base64 payloads but often prose.
    let has_digit_or_sym = token
        .bytes()
        .any(|b| b.is_ascii_digit() || matches!(b, b'+' | b'/' | b'-' | b'_'));
    let has_upper = token.bytes().any(|b| b.is_ascii_uppercase());
    let has_lower = token.bytes().any(|b| b.is_ascii_lowercase());
    if !(has_digit_or_sym || has_upper && has_lower) {
        return None;
    }
    let url_safe = token.bytes().any(|b| b == b'-' || b == b'_');
    let usable = token.len() - token.len() % 4
        + if token.len() % 4 >= 2 {
            token.len() % 4
        } else {
            0
        };
    let token = &token[..usable];
    let bytes = b64_engine(url_safe).decode(token).ok()?;
    if bytes.len() < 4 || !mostly_text(&bytes) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn mostly_text(b: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(b) else {
        return false;
    };
    let total = s.chars().count().max(1);
    let good = s
        .chars()
        .filter(|&c| (c >= ' ' && c != '\u{7f}') || matches!(c, '\t' | '\r' | '\n'))
        .count();
    good * 100 >= total * 90
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> String {
        let mut a = Anomalies::default();
        full_decode(s.as_bytes(), true, &mut a)
    }

    #[test]
    fn form_values_match_the_decoded_trimmed_name_in_any_case() {
        let form = b"a=1&%5Fmethod=PUT&+_METHOD+=del%65te&_method&x_method=GET&_method=a+b%zz";
        let values: Vec<Vec<u8>> = form_values(form, "_method").collect();
        assert_eq!(
            values,
            [&b"PUT"[..], b"delete", b"", b"a b%zz"].map(<[u8]>::to_vec)
        );
        assert_eq!(form_values(b"", "_method").count(), 0);
    }

    #[test]
    fn percent_single_double_and_u() {
        assert_eq!(dec("a%20b+c"), "a b c");
        assert_eq!(dec("%252e%252e%252f"), "../");
        assert_eq!(dec("%u003cscript%u003e"), "<script>");
        assert_eq!(dec("100%"), "100%");
        assert_eq!(dec("%zz"), "%zz");
    }

    #[test]
    fn entities_and_js_escapes() {
        assert_eq!(
            dec("&lt;svg/onload&equals;alert(1)&gt;"),
            "<svg/onload=alert(1)>"
        );
        assert_eq!(
            dec("confirm&#0000000040document.domain)"),
            "confirm(document.domain)"
        );
        assert_eq!(dec("j&#X41vascript"), "jAvascript");
        assert_eq!(dec("\\u0027\\x3c\\u{3e}"), "'<>");
        assert_eq!(dec("and &IN=color&="), "and &IN=color&=");
        assert_eq!(dec("AT&T"), "AT&T");
    }

    #[test]
    fn overlong_and_hidden_chars() {
        let mut a = Anomalies::default();
        let s = full_decode(b"%C0%AE%C0%AE%C0%AFetc", false, &mut a);
        assert_eq!(s, "../etc");
        assert!(a.overlong);
        let s = full_decode("scr\0ipt\u{FEFF}".as_bytes(), false, &mut a);
        assert_eq!(s, "script");
        let s = full_decode(b"\xff\xfeabc", false, &mut a);
        assert!(a.malformed_utf8);
        assert!(s.ends_with("abc"));
    }

    #[test]
    fn base64_views() {
        let v = views(b"PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg", true);
        assert!(v.texts.iter().any(|t| t == "<script>alert(1)</script>"));
        let v = views(b"hello", true);
        assert_eq!(v.texts.len(), 1);
        assert!(base64_text("Mozilla").is_none());
        assert!(base64_text("AAAAAAAAAAAAAAAA").is_none());
    }

    #[test]
    fn bounded_size() {
        let big = vec![b'%'; MAX_DECODED * 2];
        let v = views(&big, true);
        assert!(v.texts[0].len() <= MAX_DECODED);
    }
}
