//! No inspection limit is a way through: a request that carries more than
//! the engine reads says so in its verdict, and is refused by default.

mod common;
use common::*;
use portcullis_detect::{DEFAULT_THRESHOLD, Detector, OnIncomplete, Profile, RawRequest, Verdict};

const ATTACK: &str = "1%27%20UNION%20SELECT%20password%20FROM%20users--";

fn incomplete(v: &Verdict, reason: &str) {
    assert!(
        v.incomplete.reasons().contains(&reason),
        "{reason} not reported: {:?} {:?}",
        v.incomplete,
        v.findings
    );
    assert!(blocked(v), "refused by default: {:?}", v.findings);
    assert!(
        v.findings
            .iter()
            .any(|f| f.rule_id == "inspection.incomplete"),
        "{:?}",
        v.findings
    );
}

#[test]
fn a_payload_after_the_last_pair_read() {
    let mut q: Vec<String> = (0..300).map(|i| format!("k{i}=v")).collect();
    q.push(format!("x={ATTACK}"));
    let v = run("GET", &format!("/?{}", q.join("&")), &[], b"");
    incomplete(&v, "pairs");
    let body = q.join("&");
    let v = run(
        "POST",
        "/",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    incomplete(&v, "pairs");
}

#[test]
fn a_payload_in_the_65th_cookie() {
    let mut c: Vec<String> = (0..64).map(|i| format!("c{i}=v")).collect();
    c.push(format!("x={ATTACK}"));
    let v = run("GET", "/", &[("cookie", &c.join("; "))], b"");
    incomplete(&v, "cookies");
}

#[test]
fn a_payload_nested_40_deep() {
    let body = format!(
        "{}\"<script>alert(1)</script>\"{}",
        "{\"a\":".repeat(40),
        "}".repeat(40)
    );
    let v = run(
        "POST",
        "/",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    incomplete(&v, "nesting");
}

#[test]
fn a_multipart_filename_star() {
    let body = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\"; filename*=UTF-8''shell.php\r\nContent-Type: image/png\r\n\r\nxx\r\n--b--\r\n";
    let v = run(
        "POST",
        "/",
        &[("content-type", "multipart/form-data; boundary=b")],
        body.as_bytes(),
    );
    incomplete(&v, "ambiguous_multipart");
    assert!(
        v.findings
            .iter()
            .any(|f| f.family == portcullis_detect::Family::Webshell),
        "the extended file name is inspected: {:?}",
        v.findings
    );
}

#[test]
fn two_multipart_boundaries() {
    let body = "--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nok\r\n--b--\r\n";
    let v = run(
        "POST",
        "/",
        &[(
            "content-type",
            "multipart/form-data; boundary=b; boundary=c",
        )],
        body.as_bytes(),
    );
    incomplete(&v, "ambiguous_multipart");
}

#[test]
fn text_around_the_multipart_parts_is_inspected() {
    let attack = "1' union select password from users--";
    for body in [
        format!(
            "{attack}\r\n--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nok\r\n--b--\r\n"
        ),
        format!("--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nok\r\n--b--\r\n{attack}"),
    ] {
        let v = run(
            "POST",
            "/",
            &[("content-type", "multipart/form-data; boundary=b")],
            body.as_bytes(),
        );
        assert!(
            v.findings
                .iter()
                .any(|f| f.family == portcullis_detect::Family::Sqli),
            "{body:?}: {:?}",
            v.findings
        );
    }
    // The usual whitespace after the closing delimiter is nothing.
    let clean = "--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nok\r\n--b--\r\n";
    let v = run(
        "POST",
        "/",
        &[("content-type", "multipart/form-data; boundary=b")],
        clean.as_bytes(),
    );
    assert!(v.findings.is_empty(), "{:?}", v.findings);
}

#[test]
fn stacked_encodings_beyond_the_last_round() {
    // `<` percent-encoded six times.
    let mut v = String::from("<script>alert(1)</script>");
    for _ in 0..6 {
        v = v
            .replace('%', "%25")
            .replace('<', "%3C")
            .replace('>', "%3E");
    }
    let verdict = run("GET", &format!("/?q={v}"), &[], b"");
    incomplete(&verdict, "encodings");
}

#[test]
fn every_header_an_origin_reads_is_inspected() {
    for name in ["accept-language", "authorization", "accept", "x-anything"] {
        let value = "x' UNION SELECT password FROM users--";
        let v = run("GET", "/", &[(name, value)], b"");
        assert!(blocked(&v), "{name}: {:?}", v.findings);
    }
    // The gateway's own protocol headers are its business.
    let v = run(
        "GET",
        "/",
        &[("signature-input", "x' UNION SELECT password FROM users--")],
        b"",
    );
    assert!(!blocked(&v), "{:?}", v.findings);
}

#[test]
fn the_route_may_take_incomplete_requests_as_a_signal() {
    let detector = Detector::new(Profile {
        on_incomplete: OnIncomplete::Signal,
        ..Profile::default()
    });
    let c: Vec<String> = (0..70).map(|i| format!("c{i}=v")).collect();
    let cookie = c.join("; ");
    let headers: [(&str, &[u8]); 1] = [("cookie", cookie.as_bytes())];
    let v = detector.inspect(&RawRequest {
        method: "GET",
        target: b"/",
        headers: &headers,
        body: b"",
        body_truncated: false,
    });
    assert!(v.incomplete.cookies);
    assert!(!v.is_attack(DEFAULT_THRESHOLD), "{:?}", v.findings);
    assert!(v.signal_score > 0);
    // A body the caller cut short.
    let v = detector.inspect(&RawRequest {
        method: "POST",
        target: b"/",
        headers: &[],
        body: b"abc",
        body_truncated: true,
    });
    assert!(v.incomplete.body);
}

#[test]
fn json_followed_by_more_is_read_to_the_end() {
    // Newline-delimited JSON (analytics beacons) passes; an attack in the
    // second document does not get through unread.
    let ndjson = "{\"e\":\"view\",\"t\":1}\n{\"e\":\"click\",\"t\":2}\n";
    let v = run(
        "POST",
        "/",
        &[("content-type", "application/json")],
        ndjson.as_bytes(),
    );
    assert!(!blocked(&v), "{:?}", v.findings);
    let evil = "{\"e\":\"view\"}\n{\"q\":\"<script>alert(1)</script>\"}";
    let v = run(
        "POST",
        "/",
        &[("content-type", "application/json")],
        evil.as_bytes(),
    );
    assert!(blocked(&v), "{:?}", v.findings);
}

#[test]
fn a_bare_token_in_json_that_is_not_json_is_read_as_a_value() {
    let json = [("content-type", "application/json")];
    for body in [
        r#"{"id":1e0union select password from users}"#,
        r#"{"id":1 or 1=1}"#,
        r#"[1, 2e0union all select @@version]"#,
    ] {
        let v = run("POST", "/", &json, body.as_bytes());
        assert!(
            v.findings
                .iter()
                .any(|f| f.family == portcullis_detect::Family::Sqli),
            "{body}: {:?}",
            v.findings
        );
    }
    // Literals, and invalid JSON without an attack, are nothing.
    for body in [
        r#"{"id":1e3,"ok":true,"n":null,"x":-0.5}"#,
        r#"{"page":2,"cursor":undefined}"#,
        r#"{"items":[NaN]}"#,
        r#"{"a":1 "b":2}"#,
    ] {
        let v = run("POST", "/", &json, body.as_bytes());
        assert!(v.findings.is_empty(), "{body}: {:?}", v.findings);
    }
}
