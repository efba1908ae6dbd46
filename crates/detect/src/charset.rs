//! Which declared charsets the engine can read, and which body part
//! transfer encodings it decodes.
//!
//! Every value is read as ASCII-compatible bytes: in these charsets `<`,
//! `'`, `/` and every other byte below 0x80 mean what they mean in ASCII,
//! so the checks see what a server decoding the charset sees. A charset
//! that moves ASCII (EBCDIC's `ibm037`, `cp500`, `cp1026`, `ibm273`,
//! `cp875`, ...; UTF-16 and UTF-32; UTF-7; the ISO-2022 and HZ escape
//! encodings) hides any payload from them, and no browser sends a form in
//! one: a request declaring such a charset is refused instead of read.

/// Whether text declared as `label` (a `charset=` parameter or a
/// `_charset_` field) can be read as ASCII-compatible bytes. Labels are
/// compared without case, quotes, spaces, `-` or `_` (`ISO_8859-1`,
/// `iso-8859-1` and `"iso8859-1"` are one charset).
pub fn readable(label: &[u8]) -> bool {
    let key: String = label
        .iter()
        .filter(|c| !matches!(c, b'-' | b'_' | b' ' | b'\t' | b'"' | b'\''))
        .map(|c| c.to_ascii_lowercase() as char)
        .collect();
    // The empty label is no declaration at all.
    if key.is_empty() || READABLE.contains(&key.as_str()) {
        return true;
    }
    numbered(&key, "iso8859", 1..=16)
        || numbered(&key, "windows125", 0..=8)
        || numbered(&key, "cp125", 0..=8)
        || numbered(&key, "xcp125", 0..=8)
        || numbered(&key, "latin", 1..=10)
}

/// `key` is `prefix` followed by a number in `range`.
fn numbered(key: &str, prefix: &str, range: std::ops::RangeInclusive<u32>) -> bool {
    key.strip_prefix(prefix)
        .filter(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .is_some_and(|n| range.contains(&n))
}

/// ASCII-compatible charsets that are not a numbered family, as
/// normalised by [`readable`].
const READABLE: &[&str] = &[
    "utf8",
    "usascii",
    "ascii",
    "ansix3.41968",
    "iso646us",
    "l1",
    "gbk",
    "gb2312",
    "gb18030",
    "cp936",
    "ms936",
    "windows936",
    "euccn",
    "xgbk",
    "big5",
    "big5hkscs",
    "cnbig5",
    "xxbig5",
    "cp950",
    "shiftjis",
    "sjis",
    "xsjis",
    "mskanji",
    "windows31j",
    "cp932",
    "ms932",
    "eucjp",
    "xeucjp",
    "euckr",
    "cp949",
    "windows949",
    "uhc",
    "ksc56011987",
    "koi8r",
    "koi8u",
    "koi8ru",
    "koi8",
    "cp866",
    "ibm866",
    "cp437",
    "ibm437",
    "cp850",
    "ibm850",
    "tis620",
    "windows874",
    "cp874",
    "macintosh",
    "macroman",
    "xmacroman",
    "xmaccyrillic",
];

/// Whether a body part's `Content-Transfer-Encoding` is one the engine
/// reads: the identity encodings, base64 and quoted-printable. Any other
/// is a way to carry a payload the checks cannot decode.
pub fn known_transfer_encoding(value: &[u8]) -> bool {
    let v = value.trim_ascii();
    ["7bit", "8bit", "binary", "base64", "quoted-printable"]
        .iter()
        .any(|k| v.eq_ignore_ascii_case(k.as_bytes()))
}

/// The value of the `charset` parameter of a `Content-Type` value, quotes
/// removed; `None` when there is none.
pub fn param(content_type: &[u8]) -> Option<&[u8]> {
    content_type.split(|&c| c == b';').skip(1).find_map(|p| {
        let p = p.trim_ascii();
        let (k, v) = p.split_at(memchr::memchr(b'=', p)?);
        k.trim_ascii()
            .eq_ignore_ascii_case(b"charset")
            .then(|| v[1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_compatible_charsets_are_readable() {
        for l in [
            "utf-8",
            "UTF8",
            "us-ascii",
            "ISO-8859-1",
            "iso_8859-15",
            "\"iso8859-2\"",
            "windows-1252",
            "cp1251",
            "gbk",
            "GB2312",
            "gb18030",
            "big5",
            "Shift_JIS",
            "euc-jp",
            "EUC-KR",
            "koi8-r",
            "koi8-u",
            "latin1",
            "",
        ] {
            assert!(readable(l.as_bytes()), "{l}");
        }
    }

    #[test]
    fn charsets_that_move_ascii_are_not() {
        for l in [
            "ibm037",
            "IBM037",
            "cp037",
            "ibm500",
            "cp500",
            "cp1026",
            "ibm273",
            "cp875",
            "ibm1047",
            "ebcdic-us",
            "utf-16",
            "utf-16be",
            "utf-16le",
            "utf-32",
            "utf-7",
            "utf7",
            "iso-2022-jp",
            "hz-gb-2312",
            "x-unknown",
            "iso-8859-99",
            "windows-1259",
            "cp12345",
        ] {
            assert!(!readable(l.as_bytes()), "{l}");
        }
    }

    #[test]
    fn transfer_encodings() {
        for e in ["7bit", "8BIT", "binary", " base64", "Quoted-Printable"] {
            assert!(known_transfer_encoding(e.as_bytes()), "{e}");
        }
        for e in [
            "x-uuencode",
            "uuencode",
            "x-gzip",
            "base32",
            "quoted-printable2",
        ] {
            assert!(!known_transfer_encoding(e.as_bytes()), "{e}");
        }
    }

    #[test]
    fn charset_parameter() {
        assert_eq!(
            param(b"application/x-www-form-urlencoded; charset=ibm037"),
            Some(&b"ibm037"[..])
        );
        assert_eq!(
            param(b"text/plain;CHARSET = \"utf-8\""),
            Some(&b"\"utf-8\""[..])
        );
        assert_eq!(param(b"text/plain"), None);
        assert_eq!(param(b"multipart/form-data; boundary=charset=x"), None);
    }
}
