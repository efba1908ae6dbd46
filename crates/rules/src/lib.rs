//! Custom rules for Portcullis: a small expression language over request
//! fields, compiled once and evaluated per request.
//!
//! This crate owns the syntax (see the README), the compiler, which turns
//! expression text into a tree of prepared tests or a [`ParseError`] with a
//! position, and the evaluation against a [`Request`]. It is pure: no I/O,
//! and evaluation allocates only to decode a field that is percent-encoded.
//! What a matching rule does (block, log, tag) is the gateway's business.
//!
//! ```
//! use portcullis_rules::{Expr, Request};
//!
//! let expr = Expr::compile(
//!     r#"method == "POST" && path starts_with "/api/admin" && !(ip in_cidr "10.0.0.0/8")"#,
//! )
//! .unwrap();
//! let headers: [(&str, &[u8]); 1] = [("user-agent", b"curl/8.0")];
//! let outside = Request::new("POST", "a.example", "/api/admin/users", &headers, "203.0.113.9".parse().unwrap(), b"");
//! assert!(expr.matches(&outside));
//! let inside = Request::new("POST", "a.example", "/api/admin/users", &headers, "10.1.2.3".parse().unwrap(), b"");
//! assert!(!expr.matches(&inside));
//!
//! let err = Expr::compile(r#"path startswith "/x""#).unwrap_err();
//! assert_eq!(err.column, 6);
//! ```

mod eval;
mod parse;
mod request;

pub use eval::Request;

/// A compiled expression.
#[derive(Debug)]
pub struct Expr {
    root: eval::Node,
}

impl Expr {
    /// Compiles expression text: the syntax is checked, regexes are built
    /// (linear-time, size-limited), addresses and networks parsed.
    pub fn compile(text: &str) -> Result<Expr, ParseError> {
        let root = parse::Parser::new(text)?.parse()?;
        Ok(Expr { root })
    }

    /// Whether the request satisfies the expression.
    pub fn matches(&self, req: &Request) -> bool {
        self.root.eval(req)
    }
}

impl std::str::FromStr for Expr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expr::compile(s)
    }
}

/// Why an expression does not compile, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// Byte offset in the expression.
    pub offset: usize,
    /// 1-based character column of the same place.
    pub column: usize,
    pub message: String,
}

impl ParseError {
    fn new(src: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(src.len());
        let column = src
            .get(..offset)
            .map_or(offset, |before| before.chars().count())
            + 1;
        ParseError {
            offset,
            column,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
