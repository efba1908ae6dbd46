//! Response side: does an origin error page leak internals?

use serde::Serialize;

/// What kind of internals a response leaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakKind {
    /// A Java stack trace (`at com.x.Y.method(Y.java:42)`).
    JavaStackTrace,
    /// A Python traceback.
    PythonTraceback,
    /// A PHP error with file and line.
    PhpError,
    /// A .NET exception / stack trace or the ASP.NET yellow page.
    DotNetException,
    /// A Node.js stack trace (`at fn (/app/x.js:1:2)`).
    NodeStackTrace,
    /// A SQL error message from a database driver.
    SqlError,
    /// An uncaught exception message (`Uncaught InvalidArgumentException: ...`).
    UncaughtException,
}

impl LeakKind {
    /// A short stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakKind::JavaStackTrace => "java_stack_trace",
            LeakKind::PythonTraceback => "python_traceback",
            LeakKind::PhpError => "php_error",
            LeakKind::DotNetException => "dotnet_exception",
            LeakKind::NodeStackTrace => "node_stack_trace",
            LeakKind::SqlError => "sql_error",
            LeakKind::UncaughtException => "uncaught_exception",
        }
    }
}

/// Most bytes of a response body examined.
const MAX_SCAN: usize = 64 * 1024;

const SQL_ERRORS: &[&[u8]] = &[
    b"You have an error in your SQL syntax",
    b"SQLSTATE[",
    b"ORA-00933",
    b"ORA-01756",
    b"ORA-00942",
    b"PG::SyntaxError",
    b"psycopg2.errors",
    b"ERROR:  syntax error at or near",
    b"unterminated quoted string at or near",
    b"Unclosed quotation mark after the character string",
    b"Microsoft OLE DB Provider for SQL Server",
    b"SQLite3::SQLException",
    b"sqlite3.OperationalError",
    b"near \"",
    b"com.mysql.jdbc.exceptions",
    b"java.sql.SQLException",
    b"System.Data.SqlClient.SqlException",
    b"mysql_fetch_array()",
    b"Warning: mysql_",
    b"Warning: pg_",
    b"MySqlException",
    b"SQL syntax error",
];

/// Whether a response leaks internals. Only error statuses (>= 400) and
/// bodies that read as text are examined.
pub fn leaks_internals(status: u16, body: &[u8]) -> Option<LeakKind> {
    if status < 400 || body.is_empty() {
        return None;
    }
    let b = &body[..body.len().min(MAX_SCAN)];
    let has = |n: &[u8]| memchr::memmem::find(b, n).is_some();
    if has(b"Uncaught ") && (has(b"Exception") || has(b"Error:")) {
        return Some(LeakKind::UncaughtException);
    }
    if SQL_ERRORS.iter().any(|e| *e != b"near \"" && has(e))
        || (has(b"near \"") && has(b"syntax error"))
    {
        return Some(LeakKind::SqlError);
    }
    if has(b"Traceback (most recent call last)") {
        return Some(LeakKind::PythonTraceback);
    }
    if java_trace(b) {
        return Some(LeakKind::JavaStackTrace);
    }
    if has(b"Server Error in '/' Application")
        || (has(b"System.") && has(b"Exception") && has(b"   at "))
        || has(b".cs:line ")
    {
        return Some(LeakKind::DotNetException);
    }
    if (has(b"Fatal error: ") || has(b"Warning: ") || has(b"Parse error: ") || has(b"Notice: "))
        && has(b".php")
        && (has(b" on line ") || has(b":"))
    {
        return Some(LeakKind::PhpError);
    }
    if node_trace(b) {
        return Some(LeakKind::NodeStackTrace);
    }
    None
}

/// `\tat pkg.Class.method(File.java:12)` at least twice.
fn java_trace(b: &[u8]) -> bool {
    memchr::memmem::find_iter(b, b".java:")
        .take(64)
        .filter(|&p| b[..p].iter().rev().take(200).any(|&c| c == b'('))
        .count()
        >= 2
        || (memchr::memmem::find(b, b"Exception").is_some()
            && memchr::memmem::find(b, b"\tat ").is_some()
            && memchr::memmem::find(b, b".java").is_some())
}

/// `    at fn (/path/file.js:10:5)` at least twice.
fn node_trace(b: &[u8]) -> bool {
    memchr::memmem::find_iter(b, b"    at ")
        .take(64)
        .filter(|&p| {
            let line = &b[p..(p + 200).min(b.len())];
            let line = &line[..line.iter().position(|&c| c == b'\n').unwrap_or(line.len())];
            memchr::memmem::find(line, b".js:").is_some()
                || memchr::memmem::find(line, b"node:internal").is_some()
        })
        .count()
        >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks() {
        assert_eq!(
            leaks_internals(500, b"PHP Fatal error:  Uncaught InvalidArgumentException: Malformed UTF-8 characters in /var/www/x.php:12"),
            Some(LeakKind::UncaughtException)
        );
        assert_eq!(
            leaks_internals(
                500,
                b"You have an error in your SQL syntax; check the manual"
            ),
            Some(LeakKind::SqlError)
        );
        assert_eq!(
            leaks_internals(
                500,
                b"Traceback (most recent call last):\n  File \"app.py\", line 3"
            ),
            Some(LeakKind::PythonTraceback)
        );
        assert_eq!(
            leaks_internals(500, b"java.lang.NullPointerException\n\tat com.x.Y.run(Y.java:10)\n\tat com.x.Z.go(Z.java:5)"),
            Some(LeakKind::JavaStackTrace)
        );
        assert_eq!(
            leaks_internals(500, b"TypeError: x is undefined\n    at f (/app/index.js:3:9)\n    at g (/app/index.js:7:1)"),
            Some(LeakKind::NodeStackTrace)
        );
        assert_eq!(
            leaks_internals(500, b"System.NullReferenceException: Object reference\n   at App.Home.Index() in C:\\src\\Home.cs:line 12"),
            Some(LeakKind::DotNetException)
        );
        assert_eq!(
            leaks_internals(200, b"You have an error in your SQL syntax"),
            None
        );
        assert_eq!(leaks_internals(404, b"<h1>Not found</h1>"), None);
        assert_eq!(leaks_internals(500, b"{\"error\":\"internal\"}"), None);
    }
}
