//! SQL injection: the libinjection fingerprint (pure-Rust port) as a floor,
//! plus structural checks over our own SQL token stream, which skips
//! comments (`/**/`, `/*!...*/`, `--`) and whitespace wherever they hide.

use crate::text::{Hits, Text, WordSet};
use crate::{Family, score};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Num,
    Str,
    Punct,
}

#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    kind: Kind,
    text: &'a [u8],
    at: usize,
}

/// A lazy SQL tokenizer over lowercased bytes.
#[derive(Clone)]
struct Tokens<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Tokens<'a> {
    fn skip_trivia(&mut self) {
        let b = self.b;
        loop {
            while self.i < b.len() && (b[self.i].is_ascii_whitespace() || b[self.i] == 0x0b) {
                self.i += 1;
            }
            let rest = &b[self.i..];
            // MySQL reads a no-break space (0xA0 in latin1, U+00A0) as a
            // space; an invalid byte arrives here as U+FFFD.
            if let Some(len) = [&b"\xc2\xa0"[..], b"\xef\xbf\xbd", b"\xa0"]
                .iter()
                .find(|space| rest.starts_with(space))
                .map(|space| space.len())
            {
                self.i += len;
                continue;
            }
            if rest.starts_with(b"/*!") {
                self.i += 3;
                while self.i < b.len() && b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
            } else if rest.starts_with(b"/*") {
                match crate::text::find_bytes(&rest[2..], b"*/") {
                    Some(p) => self.i += 2 + p + 2,
                    None => self.i = b.len(),
                }
            } else if rest.starts_with(b"*/") {
                self.i += 2;
            } else if rest.starts_with(b"--") && rest.get(2).is_none_or(|c| !c.is_ascii_digit()) {
                match memchr::memchr(b'\n', rest) {
                    Some(p) => self.i += p + 1,
                    None => self.i = b.len(),
                }
            } else {
                return;
            }
        }
    }
}

impl Tokens<'_> {
    /// Whether the next token is `(`; consumes it if so, like `next` would.
    fn next_is_open_paren(&mut self) -> bool {
        self.skip_trivia();
        if self.b.get(self.i) == Some(&b'(') {
            self.i += 1;
            return true;
        }
        false
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Tok<'a>;

    fn next(&mut self) -> Option<Tok<'a>> {
        self.skip_trivia();
        let b = self.b;
        let start = self.i;
        let c = *b.get(start)?;
        let kind = if c.is_ascii_alphabetic() || c == b'_' || c == b'@' || c == b'$' {
            self.i += 1;
            while self.i < b.len()
                && (b[self.i].is_ascii_alphanumeric()
                    || matches!(b[self.i], b'_' | b'@' | b'$' | b'.'))
            {
                self.i += 1;
            }
            Kind::Word
        } else if c.is_ascii_digit() {
            self.i = number_end(b, start);
            Kind::Num
        } else if matches!(b.get(start..start + 2), Some(b"\\N" | b"\\n")) {
            // MySQL's NULL literal, a value like a number.
            self.i += 2;
            Kind::Num
        } else if c == b'\'' || c == b'"' || c == b'`' {
            self.i += 1;
            while self.i < b.len() {
                if b[self.i] == c {
                    if b.get(self.i + 1) == Some(&c) {
                        self.i += 2;
                        continue;
                    }
                    self.i += 1;
                    break;
                }
                self.i += 1;
            }
            Kind::Str
        } else {
            self.i += 1;
            let two = b.get(start..start + 2);
            if matches!(
                two,
                Some(b"||" | b"&&" | b"!=" | b"<>" | b"<=" | b">=" | b":=")
            ) {
                self.i += 1;
            }
            Kind::Punct
        };
        Some(Tok {
            kind,
            text: &b[start..self.i],
            at: start,
        })
    }
}

