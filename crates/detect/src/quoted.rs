//! Where a value pasted between quotes (`'...'` or `"..."`, the way SQL
//! strings are built by concatenation) leaves its string, and whether what
//! it writes there reads as SQL.
//!
//! Inside the string anything is data. A quote closes it; what follows, up
//! to the next quote, is written as SQL. An injection puts an operator, a
//! clause or a comment there (`' or 1=1--`, `' union select`, `'='`); a
//! statement someone writes about SQL (a forum post, a search) has its own
//! literals there (`WHERE a = 'b'` leaves `b`), prose its quotations, and
//! HTML its attribute values (`class="language-sql"`).

use std::ops::Range;

/// Whether some stretch of `b` (lowercased) that lies outside the string
/// it was pasted into, for single or for double quotes, reads as SQL.
pub(crate) fn leaves_string_as_sql(b: &[u8]) -> bool {
    [b'\'', b'"']
        .into_iter()
        .any(|q| outside(b, q).any(|r| reads_as_sql(&b[r])))
}

/// The stretches of `b` outside a `q`-quoted string that starts before
/// `b`. A doubled quote inside the string is an escaped quote; an
/// apostrophe inside a word (`it's`, `O'Brien`) closes nothing.
fn outside(b: &[u8], q: u8) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut quotes = memchr::memchr_iter(q, b)
        .filter(move |&i| q != b'\'' || !crate::sqli::is_apostrophe(b, i))
        .peekable();
    std::iter::from_fn(move || {
        // Inside: find the quote that closes the string.
        let close = loop {
            let i = quotes.next()?;
            if quotes.peek() == Some(&(i + 1)) {
                quotes.next();
                continue;
            }
            break i;
        };
        let end = quotes.next().unwrap_or(b.len());
        Some(close + 1..end)
    })
}

/// A stretch written as SQL that does something: it starts with a clause
/// or an operator (`or 1=1`, `union select`, `=`, `)--`, `+(select`,
/// `||(select`), or a comment that hides what follows or cuts the rest of
/// the statement away (`/**/or`, `--`, `#`). A quoted word or symbol alone
/// (`"and"`, `'*'`, `near "<"`) is a quotation, except `'='`, which
/// compares two empty strings.
fn reads_as_sql(stretch: &[u8]) -> bool {
    let s = stretch.trim_ascii();
    let Some(&first) = s.first() else {
        return false;
    };
    let alone = s.len() == stretch.len();
    if first == b'='
        || matches!(first, b'<' | b'>' | b'!') && s.len() > 1
        || matches!(first, b';' | b')' | b'(' | b',' | b'+')
        || [&b"||"[..], b"&&", b"--", b"/*", b"#"]
            .iter()
            .any(|p| s.starts_with(p))
        || s.ends_with(b"--")
        || s.ends_with(b"#")
    {
        return true;
    }
    let word_end = s
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(s.len());
    !(alone && word_end == s.len()) && crate::sqli::is_quote_follower(&s[..word_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(s: &str) -> bool {
        leaves_string_as_sql(s.to_ascii_lowercase().as_bytes())
    }

    #[test]
    fn break_outs_are_found() {
        for a in [
            "' or 1=1--",
            "1' OR '1'='1",
            "x' UNION SELECT password FROM users",
            "' or ''='",
            "'='",
            "admin'--",
            "admin'#",
            "x') or ('a'='a",
            "'+(select top 1 name from sysobjects)+'",
            "'; drop table users--",
            "\" or \"\"=\"",
            "1\" and sleep(5)#",
            "x'||(select password from users)||'",
            "x'/**/or/**/1=1",
            "'or'1'='1",
            "x' or 'a",
        ] {
            assert!(leaves(a), "missed: {a}");
        }
    }

    #[test]
    fn statements_prose_and_markup_stay_in_their_string() {
        for b in [
            "SELECT a FROM x WHERE a COLLATE 'utf8_general_ci' = 'b'",
            "x IN ('a', 'a''a')",
            "CURRENT_DATE('UTC')",
            "<pre><code class=\"language-sql\">SELECT a, b FROM test GROUP BY a</code></pre>",
            "He said 'hello world' and left",
            "O'Brien's union select guide",
            "where name = 'O''Brien' or id = 1",
            "SELECT 1 FROM PARQUET_SCAN('/x/y/*') AS y",
            "SPLIT(referrer, 'utm_source=')[OFFSET(1)]",
            "SELECT 1 AS \"|sum\" FROM x",
            "SELECT * WHERE INTERVAL \"is\" > 1",
            "[link](/url 'title \"and\" title')",
            "**foo \"*bar*\" foo**",
            "sqlite3.OperationalError: near \"<\": syntax error",
            "does not match traffic with the '*' wildcard IP range",
            "no quotes at all: select * from t where 1=1",
        ] {
            assert!(!leaves(b), "false positive: {b}");
        }
    }
}
