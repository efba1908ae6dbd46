//! Tokenizer and recursive-descent parser: expression text to a [`Node`]
//! tree whose tests are compiled once (literals folded, regexes and
//! substring searchers built, CIDRs parsed).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::ParseError;
use crate::eval::{Check, Field, Node, Test};

/// Longest expression accepted.
pub(crate) const MAX_LEN: usize = 8 * 1024;
/// Deepest nesting of parentheses and `!`.
const MAX_DEPTH: usize = 64;
/// Compiled size limit of one `matches` pattern (and of its lazy DFA).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A word: field, operator name, `len`, `true`, `false`.
    Word(String),
    Str(Vec<u8>),
    Num(u64),
    /// Punctuation and symbolic operators: `( ) [ ] , . && || ! == != < <= > >=`.
    Sym(&'static str),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("the string {:?}", String::from_utf8_lossy(s)),
            Tok::Num(n) => format!("the number {n}"),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::End => "the end of the expression".into(),
        }
    }
}

struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    i: usize,
}

const SYMBOLS: [&str; 14] = [
    "&&", "||", "==", "!=", "<=", ">=", "!", "<", ">", "(", ")", "[", "]", ",",
];

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    /// The next token and its byte offset.
    fn next(&mut self) -> Result<(Tok, usize), ParseError> {
        self.skip_ws();
        let at = self.i;
        let Some(&c) = self.b.get(at) else {
            return Ok((Tok::End, at));
        };
        if c == b'"' {
            return self.string(at).map(|s| (Tok::Str(s), at));
        }
        if c.is_ascii_digit() {
            let end = self.scan(|c| c.is_ascii_digit());
            let n = self.src[at..end]
                .parse()
                .map_err(|_| ParseError::new(self.src, at, "number too large"))?;
            return Ok((Tok::Num(n), at));
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut end = self.scan(is_word_byte);
            // `header.x-api-key`, `query.user[id]`: the name after the dot
            // runs up to a blank, a quote or an operator character.
            if self.b.get(end) == Some(&b'.') {
                self.i = end + 1;
                end = self.scan(is_name_byte);
            }
            return Ok((Tok::Word(self.src[at..end].to_string()), at));
        }
        for sym in SYMBOLS {
            if self.b[at..].starts_with(sym.as_bytes()) {
                self.i += sym.len();
                return Ok((Tok::Sym(sym), at));
            }
        }
        let ch = self.src[at..].chars().next().unwrap_or('?');
        Err(ParseError::new(
            self.src,
            at,
            format!("unexpected character {ch:?}"),
        ))
    }

    fn scan(&mut self, keep: impl Fn(u8) -> bool) -> usize {
        while self.i < self.b.len() && keep(self.b[self.i]) {
            self.i += 1;
        }
        self.i
    }

    /// A double-quoted string. `\"`, `\\`, `\n`, `\r` and `\t` are escapes;
    /// any other backslash is kept, so regex classes such as `\d` need no doubling.
    fn string(&mut self, at: usize) -> Result<Vec<u8>, ParseError> {
        let mut out = Vec::new();
        self.i = at + 1;
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(ParseError::new(self.src, at, "unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let escaped = match self.b.get(self.i) {
                        Some(b'"') => Some(b'"'),
                        Some(b'\\') => Some(b'\\'),
                        Some(b'n') => Some(b'\n'),
                        Some(b'r') => Some(b'\r'),
                        Some(b't') => Some(b'\t'),
                        _ => None,
                    };
                    match escaped {
                        Some(e) => {
                            out.push(e);
                            self.i += 1;
                        }
                        None => out.push(b'\\'),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_name_byte(c: u8) -> bool {
    !(c.is_ascii_whitespace()
        || matches!(
            c,
            b'"' | b'(' | b')' | b'!' | b'=' | b'<' | b'>' | b',' | b'&' | b'|'
        ))
}

pub(crate) struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str) -> Result<Self, ParseError> {
        if src.len() > MAX_LEN {
            return Err(ParseError::new(
                src,
                0,
                format!("expression longer than {MAX_LEN} bytes"),
            ));
        }
        let mut lex = Lexer {
            src,
            b: src.as_bytes(),
            i: 0,
        };
        let (tok, at) = lex.next()?;
        Ok(Parser {
            lex,
            tok,
            at,
            depth: 0,
        })
    }

    fn bump(&mut self) -> Result<(Tok, usize), ParseError> {
        let (next, at) = self.lex.next()?;
        let tok = std::mem::replace(&mut self.tok, next);
        let was = std::mem::replace(&mut self.at, at);
        Ok((tok, was))
    }

    fn error(&self, at: usize, message: impl Into<String>) -> ParseError {
        ParseError::new(self.lex.src, at, message)
    }

    fn expected(&self, what: &str) -> ParseError {
        self.error(
            self.at,
            format!("expected {what}, found {}", self.tok.describe()),
        )
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(self.tok, Tok::Sym(s) if s == sym)
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), ParseError> {
        if !self.is_sym(sym) {
            return Err(self.expected(&format!("`{sym}`")));
        }
        self.bump().map(|_| ())
    }

    /// The whole input as one expression.
    pub fn parse(mut self) -> Result<Node, ParseError> {
        if self.tok == Tok::End {
            return Err(self.error(0, "empty expression"));
        }
        let node = self.or()?;
        if self.tok != Tok::End {
            return Err(self.expected("`&&`, `||` or the end of the expression"));
        }
        Ok(node)
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut items = vec![self.and()?];
        while self.is_sym("||") {
            self.bump()?;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::Any(items)
        })
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut items = vec![self.unary()?];
        while self.is_sym("&&") {
            self.bump()?;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::All(items)
        })
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(self.at, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        if self.is_sym("!") {
            self.bump()?;
            return self.nested(|p| Ok(Node::Not(Box::new(p.unary()?))));
        }
        if self.is_sym("(") {
            self.bump()?;
            let inner = self.nested(Self::or)?;
            self.expect_sym(")")?;
            return Ok(inner);
        }
        match &self.tok {
            Tok::Word(w) if w == "true" => {
                self.bump()?;
                Ok(Node::Const(true))
            }
            Tok::Word(w) if w == "false" => {
                self.bump()?;
                Ok(Node::Const(false))
            }
            Tok::Word(_) => self.comparison(),
            _ => Err(self.expected("a field, `len(`, `!` or `(`")),
        }
    }

    /// `field op literal` or `len(field) op number`.
    fn comparison(&mut self) -> Result<Node, ParseError> {
        let (Tok::Word(word), at) = self.bump()? else {
            return Err(self.expected("a field"));
        };
        if word == "len" && self.is_sym("(") {
            self.bump()?;
            let (field, field_at) = self.field()?;
            if field == Field::Ip {
                return Err(self.error(field_at, "len() does not apply to ip"));
            }
            self.expect_sym(")")?;
            return self.length_test(field);
        }
        let field = self.field_named(word, at)?;
        self.test(field)
    }

    fn field(&mut self) -> Result<(Field, usize), ParseError> {
        match self.bump()? {
            (Tok::Word(w), at) => Ok((self.field_named(w, at)?, at)),
            (tok, at) => Err(self.error(at, format!("expected a field, found {}", tok.describe()))),
        }
    }

    /// Resolves a field word (already consumed), such as `path` or `header.x-api-key`.
    fn field_named(&self, word: String, at: usize) -> Result<Field, ParseError> {
        let (kind, name) = match word.split_once('.') {
            Some((kind, name)) => (kind, Some(name)),
            None => (word.as_str(), None),
        };
        let field = match (kind, name) {
            ("method", None) => Field::Method,
            ("host", None) => Field::Host,
            ("path", None) => Field::Path,
            ("query", None) => Field::Query,
            ("ip", None) => Field::Ip,
            ("body", None) => Field::Body,
            ("user_agent", None) => Field::UserAgent,
            ("header" | "cookie" | "query" | "args", None | Some("")) => {
                return Err(self.error(at, format!("`{kind}` needs a name: `{kind}.<name>`")));
            }
            ("header", Some(name)) => Field::Header(name.to_ascii_lowercase().into()),
            ("cookie", Some(name)) => Field::Cookie(name.as_bytes().into()),
            ("query", Some(name)) => Field::QueryParam(name.as_bytes().into()),
            ("args", Some(name)) => Field::Arg(name.as_bytes().into()),
            _ => {
                return Err(self.error(
                    at,
                    format!(
                        "unknown field `{word}` (fields: method, host, path, query, query.<name>, \
                         args.<name>, header.<name>, cookie.<name>, ip, body, user_agent)"
                    ),
                ));
            }
        };
        Ok(field)
    }

    fn length_test(&mut self, field: Field) -> Result<Node, ParseError> {
        let (op, op_at) = self.bump()?;
        let cmp = match op {
            Tok::Sym("<") => Cmp::Lt,
            Tok::Sym("<=") => Cmp::Le,
            Tok::Sym(">") => Cmp::Gt,
            Tok::Sym(">=") => Cmp::Ge,
            Tok::Sym("==") => Cmp::Eq,
            Tok::Sym("!=") => Cmp::Ne,
            other => {
                return Err(self.error(
                    op_at,
                    format!(
                        "expected <, <=, >, >=, == or != after len(...), found {}",
                        other.describe()
                    ),
                ));
            }
        };
        match self.bump()? {
            (Tok::Num(n), _) => Ok(Node::Test(Box::new(Test {
                field,
                check: Check::Len(cmp, n),
            }))),
            (other, at) => {
                Err(self.error(at, format!("expected a number, found {}", other.describe())))
            }
        }
    }

    fn test(&mut self, field: Field) -> Result<Node, ParseError> {
        let (op, op_at) = self.bump()?;
        let op = match &op {
            Tok::Sym(s @ ("==" | "!=")) => *s,
            Tok::Word(w) => match w.as_str() {
                "contains" => "contains",
                "icontains" => "icontains",
                "starts_with" => "starts_with",
                "ends_with" => "ends_with",
                "matches" => "matches",
                "in" => "in",
                "in_cidr" => "in_cidr",
                _ => return Err(self.unknown_operator(&op, op_at)),
            },
            Tok::Sym("<" | "<=" | ">" | ">=") => {
                return Err(self.error(
                    op_at,
                    "sizes are compared with len(...), e.g. `len(body) > 1000`",
                ));
            }
            _ => return Err(self.unknown_operator(&op, op_at)),
        };
        if field == Field::Ip {
            return self.ip_test(op, op_at);
        }
        let fold = field == Field::Host;
        let check = match op {
            "in" => Check::In(self.list()?, fold),
            "in_cidr" => Check::InCidr(self.cidrs()?),
            _ => {
                let (lit, lit_at) = self.string()?;
                self.string_check(op, lit, lit_at, fold)?
            }
        };
        let node = Node::Test(Box::new(Test { field, check }));
        Ok(if op == "!=" {
            Node::Not(Box::new(node))
        } else {
            node
        })
    }

    fn unknown_operator(&self, op: &Tok, at: usize) -> ParseError {
        self.error(
            at,
            format!(
                "expected an operator (==, !=, contains, icontains, starts_with, ends_with, \
                 matches, in, in_cidr), found {}",
                op.describe()
            ),
        )
    }

    fn string_check(
        &self,
        op: &str,
        lit: Vec<u8>,
        at: usize,
        fold: bool,
    ) -> Result<Check, ParseError> {
        let lit = if fold { lit.to_ascii_lowercase() } else { lit };
        Ok(match op {
            "==" | "!=" => Check::Eq(lit.into(), fold),
            "contains" if !fold => {
                Check::Contains(Box::new(memchr::memmem::Finder::new(&lit).into_owned()))
            }
            "contains" | "icontains" => Check::IContains(
                aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build([&lit])
                    .map_err(|e| self.error(at, e.to_string()))?,
            ),
            "starts_with" => Check::StartsWith(lit.into(), fold),
            "ends_with" => Check::EndsWith(lit.into(), fold),
            _ => {
                let pattern = std::str::from_utf8(&lit)
                    .map_err(|_| self.error(at, "the pattern is not UTF-8"))?;
                let regex = regex::bytes::RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| self.error(at, format!("bad pattern: {e}")))?;
                Check::Matches(regex)
            }
        })
    }

    fn ip_test(&mut self, op: &str, op_at: usize) -> Result<Node, ParseError> {
        let check = match op {
            "==" | "!=" => {
                let (lit, at) = self.string()?;
                let ip = std::str::from_utf8(&lit)
                    .ok()
                    .and_then(|s| s.parse::<IpAddr>().ok())
                    .ok_or_else(|| self.error(at, "not an IP address"))?;
                Check::IpEq(ip)
            }
            "in" | "in_cidr" => Check::InCidr(self.cidrs()?),
            _ => return Err(self.error(op_at, "ip supports ==, !=, in and in_cidr")),
        };
        let node = Node::Test(Box::new(Test {
            field: Field::Ip,
            check,
        }));
        Ok(if op == "!=" {
            Node::Not(Box::new(node))
        } else {
            node
        })
    }

    fn string(&mut self) -> Result<(Vec<u8>, usize), ParseError> {
        match self.bump()? {
            (Tok::Str(s), at) => Ok((s, at)),
            (other, at) => Err(self.error(
                at,
                format!(
                    "expected a string in double quotes, found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// `[ "a", "b" ]`
    fn list(&mut self) -> Result<Vec<Box<[u8]>>, ParseError> {
        self.expect_sym("[")?;
        let mut items = Vec::new();
        while !self.is_sym("]") {
            items.push(self.string()?.0.into_boxed_slice());
            if self.is_sym(",") {
                self.bump()?;
            } else if !self.is_sym("]") {
                return Err(self.expected("`,` or `]`"));
            }
        }
        self.bump()?;
        Ok(items)
    }

    /// One CIDR or address in quotes, or a list of them.
    fn cidrs(&mut self) -> Result<Vec<IpNet>, ParseError> {
        let items: Vec<(Vec<u8>, usize)> = if self.is_sym("[") {
            let start = self.at;
            let list = self.list()?;
            list.into_iter().map(|s| (s.into_vec(), start)).collect()
        } else {
            vec![self.string()?]
        };
        items
            .into_iter()
            .map(|(s, at)| {
                let text = String::from_utf8_lossy(&s).into_owned();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| self.error(at, format!("{text:?} is not a CIDR or an IP address")))
            })
            .collect()
    }
}

/// How `len(...)` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    pub fn holds(self, a: u64, b: u64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}