/// Where a number starting at `start` ends, as MySQL lexes it: `0x` / `0b`
/// digits, or digits, a fraction and an exponent. A word glued to it starts
/// a new token, so `1e0union` is `1e0 union` (a classic filter bypass).
fn number_end(b: &[u8], start: usize) -> usize {
    let digits = |mut i: usize, ok: fn(u8) -> bool| {
        while b.get(i).copied().is_some_and(ok) {
            i += 1;
        }
        i
    };
    match b.get(start..start + 2) {
        Some(b"0x" | b"0X") => return digits(start + 2, |c| c.is_ascii_hexdigit()),
        Some(b"0b" | b"0B") => return digits(start + 2, |c| matches!(c, b'0' | b'1')),
        _ => {}
    }
    let mut i = digits(start, |c| c.is_ascii_digit());
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1, |c| c.is_ascii_digit());
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1 + sign, |c| c.is_ascii_digit());
        }
    }
    i
}

/// Functions that exist in SQL dialects and hardly anywhere else.
const SQL_FUNCS: &[&[u8]] = &[
    b"sleep",
    b"pg_sleep",
    b"benchmark",
    b"extractvalue",
    b"updatexml",
    b"load_file",
    b"json_extract",
    b"json_depth",
    b"json_keys",
    b"json_length",
    b"group_concat",
    b"concat_ws",
    b"database",
    b"schema",
    b"current_user",
    b"system_user",
    b"session_user",
    b"user",
    b"version",
    b"randomblob",
    b"sqlite_version",
    b"load_extension",
    b"pg_read_file",
    b"lo_import",
    b"make_set",
    b"elt",
    b"dbms_pipe.receive_message",
    b"utl_http.request",
    b"utl_inaddr.get_host_name",
    b"ctxsys.drithsx.sn",
    b"master.sys.fn_varbintohexstr",
    b"fn_varbintohexstr",
    b"convert",
    b"cast",
    b"ascii",
    b"substring",
    b"substr",
    b"mid",
    b"ord",
    b"hex",
    b"unhex",
    b"char",
    b"chr",
    b"nchar",
    b"if",
    b"iif",
    b"ifnull",
    b"isnull",
    b"coalesce",
    b"count",
    b"current_setting",
];

/// Of [`SQL_FUNCS`], the ones whose call alone is telling.
const TELLING_FUNCS: &[&[u8]] = &[
    b"sleep",
    b"pg_sleep",
    b"benchmark",
    b"extractvalue",
    b"updatexml",
    b"load_file",
    b"json_extract",
    b"json_depth",
    b"json_keys",
    b"group_concat",
    b"concat_ws",
    b"randomblob",
    b"sqlite_version",
    b"load_extension",
    b"pg_read_file",
    b"lo_import",
    b"make_set",
    b"dbms_pipe.receive_message",
    b"utl_http.request",
    b"utl_inaddr.get_host_name",
    b"ctxsys.drithsx.sn",
    b"master.sys.fn_varbintohexstr",
    b"fn_varbintohexstr",
    b"current_setting",
];

const SYS_TABLES: &[&[u8]] = &[
    b"information_schema",
    b"sysobjects",
    b"syscolumns",
    b"sys.tables",
    b"pg_catalog",
    b"pg_shadow",
    b"sqlite_master",
    b"mysql.user",
    b"all_tables",
    b"user_tables",
    b"msysobjects",
    b"sysibm.",
    b"syscat.",
    b"pg_database",
    b"pg_user",
];

fn is_w(t: &Tok, w: &[u8]) -> bool {
    t.kind == Kind::Word && t.text == w
}

fn is_p(t: &Tok, p: &[u8]) -> bool {
    t.kind == Kind::Punct && t.text == p
}

fn is_literal(t: &Tok) -> bool {
    matches!(t.kind, Kind::Num | Kind::Str)
}

fn is_cmp(t: &Tok) -> bool {
    (t.kind == Kind::Punct && matches!(t.text, b"=" | b"<" | b">" | b"!=" | b"<>" | b"<=" | b">="))
        || (t.kind == Kind::Word && matches!(t.text, b"like" | b"rlike" | b"regexp" | b"is"))
}

const STACKED: &[&[u8]] = &[
    b"drop",
    b"delete",
    b"insert",
    b"update",
    b"select",
    b"create",
    b"alter",
    b"truncate",
    b"exec",
    b"execute",
    b"declare",
    b"shutdown",
    b"waitfor",
    b"set",
    b"call",
    b"begin",
];

