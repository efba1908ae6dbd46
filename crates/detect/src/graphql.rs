//! GraphQL documents read as GraphQL: a query is code the API expects, so
//! only its string arguments are values that could carry an attack.
//!
//! This is a lexer with bracket matching, not a validator: a text is taken
//! as a GraphQL executable document when every byte lexes as GraphQL, its
//! brackets balance, and it opens like one (`{ field`, `query`, `mutation`,
//! `subscription`, `fragment`).

/// Most string arguments returned; a document with more is read whole.
const MAX_STRINGS: usize = 256;

/// The string arguments of `s` (unescaped), or `None` when `s` is not a
/// GraphQL document.
pub(crate) fn string_arguments(s: &str) -> Option<Vec<String>> {
    let b = s.as_bytes();
    if !opens_like_graphql(b) {
        return None;
    }
    let mut strings = Vec::new();
    let mut stack: Vec<u8> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => i = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |p| i + p + 1),
            b'{' | b'(' | b'[' => {
                braces += usize::from(c == b'{');
                stack.push(c);
                i += 1;
            }
            b'}' | b')' | b']' => {
                let open = stack.pop()?;
                if !matches!((open, c), (b'{', b'}') | (b'(', b')') | (b'[', b']')) {
                    return None;
                }
                i += 1;
            }
            b'!' | b'$' | b'&' | b':' | b'=' | b'@' | b'|' => i += 1,
            b'.' if b[i..].starts_with(b"...") => i += 3,
            b'"' => {
                let (text, end) = string_at(b, i)?;
                if strings.len() >= MAX_STRINGS {
                    return None;
                }
                strings.push(text);
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
            _ => return None,
        }
    }
    (stack.is_empty() && braces > 0).then_some(strings)
}

fn opens_like_graphql(b: &[u8]) -> bool {
    let start = crate::text::skip_ws(b, 0);
    let rest = &b[start..];
    if let Some(after) = rest.strip_prefix(b"{") {
        let k = crate::text::skip_ws(after, 0);
        return after
            .get(k)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_');
    }
    ["query", "mutation", "subscription", "fragment"]
        .iter()
        .any(|kw| {
            rest.starts_with(kw.as_bytes())
                && rest
                    .get(kw.len())
                    .is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'('))
        })
}

/// The string or block string opening at `i`, unescaped, and the index
/// after it.
fn string_at(b: &[u8], i: usize) -> Option<(String, usize)> {
    if b[i..].starts_with(b"\"\"\"") {
        let body = i + 3;
        let end = body + memchr::memmem::find(&b[body..], b"\"\"\"")?;
        return Some((String::from_utf8_lossy(&b[body..end]).into_owned(), end + 3));
    }
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), j + 1)),
            b'\\' => {
                let e = *b.get(j + 1)?;
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    other => other,
                });
                j += 2;
            }
            b'\n' => return None,
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_their_strings() {
        let q = "query Q($id: ID!) {\n  user(id: $id, name: \"a \\\"b\\\"\") {\n    id\n    ... on Admin { ls }\n  }\n}";
        assert_eq!(string_arguments(q), Some(vec!["a \"b\"".to_string()]));
        assert_eq!(string_arguments("{ a }"), Some(vec![]));
        assert!(string_arguments("{\"query\": 1}").is_none());
        assert!(string_arguments("query { a ").is_none());
        assert!(string_arguments("query; id").is_none());
        assert!(string_arguments("select * from a").is_none());
    }
}
