//! Reading request parts without allocating where the raw bytes will do:
//! percent-decoding, form and cookie lookups, path normalisation.

use std::borrow::Cow;

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
pub(crate) fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes (and, in forms, turns `+` into a space); borrows when
/// there is nothing to decode. Invalid escapes are kept as they are.
pub(crate) fn decode(raw: &[u8], plus: bool) -> Cow<'_, [u8]> {
    if !raw.iter().any(|&b| b == b'%' || (plus && b == b'+')) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let escaped = (b == b'%')
            .then(|| Some((hex(*raw.get(i + 1)?)? << 4) | hex(*raw.get(i + 2)?)?))
            .flatten();
        match escaped {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.push(if plus && b == b'+' { b' ' } else { b });
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// The first value of `name` in `a=1&b=2` form encoding, decoded.
pub(crate) fn form_value<'a>(form: &'a [u8], name: &[u8]) -> Option<Cow<'a, [u8]>> {
    form.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        (decode(key, true).as_ref() == name).then(|| decode(value, true))
    })
}

/// Whether a content type is a url-encoded form.
pub(crate) fn is_form(content_type: &[u8]) -> bool {
    content_type
        .get(..33)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"application/x-www-form-urlencoded"))
}

/// The value of cookie `name` in one `Cookie` header, as sent.
pub(crate) fn cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = memchr::memchr(b'=', pair)?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// The path as an origin would resolve it: percent-decoded, backslashes as
/// slashes, empty and `.` segments dropped, `..` applied. Borrows when the
/// path is already in that form.
pub(crate) fn normalise_path(raw: &[u8]) -> Cow<'_, [u8]> {
    let decoded = decode(raw, false);
    let clean = !decoded.contains(&b'\\')
        && !decoded.windows(2).any(|w| w == b"//" || w == b"/.")
        && decoded.first() == Some(&b'/');
    if clean {
        return decoded;
    }
    let mut out = Vec::with_capacity(decoded.len() + 1);
    for segment in decoded.split(|&b| b == b'/' || b == b'\\') {
        match segment {
            b"" | b"." => {}
            b".." => {
                let parent = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(parent);
            }
            segment => {
                out.push(b'/');
                out.extend_from_slice(segment);
            }
        }
    }
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_dropped() {
        assert_eq!(strip_port("a.example:8080"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn paths_resolve_like_an_origin() {
        for (raw, want) in [
            ("/api/admin", "/api/admin"),
            ("/api//admin", "/api/admin"),
            ("/api/./admin", "/api/admin"),
            ("/api/x/../admin", "/api/admin"),
            ("/api/%61dmin", "/api/admin"),
            ("/api\\admin", "/api/admin"),
            ("/../../etc", "/etc"),
            ("/a/b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("", "/"),
        ] {
            let got = normalise_path(raw.as_bytes());
            assert_eq!(String::from_utf8_lossy(&got), want, "{raw}");
        }
        assert!(matches!(normalise_path(b"/plain/path"), Cow::Borrowed(_)));
    }

    #[test]
    fn forms_and_cookies() {
        let form = b"q=a+b%3C&id=7&flag&q=second";
        assert_eq!(form_value(form, b"q").as_deref(), Some(&b"a b<"[..]));
        assert_eq!(form_value(form, b"flag").as_deref(), Some(&b""[..]));
        assert_eq!(form_value(form, b"none"), None);
        assert!(matches!(form_value(form, b"id"), Some(Cow::Borrowed(b"7"))));
        assert_eq!(
            cookie(b"a=1; session=xyz ;b=2", b"session"),
            Some(&b"xyz"[..])
        );
        assert_eq!(cookie(b"a=1", b"session"), None);
        assert!(is_form(b"application/x-www-form-urlencoded; charset=utf-8"));
        assert!(!is_form(b"application/json"));
    }
}