/// The shortest name in [`SYS_TABLES`]: shorter words need no comparison.
const SYS_TABLE_MIN_LEN: usize = {
    let mut min = usize::MAX;
    let mut i = 0;
    while i < SYS_TABLES.len() {
        if SYS_TABLES[i].len() < min {
            min = SYS_TABLES[i].len();
        }
        i += 1;
    }
    min
};

/// Keywords that may sit between SELECT and its first expression.
const SELECT_MODIFIERS: &[&[u8]] = &[b"distinct", b"all", b"top", b"as", b"null"];

/// Bytes that SQL syntax needs beyond words and blanks.
const SQL_BYTES: &[u8] = b"'\"`#-/*;()=<>|&!@,";

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    // A single token without SQL punctuation cannot be an injection.
    if !t.has(b' ') && !t.has_any(SQL_BYTES) {
        return;
    }
    // libinjection's fingerprints are costly; without a quote or a comment
    // the structural checks below see everything it would.
    if needs_libinjection(t) {
        libinjection(t, hits);
    }
    structure(t, hits);
}

/// A quote that is not an apostrophe inside a word (`O'Brien's`), a
/// backtick, or a block comment.
fn needs_libinjection(t: &Text) -> bool {
    // Without quotes, SQL still needs an operator or a keyword of its own
    // around its punctuation (`1) and 4386=...`, `;select case when`).
    if t.has_any(b"(#;=") && has_sql_word(t.bytes()) {
        return true;
    }
    if t.has(b'`') || t.find("/*").is_some() {
        return true;
    }
    if !t.has_any(b"'\"") {
        return false;
    }
    let b = t.bytes();
    // A JSON object in a value (a JWT header, a config blob): its double
    // quotes are syntax; only single quotes and comments matter there.
    if b.first() == Some(&b'{') && b.last() == Some(&b'}') {
        return t.has(b'\'') || t.has(b'#') || t.find("--").is_some();
    }
    memchr::memchr2_iter(b'\'', b'"', b).any(|i| !is_apostrophe(b, i))
}

/// Keywords that join or start SQL clauses, as whole words.
const CLAUSE_WORDS: &[&[u8]] = &[
    b"and",
    b"or",
    b"xor",
    b"select",
    b"union",
    b"where",
    b"when",
    b"order",
    b"group",
    b"having",
    b"sleep",
    b"benchmark",
    b"waitfor",
    b"exec",
    b"elt",
    b"iif",
    b"begin",
    b"call",
    b"declare",
    b"rlike",
    b"regexp",
];

static CLAUSE_AC: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| crate::text::dfa(CLAUSE_WORDS));

fn has_sql_word(b: &[u8]) -> bool {
    let Some(ac) = CLAUSE_AC.as_ref() else {
        return true;
    };
    ac.find_overlapping_iter(b).any(|m| {
        let before = m.start().checked_sub(1).map(|i| b[i]);
        let after = b.get(m.end()).copied();
        let edge = |c: Option<u8>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'_'));
        edge(before) && edge(after)
    })
}

fn libinjection(t: &Text, hits: &mut Hits) {
    let b = t.s.as_bytes();
    if b.len() < 2 {
        return;
    }
    let r = libinjectionrs::detect_sqli(b);
    if r.is_injection() {
        let fp = r.fingerprint.map(|f| f.to_string()).unwrap_or_default();
        // Fingerprints that are nothing but a comment or a bare word list
        // are weaker evidence.
        let sc = if fp.len() <= 1 {
            score::MEDIUM
        } else if fp.ends_with('c') && fp.bytes().all(|c| matches!(c, b'1' | b'n' | b'o' | b'c')) {
            // `10% off -- today`: a number, an operator and a dash comment.
            score::WEAK
        } else if fp.bytes().all(|c| matches!(c, b's' | b'n' | b'k' | b'T')) {
            // Quoted words among words, with no operator, comment, number
            // or punctuation: a quotation in prose, not a query.
            score::WEAK
        } else {
            score::MEDIUM + 1
        };
        hits.add(Family::Sqli, sc, "sqli.libinjection", 0);
    }
}

