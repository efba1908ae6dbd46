//! A small bounded JSON walker: every string value is inspected at its
//! path (`json.user.name`, `json.items[2]`), keys are checked for NoSQL
//! operators and prototype pollution.

use crate::analyze::{Ctx, Sink};
use crate::{Family, nosql, score};

const MAX_DEPTH: usize = 32;
const MAX_PATH: usize = 256;

struct Walker<'a, 's, 'p> {
    b: &'a [u8],
    i: usize,
    path: String,
    sink: &'s mut Sink<'p>,
    emitted: usize,
    /// Where the first bare token that is no JSON literal began.
    bare_from: Option<usize>,
}

/// Walk a JSON document; false if it is not JSON at all (nothing was read).
pub(crate) fn walk(data: &[u8], sink: &mut Sink) -> bool {
    let mut w = Walker {
        b: data,
        i: 0,
        path: String::from("json"),
        sink,
        emitted: 0,
        bare_from: None,
    };
    w.ws();
    let ok = w.value(0).is_some();
    w.ws();
    let whole = ok && w.i == w.b.len();
    if !whole && w.emitted > 0 {
        // JSON up to a point (a second document, trailing text, nesting
        // beyond the walk): the rest is read as text, not skipped.
        let rest = &data[w.i.min(data.len())..];
        w.sink.value("body", rest, Ctx::Body);
    }
    if let Some(from) = w.bare_from.filter(|_| !whole) {
        // A bare token where a value goes (`{"id":1e0union select ...}`)
        // reaches a lenient parser as the value itself: read it and what
        // follows as a parameter value, not as prose.
        w.sink.value("json.bare", &data[from..], Ctx::Query);
    }
    whole || w.emitted > 0
}

/// `true`, `false`, `null` or a number.
fn is_literal(token: &[u8]) -> bool {
    matches!(token, b"true" | b"false" | b"null")
        || std::str::from_utf8(token).is_ok_and(|t| t.parse::<f64>().is_ok_and(f64::is_finite))
}

/// Appends `[idx]` without the formatting machinery, which costs more than
/// the rest of the walk on arrays of small items.
fn push_index(path: &mut String, idx: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = idx;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    path.push('[');
    path.extend(digits[start..].iter().map(|&d| char::from(d)));
    path.push(']');
}

impl<'a> Walker<'a, '_, '_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            self.sink.overflow(|i| i.nesting = true);
            return None;
        }
        self.ws();
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => {
                let s = self.string()?;
                self.emitted += 1;
                self.sink.value(&self.path, &s, Ctx::Json);
                Some(())
            }
            _ => self.scalar(),
        }
    }

    fn scalar(&mut self) -> Option<()> {
        let start = self.i;
        while self.i < self.b.len()
            && (self.b[self.i].is_ascii_alphanumeric()
                || matches!(self.b[self.i], b'-' | b'+' | b'.'))
        {
            self.i += 1;
        }
        let token = &self.b[start..self.i];
        if self.bare_from.is_none() && !is_literal(token) {
            self.bare_from = Some(start);
        }
        (self.i > start).then_some(())
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            let saved = self.path.len();
            self.push_key(&key);
            self.check_key(&key);
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            let r = self.value(depth + 1);
            self.path.truncate(saved);
            r?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        let mut idx = 0usize;
        loop {
            let saved = self.path.len();
            if self.path.len() < MAX_PATH {
                push_index(&mut self.path, idx);
            }
            let r = self.value(depth + 1);
            self.path.truncate(saved);
            r?;
            idx += 1;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn push_key(&mut self, key: &[u8]) {
        if self.path.len() >= MAX_PATH {
            return;
        }
        self.path.push('.');
        let key = &key[..key.len().min(64)];
        if let Some(plain) = std::str::from_utf8(key)
            .ok()
            .filter(|k| k.bytes().all(|c| (0x20..0x7f).contains(&c)))
        {
            self.path.push_str(plain);
            return;
        }
        for c in String::from_utf8_lossy(key).chars() {
            self.path.push(if c.is_control() { '?' } else { c });
        }
    }

    fn check_key(&mut self, key: &[u8]) {
        let loc = &self.path;
        if let Some(sc) = nosql::operator_score(key) {
            self.sink.direct(
                loc,
                Family::Nosql,
                sc,
                "nosql.operator-key",
                &String::from_utf8_lossy(key),
            );
        } else if key == b"__proto__" || key == b"prototype" {
            self.sink.direct(
                loc,
                Family::CodeInjection,
                score::MEDIUM + 1,
                "code.prototype-pollution",
                "__proto__",
            );
        } else if !key.iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b' ' | b'@' | b':' | b'$')
        }) {
            self.sink.value(loc, key, Ctx::Json);
        }
    }

    /// A string at `self.i` (on the opening quote), unescaped.
    fn string(&mut self) -> Option<std::borrow::Cow<'a, [u8]>> {
        self.i += 1;
        let start = self.i;
        let b: &'a [u8] = self.b;
        let end = start + memchr::memchr2(b'"', b'\\', &b[start..])?;
        if b[end] == b'"' {
            self.i = end + 1;
            return Some(std::borrow::Cow::Borrowed(&b[start..end]));
        }
        let mut out = b[start..end].to_vec();
        self.i = end;
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Some(std::borrow::Cow::Owned(out)),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => self.unicode(&mut out)?,
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        let s = std::str::from_utf8(h).ok()?;
        let v = u32::from_str_radix(s, 16).ok()?;
        self.i += 4;
        Some(v)
    }

    fn unicode(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let mut cp = self.hex4()?;
        if (0xD800..0xDC00).contains(&cp) && self.b.get(self.i..self.i + 2) == Some(b"\\u") {
            self.i += 2;
            let lo = self.hex4()?;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
        }
        let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Detector, RawRequest};

    #[test]
    fn array_items_are_located_by_index() {
        let headers: [(&str, &[u8]); 1] = [("content-type", b"application/json")];
        let body = br#"{"a":[0,1,2,3,4,5,6,7,8,9,10,11,{"b":"<script>alert(1)</script>"}]}"#;
        let verdict = Detector::default().inspect(&RawRequest {
            method: "POST",
            target: b"/",
            headers: &headers,
            body,
            body_truncated: false,
        });
        let top = verdict.top().expect("a finding");
        assert_eq!(top.location, "json.a[12].b");
    }
}
