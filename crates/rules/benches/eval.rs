//! Our matcher against `cel-interpreter` on the same expressions and request.
//!
//! For each expression: `portcullis` builds the request view and evaluates;
//! `cel` builds a CEL scope with the request's variables and evaluates (what
//! a gateway pays per request); `cel-eval-only` evaluates against a scope
//! built once, the lower bound of CEL's cost.
//!
//! cargo bench -p portcullis-rules --bench eval

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;

use cel_interpreter::{Context, Program};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_rules::{Expr, Request};

/// (name, our syntax, CEL syntax)
const EXPRESSIONS: [(&str, &str, &str); 4] = [
    (
        "admin-post",
        r#"method == "POST" && path starts_with "/api/admin""#,
        r#"method == "POST" && path.startsWith("/api/admin")"#,
    ),
    (
        "scanner-ua",
        r#"header.user-agent icontains "sqlmap""#,
        // CEL has no case-insensitive contains: a `(?i)` regex is the way.
        r#"headers["user-agent"].matches("(?i)sqlmap")"#,
    ),
    (
        "numeric-id",
        r#"query.id matches "^[0-9]+$""#,
        r#"query["id"].matches("^[0-9]+$")"#,
    ),
    (
        "size-or-host",
        r#"len(body) > 10000 || host in ["a.example", "b.example"]"#,
        r#"size(body) > 10000 || host in ["a.example", "b.example"]"#,
    ),
];

const HEADERS: [(&str, &[u8]); 5] = [
    ("host", b"b.example"),
    (
        "user-agent",
        b"Mozilla/5.0 (X11; Linux x86_64) sqlmap/1.7.2#stable",
    ),
    ("accept", b"*/*"),
    ("cookie", b"session=abc123; theme=dark"),
    ("content-type", b"application/json"),
];
const TARGET: &str = "/api/admin/users?id=12345&page=2";
const BODY: &[u8] = br#"{"name":"alice","role":"admin"}"#;

fn ip() -> IpAddr {
    IpAddr::from([203, 0, 113, 7])
}

fn request() -> Request<'static> {
    Request::new("POST", "b.example", TARGET, &HEADERS, ip(), BODY)
}

/// A CEL scope holding every field a rule may read, as a gateway would build it.
fn cel_scope<'a>(root: &'a Context<'a>) -> Context<'a> {
    let mut ctx = root.new_inner_scope();
    let (path, query) = TARGET.split_once('?').unwrap_or((TARGET, ""));
    let headers: HashMap<String, String> = HEADERS
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ctx.add_variable_from_value("method", "POST");
    ctx.add_variable_from_value("host", "b.example");
    ctx.add_variable_from_value("path", path);
    ctx.add_variable_from_value("ip", ip().to_string());
    ctx.add_variable_from_value("body", String::from_utf8_lossy(BODY).into_owned());
    ctx.add_variable_from_value("headers", headers);
    ctx.add_variable_from_value("query", params);
    ctx
}

fn cel_bool(program: &Program, ctx: &Context) -> bool {
    matches!(program.execute(ctx), Ok(cel_interpreter::Value::Bool(true)))
}

fn bench(c: &mut Criterion) {
    let root = Context::default();
    let mut group = c.benchmark_group("rules");
    for (name, ours, cel) in EXPRESSIONS {
        let expr = Expr::compile(ours).expect("our expression compiles");
        let program = Program::compile(cel).expect("CEL expression compiles");
        let prebuilt = cel_scope(&root);
        assert_eq!(
            expr.matches(&request()),
            cel_bool(&program, &prebuilt),
            "{name}: both engines must agree"
        );
        group.bench_function(format!("portcullis/{name}"), |b| {
            b.iter(|| expr.matches(&black_box(request())))
        });
        group.bench_function(format!("cel/{name}"), |b| {
            b.iter(|| cel_bool(&program, &cel_scope(black_box(&root))))
        });
        group.bench_function(format!("cel-eval-only/{name}"), |b| {
            b.iter(|| cel_bool(&program, black_box(&prebuilt)))
        });
    }
    group.finish();
    let mut compile = c.benchmark_group("compile");
    let (_, ours, cel) = EXPRESSIONS[0];
    compile.bench_function("portcullis", |b| b.iter(|| Expr::compile(black_box(ours))));
    compile.bench_function("cel", |b| b.iter(|| Program::compile(black_box(cel))));
    compile.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