/// Bytes and words without which no structural rule can fire: every rule
/// in [`judge`] and [`judge_word`] needs one of these bytes or a word token
/// equal to (or, for system tables, starting with) one of these words.
const STRUCTURE_BYTES: &[u8] = b"(;@&|";
const STRUCTURE_WORDS: &[&[u8]] = &[
    b"union",
    b"select",
    b"waitfor",
    b"declare",
    b"xp_cmdshell",
    b"sp_executesql",
    b"sp_oacreate",
    b"and",
    b"or",
    b"xor",
    b"where",
    b"when",
];

static STRUCTURE_AC: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| crate::text::dfa(STRUCTURE_WORDS.iter().chain(SYS_TABLES)));

/// Whether the token scan can find anything: a substring scan is much
/// cheaper than tokenizing, and a word token can only equal a keyword that
/// occurs as a substring.
fn may_have_structure(t: &Text) -> bool {
    t.has_any(STRUCTURE_BYTES)
        || STRUCTURE_AC
            .as_ref()
            .is_none_or(|ac| ac.is_match(t.bytes()))
}

fn structure(t: &Text, hits: &mut Hits) {
    if !may_have_structure(t) {
        return;
    }
    let b = t.bytes();
    structure_from(b, 0, true, hits);
    // Also as if the value were placed inside a quoted string: start right
    // after the first quote that would close it.
    for q in [b'\'', b'"'] {
        let quote = memchr::memchr_iter(q, b).find(|&i| !is_apostrophe(b, i));
        if let Some(p) = quote {
            if p + 1 < b.len() {
                structure_from(b, p + 1, false, hits);
            }
        }
    }
}

/// `O'Brien`, `it's`: a single quote between two letters, unless the word
/// after it is SQL (`x'UNION SELECT`, `a'or'1`).
pub(crate) fn is_apostrophe(b: &[u8], i: usize) -> bool {
    if !(b[i] == b'\''
        && i > 0
        && b[i - 1].is_ascii_alphabetic()
        && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic))
    {
        return false;
    }
    let rest = &b[i + 1..];
    let end = rest
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    !QUOTE_FOLLOWER_SET.contains(&rest[..end])
}

/// Whether `w` (lowercased) is a word that, right after a quote, goes on
/// as SQL.
pub(crate) fn is_quote_follower(w: &[u8]) -> bool {
    QUOTE_FOLLOWER_SET.contains(w)
}

static QUOTE_FOLLOWER_SET: std::sync::LazyLock<WordSet> =
    std::sync::LazyLock::new(|| WordSet::new(QUOTE_FOLLOWERS));

/// Words that make a quote between letters a string terminator.
const QUOTE_FOLLOWERS: &[&[u8]] = &[
    b"union",
    b"select",
    b"or",
    b"and",
    b"xor",
    b"having",
    b"order",
    b"group",
    b"waitfor",
    b"insert",
    b"update",
    b"delete",
    b"drop",
    b"exec",
    b"declare",
    b"like",
    b"rlike",
    b"regexp",
    b"sleep",
    b"benchmark",
    b"into",
    b"from",
    b"where",
    b"limit",
    b"procedure",
    b"div",
    b"is",
    b"in",
];

/// Rules that fire on the shape of a statement, which a value that opens
/// with one has by construction.
pub(crate) const STATEMENT_SHAPE_RULES: &[&str] = &[
    "sqli.libinjection",
    "sqli.select-from",
    "sqli.union-select",
    "sqli.stacked-query",
    "sqli.statement-as-value",
    "sqli.tautology",
];

/// Statements a search or a post about SQL opens with.
const STATEMENTS: &[&[u8]] = &[
    b"select",
    b"insert",
    b"update",
    b"delete",
    b"with",
    b"create",
    b"alter",
    b"drop",
    b"show",
    b"explain",
    b"replace",
    b"truncate",
];

/// Words that lead into a statement as SQL, not as prose.
const SQL_LEADS: &[&[u8]] = &[
    b"union",
    b"all",
    b"distinct",
    b"or",
    b"and",
    b"not",
    b"exists",
    b"in",
    b"end",
    b"then",
    b"else",
    b"null",
    b"into",
    b"go",
    b"begin",
];

