//! The edge layer against real sockets: smuggling, oversize, slow and
//! half-open clients, lists, classes and quotas. Every refusal is a clean
//! answer, nothing refused reaches the origin, and the gateway keeps serving.

mod common;

use std::time::{Duration, Instant};

use common::{BROWSER, Origin, admin_auth, gateway, get, raw, read_for, status_of};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn clean_request_reaches_origin_with_forwarding_headers_and_no_forged_risk() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let response = get(
        gw.listen,
        "/api/coupon?id=7",
        &format!("{BROWSER}x-wx-risk-rank: 0\r\nX-Portcullis-Class: trusted\r\n"),
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("x-request-id: "),
        "{response}"
    );
    let seen = origin.last_headers.lock().clone();
    assert!(
        seen.get("x-wx-risk-rank").is_none(),
        "forged risk header stripped"
    );
    assert!(seen.get("x-portcullis-class").is_none());
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-request-id"].len(), 16);
}

#[tokio::test]
async fn review_scanner_incident_request_never_reaches_origin() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let request = "GET /open/v3/live/record?action=eval&live_id=undefined%bf%27%bf'%27%22'\"\\%5C%0d%0a HTTP/1.1\r\nHost: live.tinywan.com\r\nUser-Agent: Tencent Security Team, more information: https://developers.weixin.qq.com/community/minihome/doc/0008ea401c89c02cff2d1345051001\r\nReferer: https://live.tinywan.com/\r\n\r\n";
    // The raw quote and backslash are percent-encoded before the parser, so
    // the gateway's own check answers: the attack status, with a request id.
    let response = raw(gw.listen, request.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&response), 403, "{response}");
    assert!(
        response.contains("\"request_id\":\""),
        "the refusal carries a request id: {response}"
    );
    let response = get(
        gw.listen,
        "/open/v3/live/record?action=eval&live_id=undefined%bf%27%bf'%27",
        BROWSER,
    )
    .await;
    assert_eq!(status_of(&response), 403, "{response}");
    assert!(response.contains("\"request_id\":\""), "{response}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn malformed_encodings_are_refused_with_request_id() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    // NUL, malformed and overlong UTF-8 are the tools of null-byte,
    // wide-byte and filter-evasion attacks: refused with the attack status.
    for target in [
        "/%c0%af/etc/passwd",
        "/a?x=%ed%a0%80",
        "/a?x=%00",
        "/a?x=%bf%27",
    ] {
        let response = get(gw.listen, target, BROWSER).await;
        assert_eq!(status_of(&response), 403, "{target}: {response}");
        assert!(response.contains("request_id"), "{response}");
    }
    let form = b"POST /api HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\nConnection: close\r\n\r\na=%bf";
    assert_eq!(
        status_of(&raw(gw.listen, form, Duration::from_secs(3)).await),
        403
    );
    let method = "BREW /pot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(
        status_of(&raw(gw.listen, method.as_bytes(), Duration::from_secs(3)).await),
        400
    );
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn what_the_web_sends_passes_like_nginx_passes_it() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    // A `%` without hex digits is a literal; raw UTF-8 and characters the
    // HTTP parser refuses are percent-encoded and passed on.
    for target in [
        "/a?x=%zz&y=%sa",
        "/s?q=你好",
        "/s?q=\"quoted\"&r={a|b}",
        "/s?q=a<b>c^d`",
    ] {
        let response = get(gw.listen, target, BROWSER).await;
        assert_eq!(status_of(&response), 200, "{target}: {response}");
    }
    let json = "POST /api HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 6\r\nConnection: close\r\n\r\n{\"a\":1";
    let response = raw(gw.listen, json.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(
        status_of(&response),
        200,
        "JSON that does not parse is inspected as text"
    );
    let escaped_nul = r#"{"text":"a\u0000b"}"#;
    let request = format!(
        "POST /api HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{escaped_nul}",
        escaped_nul.len()
    );
    let response = raw(gw.listen, request.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(origin.hits(), 6);
}

#[tokio::test]
async fn body_bytes_never_change_how_the_connection_is_framed() {
    let origin = Origin::start().await;
    // Framing alone: what detection makes of such a body is another matter.
    let gw = gateway(&origin, "[detect]\nenabled = false\n").await;
    let body = "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let first = format!(
        "POST /a HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let second = "GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let response = raw(
        gw.listen,
        format!("{first}{second}").as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    let statuses: Vec<_> = response
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &response[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "200"], "{response}");
}

#[tokio::test]
async fn smuggling_variants_are_refused() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let variants: [&[u8]; 5] = [
        // CL.TE
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED",
        // TE.CL
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        // TE.TE, obfuscated
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ];
    for request in variants {
        let response = raw(gw.listen, request, Duration::from_secs(3)).await;
        assert!(
            (400..500).contains(&status_of(&response)),
            "{}: {response}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(origin.hits(), 0, "no smuggled request reached the origin");
    assert_eq!(
        status_of(&get(gw.listen, "/", BROWSER).await),
        200,
        "still serving"
    );
}

#[tokio::test]
async fn oversize_heads_and_bodies() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..10_000 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let response = raw(gw.listen, many.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(
        status_of(&response),
        431,
        "{}",
        &response[..response.len().min(200)]
    );
    assert!(response.contains("request_id"), "{response}");

    let started = Instant::now();
    let huge = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\n";
    let response = raw(gw.listen, huge, Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 413, "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered without waiting for the body"
    );

    let long_uri = format!("/{}", "a".repeat(40_000));
    assert_eq!(status_of(&get(gw.listen, &long_uri, BROWSER).await), 414);
    assert_eq!(origin.hits(), 0);
    assert_eq!(
        status_of(&get(gw.listen, "/", BROWSER).await),
        200,
        "still serving"
    );
}

#[tokio::test]
async fn slow_and_half_open_clients_are_cut_off_while_others_are_served() {
    let origin = Origin::start().await;
    let gw = gateway(
        &origin,
        "[limits]\nheader_timeout_ms = 600\nbody_timeout_ms = 600\n",
    )
    .await;
    // Half-open: connects and sends nothing.
    let mut idle = TcpStream::connect(gw.listen).await.expect("connect");
    // Slowloris: a header byte every 100 ms.
    let mut slow = TcpStream::connect(gw.listen).await.expect("connect");
    let slow_writer = tokio::spawn(async move {
        for b in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" {
            if slow.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    // A body that never finishes.
    let mut stalled = TcpStream::connect(gw.listen).await.expect("connect");
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .expect("write");

    assert_eq!(
        status_of(&get(gw.listen, "/", BROWSER).await),
        200,
        "others are served meanwhile"
    );

    let started = Instant::now();
    let idle_answer = read_for(&mut idle, Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "idle connection closed by the header timeout"
    );
    assert!(
        idle_answer.is_empty() || status_of(&idle_answer) == 408,
        "{idle_answer}"
    );
    let stalled_answer = read_for(&mut stalled, Duration::from_secs(3)).await;
    assert_eq!(status_of(&stalled_answer), 408, "{stalled_answer}");
    assert!(
        slow_writer.await.expect("join"),
        "slow sender was disconnected"
    );
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn deny_list_scanner_throttle_and_quota() {
    let origin = Origin::start().await;
    let gw = gateway(
        &origin,
        "[ip_lists]\ndeny = [\"127.0.0.2/32\"]\n[quota]\nroutes = [{ path_prefix = \"/flash\", qps = 3 }]\n",
    )
    .await;
    let scanner = "User-Agent: Tencent Security Team, more information\r\n";
    let statuses: Vec<u16> = futures_lite(gw.listen, "/api/x", scanner, 8).await;
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        statuses[5..].iter().all(|s| *s == 429),
        "scanner throttled at 1 rps, burst 5: {statuses:?}"
    );
    let limited = get(gw.listen, "/api/x", scanner).await;
    assert!(
        limited.to_ascii_lowercase().contains("retry-after: "),
        "{limited}"
    );

    let flash: Vec<u16> = futures_lite(gw.listen, "/flash/sale", BROWSER, 6).await;
    assert_eq!(flash.iter().filter(|s| **s == 200).count(), 3, "{flash:?}");
    assert_eq!(flash.iter().filter(|s| **s == 429).count(), 3, "{flash:?}");

    // Connect from 127.0.0.2, which is on the deny list.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut stream = socket.connect(gw.listen).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let denied = read_for(&mut stream, Duration::from_secs(3)).await;
    assert_eq!(status_of(&denied), 403, "{denied}");
    assert!(denied.contains("request_id"), "{denied}");
}

async fn futures_lite(
    addr: std::net::SocketAddr,
    target: &str,
    headers: &str,
    n: usize,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(status_of(&get(addr, target, headers).await));
    }
    statuses
}

#[tokio::test]
async fn connection_cap_per_ip() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "[limits]\nmax_connections_per_ip = 2\n").await;
    let _a = TcpStream::connect(gw.listen).await.expect("connect");
    let _b = TcpStream::connect(gw.listen).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = get(gw.listen, "/", BROWSER).await;
    assert_eq!(status_of(&refused), 503, "{refused}");
    drop((_a, _b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status_of(&get(gw.listen, "/", BROWSER).await), 200);
}

#[tokio::test]
async fn temporary_bans_through_the_admin_api() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let admin = gw.admin.expect("admin listener");
    let auth = admin_auth(&gw);
    let body = r#"{"ip":"127.0.0.1","ttl_s":60,"reason":"flooding coupons"}"#;
    let unauthenticated = format!(
        "POST /bans HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let refused = raw(admin, unauthenticated.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(
        status_of(&refused),
        401,
        "every admin route needs a credential"
    );
    let add = format!(
        "POST /bans HTTP/1.1\r\nHost: a\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let added = raw(admin, add.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&added), 201, "{added}");
    let blocked = get(gw.listen, "/", BROWSER).await;
    assert_eq!(status_of(&blocked), 403, "{blocked}");
    assert!(
        !blocked.contains("flooding"),
        "the reason stays internal: {blocked}"
    );
    let listed = get(admin, "/bans", &auth).await;
    assert!(listed.contains("flooding coupons"), "{listed}");
    let lift =
        format!("DELETE /bans/127.0.0.1 HTTP/1.1\r\nHost: a\r\n{auth}Connection: close\r\n\r\n");
    assert_eq!(
        status_of(&raw(admin, lift.as_bytes(), Duration::from_secs(3)).await),
        200
    );
    assert_eq!(status_of(&get(gw.listen, "/", BROWSER).await), 200);
}
