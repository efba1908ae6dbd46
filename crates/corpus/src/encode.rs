//! Payload encoders, matching GoTestWAF's output byte for byte.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Encoder;

/// Encodes `payload` with `encoder` the way GoTestWAF does; `None` for an
/// unknown encoder.
///
/// - `Plain`: unchanged.
/// - `URL`: Go's `url.QueryEscape` (space as `+`, `%XX` upper-case).
/// - `Base64` / `Base64Flat`: standard alphabet, `Flat` without `=` padding.
/// - `JSUnicode`: every UTF-16 code unit as `\uXXXX` (lower-case hex).
/// - `XMLEntity`: Go's `xml.Encoder.Encode(string)`, i.e. the escaped text
///   wrapped in `<string>...</string>`.
pub fn encode(encoder: &Encoder, payload: &str) -> Option<String> {
    Some(match encoder {
        Encoder::Plain => payload.to_string(),
        Encoder::Url => query_escape(payload),
        Encoder::Base64 => STANDARD.encode(payload.as_bytes()),
        Encoder::Base64Flat => STANDARD.encode(payload.as_bytes()).replace('=', ""),
        Encoder::JsUnicode => js_unicode(payload),
        Encoder::XmlEntity => format!("<string>{}</string>", xml_escape(payload)),
        Encoder::Unknown(_) => return None,
    })
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => push_pct(&mut out, b),
        }
    }
    out
}

pub(crate) fn push_pct(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX_UPPER[(b >> 4) as usize] as char);
    out.push(HEX_UPPER[(b & 0xf) as usize] as char);
}

fn js_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 6);
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if xml_char_ok(c) && c != '\u{FFFD}' => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

fn xml_char_ok(c: char) -> bool {
    matches!(c as u32, 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: Encoder, s: &str) -> String {
        encode(&e, s).expect("known encoder")
    }

    #[test]
    fn plain_is_identity() {
        assert_eq!(enc(Encoder::Plain, "<a b='c'>\u{e9}"), "<a b='c'>\u{e9}");
    }

    #[test]
    fn url_matches_go_query_escape() {
        assert_eq!(enc(Encoder::Url, "a b&c=d/e?f"), "a+b%26c%3Dd%2Fe%3Ff");
        assert_eq!(enc(Encoder::Url, "-_.~AZaz09"), "-_.~AZaz09");
        assert_eq!(enc(Encoder::Url, "<script>"), "%3Cscript%3E");
        assert_eq!(enc(Encoder::Url, "\u{e9}\n%"), "%C3%A9%0A%25");
        assert_eq!(enc(Encoder::Url, "'or 1=1--"), "%27or+1%3D1--");
    }

    #[test]
    fn base64_and_flat() {
        assert_eq!(enc(Encoder::Base64, "ab"), "YWI=");
        assert_eq!(enc(Encoder::Base64Flat, "ab"), "YWI");
        assert_eq!(enc(Encoder::Base64, "a"), "YQ==");
        assert_eq!(enc(Encoder::Base64Flat, "a"), "YQ");
        assert_eq!(enc(Encoder::Base64Flat, "abc"), "YWJj");
        assert_eq!(enc(Encoder::Base64, "<>?"), "PD4/");
    }

    #[test]
    fn js_unicode_uses_utf16_code_units() {
        assert_eq!(enc(Encoder::JsUnicode, "a<"), "\\u0061\\u003c");
        assert_eq!(enc(Encoder::JsUnicode, "\u{e9}"), "\\u00e9");
        // Outside the BMP: a surrogate pair.
        assert_eq!(enc(Encoder::JsUnicode, "\u{1F600}"), "\\ud83d\\ude00");
        assert_eq!(enc(Encoder::JsUnicode, ""), "");
    }

    #[test]
    fn xml_entity_matches_go_xml_encoder() {
        assert_eq!(
            enc(Encoder::XmlEntity, "<a href=\"x\">'&'</a>"),
            "<string>&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;</string>"
        );
        assert_eq!(
            enc(Encoder::XmlEntity, "a\tb\nc\rd"),
            "<string>a&#x9;b&#xA;c&#xD;d</string>"
        );
        assert_eq!(
            enc(Encoder::XmlEntity, "x\u{0}y"),
            "<string>x\u{FFFD}y</string>"
        );
        assert_eq!(enc(Encoder::XmlEntity, ""), "<string></string>");
    }

    #[test]
    fn unknown_encoder_is_none() {
        assert_eq!(encode(&Encoder::Unknown("Rot13".into()), "x"), None);
    }
}