/// Whether `b` (lowercased), after the tags of rich text (`<p>`,
/// `<div class="ql-editor">`), opens as text rather than as an operand: a
/// statement after at most three words of prose (`mysql select`, `how to
/// delete from`), or two words of prose (`Uncaught SyntaxError:`). A value
/// put in a query in place of a number or a column name cannot open so
/// and still run; it has to leave a string.
pub(crate) fn opens_as_text(b: &[u8]) -> bool {
    let mut rest = skip_leading_tags(b.trim_ascii_start());
    for n in 0..4 {
        let end = rest
            .iter()
            .position(|c| !(c.is_ascii_alphabetic() || *c >= 0x80))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if STATEMENTS.contains(&word) {
            return rest.get(end).is_some_and(|c| c.is_ascii_whitespace());
        }
        // Words of prose, not SQL that leads into the statement
        // (`union all select`) or joins a condition (`x or 1=1`).
        let gap = match rest.get(end..end + 2) {
            Some([b':' | b',' | b'.', b' ']) => 2,
            _ => usize::from(rest.get(end) == Some(&b' ')),
        };
        if word.is_empty() || gap == 0 || SQL_LEADS.contains(&word) || is_quote_follower(word) {
            return n >= 2;
        }
        rest = rest[end + gap..].trim_ascii_start();
    }
    true
}

/// `b` after up to four leading HTML tags.
fn skip_leading_tags(mut b: &[u8]) -> &[u8] {
    for _ in 0..4 {
        let name_ok = b.first() == Some(&b'<') && b.get(1).is_some_and(u8::is_ascii_alphabetic);
        let close = b.iter().take(256).position(|&c| c == b'>');
        match close {
            Some(p) if name_ok && !b[1..p].contains(&b'<') => b = b[p + 1..].trim_ascii_start(),
            _ => break,
        }
    }
    b
}

/// `whole`: the scan starts at the start of the value, where a statement
/// (`select 1 from a`) is a search term: no value put in a query can start
/// a statement of its own without a quote, an operand or a separator first.
fn structure_from(b: &[u8], start: usize, whole: bool, hits: &mut Hits) {
    let mut win: [Option<Tok>; 4] = [None; 4];
    let mut toks = Tokens { b, i: start };
    let mut count = 0usize;
    while let Some(tok) = toks.next() {
        count += 1;
        if count > 100_000 {
            break;
        }
        let opening = whole && count == 1;
        judge(&win, &tok, opening, &mut toks.clone(), hits);
        win = [win[1], win[2], win[3], Some(tok)];
    }
}

/// Look at `tok` with the up to four tokens before it and what follows.
fn judge<'a>(
    win: &[Option<Tok<'a>>; 4],
    tok: &Tok<'a>,
    opening: bool,
    rest: &mut Tokens<'a>,
    hits: &mut Hits,
) {
    let prev = win[3];
    if tok.kind == Kind::Word {
        if opening && matches!(tok.text, b"union" | b"select") {
            let mut probe = Hits::default();
            judge_word(prev, tok, &mut rest.clone(), &mut probe);
            if probe.has(Family::Sqli) {
                hits.add(Family::Sqli, score::WEAK, "sqli.statement-as-value", tok.at);
            }
        } else {
            judge_word(prev, tok, &mut rest.clone(), hits);
        }
        if matches!(tok.text, b"where" | b"when") && numeric_comparison(&mut rest.clone()) {
            hits.add(
                Family::Sqli,
                score::STRONG,
                "sqli.numeric-condition",
                tok.at,
            );
        }
    }
    if matches!(tok.text, b"chr" | b"char") && char_concat(&mut rest.clone()) {
        hits.add(Family::Sqli, score::MEDIUM + 1, "sqli.char-concat", tok.at);
    }
    // Boolean tautology: (and|or) literal cmp literal, after a literal or ')'.
    if tok.kind == Kind::Word && matches!(tok.text, b"and" | b"or" | b"xor")
        || is_p(tok, b"&&")
        || is_p(tok, b"||")
    {
        let after_literal = prev.is_some_and(|p| is_literal(&p) || is_p(&p, b")"));
        let a = rest.next();
        let op = rest.next();
        let b = rest.next();
        if let (Some(a), Some(op), Some(b)) = (a, op, b) {
            // The right side may be a call or a subquery: `4386=utl_inaddr.x(`,
            // `5286=(select`.
            let call_or_group = is_p(&b, b"(") || b.kind == Kind::Word && rest.next_is_open_paren();
            if after_literal && is_literal(&a) && is_cmp(&op) && (is_literal(&b) || call_or_group) {
                hits.add(Family::Sqli, score::MEDIUM + 1, "sqli.tautology", tok.at);
            }
            // `or (8287=4930)*4930`
            if after_literal && is_p(&a, b"(") && a.at + 1 < rest.b.len() {
                let mut inner = Tokens {
                    b: rest.b,
                    i: a.at + 1,
                };
                if numeric_comparison(&mut inner) && inner.next().is_some_and(|t| is_p(&t, b")")) {
                    hits.add(Family::Sqli, score::MEDIUM + 1, "sqli.tautology", tok.at);
                }
            }
        }
    }
}

