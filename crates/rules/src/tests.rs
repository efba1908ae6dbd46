use super::*;

const UA: &[u8] = b"Mozilla/5.0 sqlmap/1.7";

fn headers() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("host", b"A.Example:8443"),
        ("user-agent", UA),
        ("cookie", b"theme=dark; session=abc123"),
        ("content-type", b"application/x-www-form-urlencoded"),
        ("x-api-key", b"k-1"),
    ]
}

fn check(expr: &str, method: &str, target: &str, body: &[u8], ip: &str) -> bool {
    let headers = headers();
    let req = Request::new(
        method,
        "A.Example:8443",
        target,
        &headers,
        ip.parse().expect("ip"),
        body,
    );
    Expr::compile(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .matches(&req)
}

fn get(expr: &str, target: &str) -> bool {
    check(expr, "GET", target, b"", "203.0.113.7")
}

#[test]
fn the_documented_examples_work() {
    let admin =
        r#"method == "POST" && path starts_with "/api/admin" && !(ip in_cidr "10.0.0.0/8")"#;
    assert!(check(admin, "POST", "/api/admin/x", b"", "203.0.113.7"));
    assert!(!check(admin, "POST", "/api/admin/x", b"", "10.9.9.9"));
    assert!(!check(admin, "GET", "/api/admin/x", b"", "203.0.113.7"));
    assert!(!check(admin, "POST", "/api/public", b"", "203.0.113.7"));

    assert!(get(r#"header.user-agent icontains "SQLMAP""#, "/"));
    assert!(get(r#"user_agent contains "sqlmap""#, "/"));
    assert!(!get(r#"user_agent contains "SQLMAP""#, "/"));

    assert!(get(r#"query.id matches "^[0-9]+$""#, "/item?id=42"));
    assert!(!get(
        r#"query.id matches "^[0-9]+$""#,
        "/item?id=42%20or%201"
    ));

    assert!(check(
        r#"len(body) > 10"#,
        "POST",
        "/",
        b"0123456789ab",
        "203.0.113.7"
    ));
    assert!(!check(
        r#"len(body) > 10"#,
        "POST",
        "/",
        b"0123",
        "203.0.113.7"
    ));

    assert!(get(r#"cookie.missing == """#, "/"));
    assert!(get(r#"cookie.session == "abc123""#, "/"));

    assert!(get(r#"host in ["a.example", "b.example"]"#, "/"));
    assert!(!get(r#"host in ["b.example"]"#, "/"));

    assert!(check(
        r#"args.q contains "<script""#,
        "POST",
        "/",
        b"q=%3Cscript%3E",
        "203.0.113.7"
    ));
    assert!(get(r#"args.q contains "<script""#, "/?q=%3Cscript%3E"));
}

#[test]
fn missing_fields_are_empty() {
    assert!(get(r#"header.x-none == """#, "/"));
    assert!(get(r#"query.none == "" && len(query.none) == 0"#, "/?a=1"));
    assert!(get(r#"query == """#, "/path"));
    assert!(get(r#"query == "a=1&b=2""#, "/path?a=1&b=2"));
}

#[test]
fn operators() {
    assert!(get(r#"path ends_with ".php""#, "/x/index.php"));
    assert!(get(r#"path != "/a""#, "/b"));
    assert!(get(r#"method in ["GET", "HEAD"]"#, "/"));
    assert!(get(r#"!(method == "POST")"#, "/"));
    assert!(get(r#"! method == "POST""#, "/"));
    assert!(get(r#"false || true && !false"#, "/"));
    assert!(!get(r#"true && (false || false)"#, "/"));
    assert!(get(
        r#"len(path) >= 2 && len(path) <= 2 && len(path) != 3 && len(path) < 3"#,
        "/a"
    ));
    assert!(get(r#"header.x-api-key starts_with "k-""#, "/"));
}

#[test]
fn addresses() {
    assert!(get(r#"ip == "203.0.113.7""#, "/"));
    assert!(get(r#"ip != "203.0.113.8""#, "/"));
    assert!(get(r#"ip in ["198.51.100.0/24", "203.0.113.7"]"#, "/"));
    assert!(get(r#"ip in_cidr ["203.0.113.0/24"]"#, "/"));
    // A dual-stack listener reports IPv4 clients as mapped IPv6 addresses.
    assert!(check(
        r#"ip in_cidr "10.0.0.0/8""#,
        "GET",
        "/",
        b"",
        "::ffff:10.1.2.3"
    ));
    assert!(check(
        r#"ip in_cidr "2001:db8::/32""#,
        "GET",
        "/",
        b"",
        "2001:db8::1"
    ));
    let headers: [(&str, &[u8]); 1] = [("x-real-ip", b" 10.0.0.9 ")];
    let req = Request::new("GET", "h", "/", &headers, "192.0.2.1".parse().unwrap(), b"");
    let expr = Expr::compile(r#"header.x-real-ip in_cidr "10.0.0.0/8""#).unwrap();
    assert!(expr.matches(&req));
    assert!(!get(r#"header.x-api-key in_cidr "10.0.0.0/8""#, "/"));
}

#[test]
fn host_compares_without_case_or_port() {
    assert!(get(r#"host == "a.example""#, "/"));
    assert!(get(r#"host ends_with ".EXAMPLE""#, "/"));
    assert!(get(r#"host contains "EXAMP""#, "/"));
}

#[test]
fn path_is_normalised_before_matching() {
    let rule = r#"path starts_with "/api/admin""#;
    for target in [
        "/api/admin",
        "/api//admin/x",
        "/api/%61dmin",
        "/api/x/../admin",
        "/api/./admin",
    ] {
        assert!(get(rule, target), "{target}");
    }
    assert!(!get(rule, "/api/administrator/../user"));
}

#[test]
fn forms_are_read_only_when_declared() {
    let headers: [(&str, &[u8]); 1] = [("content-type", b"application/json")];
    let req = Request::new(
        "POST",
        "h",
        "/",
        &headers,
        "192.0.2.1".parse().unwrap(),
        b"q=<script",
    );
    let expr = Expr::compile(r#"args.q contains "<script""#).unwrap();
    assert!(!expr.matches(&req));
}

#[test]
fn errors_point_at_the_problem() {
    for (text, column, needle) in [
        (r#"path startswith "/x""#, 6, "expected an operator"),
        (r#"paht == "/x""#, 1, "unknown field `paht`"),
        (r#"path == "/x" &&"#, 16, "expected a field"),
        (r#"path == "/x"#, 9, "unterminated string"),
        (r#"(path == "/x""#, 14, "expected `)`"),
        (r#"query.id matches "(""#, 18, "bad pattern"),
        (r#"ip in_cidr "10.0.0.0/33""#, 12, "not a CIDR"),
        (r#"ip contains "10.""#, 4, "ip supports"),
        (r#"ip == "nope""#, 7, "not an IP address"),
        (r#"len(body) > "x""#, 13, "expected a number"),
        (r#"body > 3"#, 6, "len(...)"),
        (r#"header == "x""#, 1, "needs a name"),
        (r#"path == "/x" path"#, 14, "expected `&&`"),
        (r#"method == @"#, 11, "unexpected character"),
        ("", 1, "empty expression"),
    ] {
        let err = Expr::compile(text).expect_err(text);
        assert_eq!(err.column, column, "{text}: {err}");
        assert!(err.message.contains(needle), "{text}: {err}");
    }
}

#[test]
fn nesting_and_size_are_bounded() {
    let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
    assert!(Expr::compile(&deep).unwrap_err().message.contains("nested"));
    let nots = format!("{}true", "!".repeat(100));
    assert!(Expr::compile(&nots).unwrap_err().message.contains("nested"));
    let long = format!(r#"path == "{}""#, "a".repeat(parse::MAX_LEN));
    assert!(Expr::compile(&long).unwrap_err().message.contains("longer"));
    // Huge repetitions exceed the compiled size limit instead of eating memory.
    assert!(Expr::compile(r#"body matches "(a{1000}){1000}""#).is_err());
}

#[test]
fn string_escapes() {
    assert!(get(r#"query.q == "a\"b""#, "/?q=a%22b"));
    assert!(get(r#"query.q matches "^\d+$""#, "/?q=123"));
    assert!(get(r#"query.q == "a\\b""#, "/?q=a%5Cb"));
    assert!(get(r#"query.q contains "\n""#, "/?q=a%0Ab"));
}
