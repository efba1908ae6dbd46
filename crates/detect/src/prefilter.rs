//! One pass over a decoded view that tells whether any family check could
//! fire on it; most values of ordinary requests (numbers, words, names)
//! then skip every check.
//!
//! It must never change a verdict: it only answers "no" for a view whose
//! bytes are all letters, digits, blanks and `,`, in a place without
//! place-specific checks (path, user agent, file name), and that contains
//! none of the words some check reacts to without punctuation (SQL clause
//! words, system tables, callback domains' names, serialized-object
//! magic, `0x` spellings of path separators, `on error`). Every other
//! check needs at least one byte outside that class (a quote, `<`, `(`,
//! `/`, `.`, `-`, `_`, `$`, `{`, `=`, `;`, a line break or non-ASCII)
//! before it can fire. `corpus_eval --verdicts` gives the same
//! file with and without it.

use crate::analyze::Ctx;
use crate::text::Text;
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

/// Bytes that cannot start or carry any structure by themselves.
const fn inert_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b' ' | b',');
        i += 1;
    }
    t
}

static INERT: [bool; 256] = inert_table();

/// Words that a check may react to in a text of inert bytes only: SQL
/// (`1 union select 2`, `1 or 2 like 2`, system tables), command names
/// with plain arguments, serialized-object magic in base64 and callback
/// services. Matched as substrings, so this errs towards running.
const WORDS: &[&str] = &[
    // SQL clause words and system tables (see `sqli`).
    "union",
    "select",
    "waitfor",
    "declare",
    "xp_cmdshell",
    "sp_executesql",
    "sp_oacreate",
    "and",
    "or",
    "xor",
    "where",
    "when",
    "information_schema",
    "sysobjects",
    "syscolumns",
    "pg_catalog",
    "pg_shadow",
    "sqlite_master",
    "all_tables",
    "user_tables",
    "msysobjects",
    "sysibm",
    "syscat",
    "pg_database",
    "pg_user",
    // Serialized objects written as base64 or hex (see `deser`).
    "ro0ab",
    "aced0005",
    "h4sia",
    "gasv",
    "aaeaaad",
    "baaaaa",
    // Separators spelled `0x2f` (see `traversal`), VBScript (see `code`).
    "0x",
    "on error",
    // Callback services (see `ssrf`).
    "burpcollaborator",
    "oastify",
    "interact",
    "dnslog",
    "ceye",
    "requestbin",
    "canarytokens",
    "bxss",
    "r87",
];

static WORDS_AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| crate::text::dfa(WORDS));

/// Whether any family check could fire on this view in this place.
pub(crate) fn may_fire(t: &Text, ctx: Ctx) -> bool {
    if matches!(
        ctx,
        Ctx::Path | Ctx::UserAgent | Ctx::Filename | Ctx::XmlDoc
    ) {
        return true;
    }
    let b = t.bytes();
    if !b.iter().all(|&c| INERT[usize::from(c)]) {
        return true;
    }
    // Shell commands as a whole value need arguments with punctuation,
    // which inert text has not; the rest needs one of the words.
    WORDS_AC.as_ref().is_none_or(|ac| ac.is_match(b))
}