fn judge_word<'a>(prev: Option<Tok<'a>>, tok: &Tok<'a>, rest: &mut Tokens<'a>, hits: &mut Hits) {
    let w = tok.text;
    if w == b"union" {
        let mut n = rest.next();
        while n.is_some_and(|n| {
            is_w(&n, b"all") || is_w(&n, b"distinct") || is_w(&n, b"distinctrow") || is_p(&n, b"(")
        }) {
            n = rest.next();
        }
        if n.is_some_and(|n| is_w(&n, b"select")) {
            // After a plain word (`how to write union select`) the union
            // joins nothing: an injected one follows a value, a `)` or a
            // comment.
            let after_word = prev.is_some_and(|p| {
                p.kind == Kind::Word && !matches!(p.text, b"null" | b"true" | b"false" | b"end")
            });
            let sc = if after_word {
                score::WEAK
            } else {
                score::STRONG
            };
            hits.add(Family::Sqli, sc, "sqli.union-select", tok.at);
        }
        return;
    }
    if w == b"select" {
        select_from(tok, rest, hits);
        return;
    }
    if w == b"procedure" && rest.next().is_some_and(|n| is_w(&n, b"analyse")) {
        hits.add(
            Family::Sqli,
            score::STRONG,
            "sqli.procedure-analyse",
            tok.at,
        );
        return;
    }
    if w.len() >= SYS_TABLE_MIN_LEN && SYS_TABLES.iter().any(|s| w.starts_with(s)) {
        let sc = if prev.is_some_and(|p| is_w(&p, b"from") || is_w(&p, b"join")) {
            score::STRONG
        } else {
            score::MEDIUM
        };
        hits.add(Family::Sqli, sc, "sqli.system-table", tok.at);
        return;
    }
    if w == b"xp_cmdshell"
        || w.ends_with(b".xp_cmdshell")
        || w == b"sp_executesql"
        || w == b"sp_oacreate"
    {
        hits.add(Family::Sqli, score::STRONG, "sqli.mssql-proc", tok.at);
        return;
    }
    if w == b"waitfor" {
        if rest
            .next()
            .is_some_and(|n| is_w(&n, b"delay") || is_w(&n, b"time"))
        {
            hits.add(Family::Sqli, score::STRONG, "sqli.waitfor", tok.at);
        }
        return;
    }
    if w == b"declare" {
        if rest
            .next()
            .is_some_and(|n| n.kind == Kind::Word && n.text.starts_with(b"@"))
        {
            hits.add(Family::Sqli, score::STRONG, "sqli.declare", tok.at);
        }
        return;
    }
    if w.starts_with(b"@@") && w.len() > 3 {
        hits.add(Family::Sqli, score::MEDIUM, "sqli.system-variable", tok.at);
        return;
    }
    if prev.is_some_and(|p| is_p(&p, b";")) && STACKED.contains(&w) {
        stacked(tok, rest, hits);
        return;
    }
    if rest.next_is_open_paren() {
        function_call(prev, tok, rest, hits);
    }
}

fn function_call<'a>(prev: Option<Tok<'a>>, tok: &Tok<'a>, rest: &mut Tokens<'a>, hits: &mut Hits) {
    let w = tok.text;
    if !SQL_FUNCS.contains(&w) {
        return;
    }
    let arg = rest.next();
    // `elt(4249=4249,7259)`, `iif(2976=2976,1,1/0)`: a condition of two
    // numbers as the first argument, sqlmap's boolean probe.
    if arg.is_some_and(|a| a.kind == Kind::Num) {
        let mut after = rest.clone();
        let op = after.next();
        let b = after.next();
        if op.is_some_and(|o| is_cmp(&o)) && b.is_some_and(|b| b.kind == Kind::Num) {
            hits.add(Family::Sqli, score::MEDIUM + 1, "sqli.function", tok.at);
            return;
        }
    }
    let telling = TELLING_FUNCS.contains(&w);
    let time_based = matches!(w, b"sleep" | b"pg_sleep" | b"benchmark");
    if time_based {
        // `sleep(5)`, `sleep(5*2)`, `sleep((select ...))`; not
        // `sleep(8 hours)`: a plain word after the number is no SQL.
        let then = rest.clone().next();
        let prose = then.is_some_and(|t| {
            t.kind == Kind::Word && !matches!(t.text, b"and" | b"or" | b"xor" | b"div" | b"mod")
        });
        if !prose && arg.is_some_and(|a| a.kind == Kind::Num || is_p(&a, b"(")) {
            hits.add(
                Family::Sqli,
                score::MEDIUM + 1,
                "sqli.time-function",
                tok.at,
            );
        }
        return;
    }
    if telling {
        hits.add(Family::Sqli, score::MEDIUM, "sqli.function", tok.at);
        return;
    }
    // Generic functions only count right after a SQL operator or literal.
    let sql_context = prev.is_some_and(|p| {
        is_literal(&p)
            || is_cmp(&p)
            || (p.kind == Kind::Word
                && matches!(p.text, b"and" | b"or" | b"select" | b"where" | b"by"))
    });
    if sql_context
        && matches!(
            w,
            b"database" | b"version" | b"user" | b"current_user" | b"system_user"
        )
    {
        hits.add(Family::Sqli, score::MEDIUM, "sqli.function", tok.at);
    } else if sql_context {
        hits.add(Family::Sqli, score::WEAK, "sqli.function", tok.at);
    }
}

/// `N <cmp> N` next.
fn numeric_comparison(rest: &mut Tokens) -> bool {
    let a = rest.next();
    let op = rest.next();
    let b = rest.next();
    a.is_some_and(|a| a.kind == Kind::Num)
        && op.is_some_and(|o| is_cmp(&o))
        && b.is_some_and(|b| b.kind == Kind::Num)
}

/// `(113)||chr(` / `(113)+char(`: a string built from character codes.
fn char_concat(rest: &mut Tokens) -> bool {
    let open = rest.next();
    let code = rest.next();
    let close = rest.next();
    let op = rest.next();
    let next = rest.next();
    open.is_some_and(|t| is_p(&t, b"("))
        && code.is_some_and(|t| t.kind == Kind::Num)
        && close.is_some_and(|t| is_p(&t, b")"))
        && op.is_some_and(|t| is_p(&t, b"||") || is_p(&t, b"+"))
        && next.is_some_and(|t| is_w(&t, b"chr") || is_w(&t, b"char"))
}

fn stacked<'a>(tok: &Tok<'a>, rest: &mut Tokens<'a>, hits: &mut Hits) {
    let n = rest.next();
    let n2 = rest.next();
    let ok = match (tok.text, n, n2) {
        (b"drop" | b"create" | b"alter" | b"truncate", Some(n), _) => {
            n.kind == Kind::Word
                && matches!(
                    n.text,
                    b"table"
                        | b"database"
                        | b"user"
                        | b"procedure"
                        | b"function"
                        | b"view"
                        | b"login"
                )
        }
        (b"insert", Some(n), _) => is_w(&n, b"into"),
        (b"delete", Some(n), _) => is_w(&n, b"from"),
        (b"update", Some(_), Some(n2)) => is_w(&n2, b"set"),
        (b"select", Some(n), _) => {
            n.kind != Kind::Word
                || n.text.starts_with(b"@")
                || is_w(&n, b"null")
                || is_w(&n, b"case")
        }
        (b"call", Some(n), _) => n.kind == Kind::Word,
        (b"begin", Some(n), _) => n.kind == Kind::Word && n.text.contains(&b'.'),
        (b"exec" | b"execute", Some(n), _) => {
            n.kind == Kind::Word
                && (n.text.starts_with(b"master")
                    || n.text.starts_with(b"xp_")
                    || n.text.starts_with(b"sp_")
                    || n.text.starts_with(b"@")
                    || n.text.contains(&b'.'))
        }
        (b"shutdown", None, _) => true,
        (b"shutdown", Some(n), _) => is_p(&n, b";") || is_w(&n, b"with"),
        (b"set", Some(n), _) => n.kind == Kind::Word && n.text.starts_with(b"@"),
        (b"declare" | b"waitfor", _, _) => true,
        _ => false,
    };
    if ok {
        hits.add(Family::Sqli, score::STRONG, "sqli.stacked-query", tok.at);
    }
}

/// `SELECT <list> FROM <table>`: the list must look like SQL, not prose.
fn select_from<'a>(tok: &Tok<'a>, rest: &mut Tokens<'a>, hits: &mut Hits) {
    let mut words_in_row = 0;
    let mut max_words_in_row = 0;
    let mut sqlish = false;
    let mut n_items = 0;
    let mut found_from = false;
    for t in rest.by_ref().take(40) {
        if is_w(&t, b"from") {
            found_from = true;
            break;
        }
        n_items += 1;
        if t.kind == Kind::Word && !SELECT_MODIFIERS.contains(&t.text) {
            words_in_row += 1;
            max_words_in_row = max_words_in_row.max(words_in_row);
        } else {
            words_in_row = 0;
            if t.kind != Kind::Word {
                sqlish = true;
            }
        }
    }
    if !found_from || n_items == 0 {
        // `select 1,2,3` / `select @@version` with no FROM.
        return;
    }
    let table = rest.next();
    let after = rest.next();
    let table_ok = table.is_some_and(|t| t.kind == Kind::Word || is_p(&t, b"("));
    let after_ok = match after {
        None => true,
        Some(a) => {
            a.kind != Kind::Word
                || matches!(
                    a.text,
                    b"where"
                        | b"limit"
                        | b"order"
                        | b"group"
                        | b"union"
                        | b"join"
                        | b"into"
                        | b"having"
                        | b"as"
                        | b"and"
                        | b"or"
                        | b"procedure"
                )
        }
    };
    if !table_ok || !after_ok || max_words_in_row > 1 {
        return;
    }
    let sc = if sqlish { score::STRONG } else { score::WEAK };
    hits.add(Family::Sqli, sc, "sqli.select-from", tok.at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, &mut h);
        h.best(Family::Sqli)
    }

    #[test]
    fn attacks() {
        for a in [
            "1' OR '1'='1",
            "/*!UNiOn*/ /*!SeLEct*/ 1,2",
            "-1945 /*!UNiOn*/ /*!SeLEct*/ 1,2,3,'soy vulnerable',5 -- ",
            "'UNION SELECT username||':'||password FROM users",
            "1e1 union select users from password",
            "123) AND 12=12  AND JSON_DEPTH('{}') != 2521",
            "(select(0)from(select(sleep(15)))v)",
            "3;/* a */ DECLARE @c varchar(255);",
            "-1134')  OR JSON_EXTRACT('{''aKER'': 9648}', '$.aKER') = 9648*7799",
            "(select group_concat(table_name,0x3a,column_name) from information_schema.columns where table_schema=database())",
            "1;drop table users",
            "1 waitfor delay '0:0:5'",
            &format!("{}'UNION SELECT username FROM users", "A".repeat(9000)),
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "union was a great select",
            "D'or 1st parfume",
            "1) a-b=c",
            "john+or@var.es",
            "DEAR FINN,--I think it would do; copy should reach us second post",
            "_SELECT all the rows of fromDate = @-_",
            "O'Brien",
            "D'Arcy",
            "DELETE 75oBC$",
            "Please select the best from the list",
            "I would like to request information about the idv_msdb database.",
            "I need more sleep (a lot)",
            "{\"query\": \"select\", \"from\": \"today\"}",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
