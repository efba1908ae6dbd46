//! The proxy itself: HTTP/2, TLS, WebSocket, streamed bodies, origin
//! failures, and configuration reloads without a restart.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{BROWSER, Origin, admin_auth, gateway, get, raw, status_of};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis_gateway::{ConfigSource, Overrides};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn h2c_prior_knowledge() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = http::Request::get(format!("http://{}/h2", gw.listen))
        .header("user-agent", "Mozilla/5.0 (Android 14)")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("h2 response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
}

/// The protocol of a plain connection is told by its first bytes however
/// they are split: a preface in pieces is HTTP/2, and an HTTP/1 request
/// whose first read looks like the preface's start is still HTTP/1.
#[tokio::test]
async fn the_protocol_is_told_from_first_bytes_in_pieces() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let mut h2 = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The rest of the preface, then an empty SETTINGS frame.
    h2.write_all(b"\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), h2.read_exact(&mut frame))
        .await
        .expect("an answer in time")
        .expect("a frame header");
    assert_eq!(
        frame[3], 0x04,
        "the server's first frame is SETTINGS: {frame:?}"
    );

    let mut h1 = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    h1.write_all(b"PR").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    h1.write_all(
        format!("OPFIND /h1 HTTP/1.1\r\nHost: t\r\n{BROWSER}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), h1.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("a response");
    assert!(
        answer.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn large_bodies_stream_through_beyond_the_inspected_part() {
    let origin = Origin::start().await;
    // A body past the inspected part is refused by default (`on_incomplete`);
    // a route that chooses to inspect what fits streams the rest.
    let gw = gateway(
        &origin,
        "[limits]\ninspect_body_bytes = 1024\nmax_body_bytes = 1000000\n[detect]\non_incomplete = \"signal\"\n",
    )
    .await;
    let body = vec![b'a'; 300_000];
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\n{BROWSER}Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let response = raw(gw.listen, &request, Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(
        origin
            .last_body_len
            .load(std::sync::atomic::Ordering::SeqCst),
        300_000
    );

    // Chunked, past the maximum: refused while streaming, never delivered whole.
    let mut chunked = format!("POST /upload HTTP/1.1\r\nHost: t\r\n{BROWSER}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 100_000).as_bytes());
        chunked.extend_from_slice(&vec![b'b'; 100_000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = raw(gw.listen, &chunked, Duration::from_secs(5)).await;
    assert_ne!(
        status_of(&response),
        200,
        "{}",
        &response[..response.len().min(300)]
    );
    assert_ne!(
        origin
            .last_body_len
            .load(std::sync::atomic::Ordering::SeqCst),
        2_000_000
    );
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let mut stream = tokio::net::TcpStream::connect(gw.listen)
        .await
        .expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: t\r\n{BROWSER}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = vec![0u8; 1024];
    let n = stream.read(&mut head).await.expect("read");
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert_eq!(status_of(&head), 101, "{head}");
    stream
        .write_all(b"ping-through-gateway")
        .await
        .expect("write frame");
    let mut echo = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut echo))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&echo, b"ping-through-gateway");
}

#[tokio::test]
async fn only_a_websocket_handshake_answered_by_the_origin_is_tunnelled() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for (target, handshake, status) in [
        // The origin switches without the accept value: no tunnel.
        (
            "/ws-unanswered",
            format!("Sec-WebSocket-Version: 13\r\n{key}"),
            502,
        ),
        // No key, or another version: a plain request, never switched.
        ("/ws", "Sec-WebSocket-Version: 13\r\n".to_owned(), 200),
        ("/ws", format!("Sec-WebSocket-Version: 8\r\n{key}"), 200),
    ] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\n{BROWSER}Connection: Upgrade\r\nUpgrade: websocket\r\n{handshake}\r\n"
        );
        let answer = raw(gw.listen, request.as_bytes(), Duration::from_secs(2)).await;
        assert_eq!(status_of(&answer), status, "{target} {handshake}: {answer}");
    }
}

#[tokio::test]
async fn a_declined_switch_closes_the_connection_it_stopped_scanning() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;
    // `foo` is not an allowed upgrade: the request goes on as a plain one
    // and is answered 200, while the framing scanner stopped at its head.
    // What follows on the connection must not be read unscanned.
    let request = format!(
        "GET /a HTTP/1.1\r\nHost: t\r\n{BROWSER}Connection: Upgrade\r\nUpgrade: foo\r\n\r\n\
         POST /x HTTP/1.1\r\nHost: t\r\n{BROWSER}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let answer = raw(gw.listen, request.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn origin_down_gives_502_with_request_id() {
    let mut origin = Origin::start().await;
    // A port nobody listens on.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    origin.addr = Some(unused);
    let gw = gateway(&origin, "").await;
    let response = get(gw.listen, "/", BROWSER).await;
    assert_eq!(status_of(&response), 502, "{response}");
    assert!(response.contains("request_id"), "{response}");
}

#[tokio::test]
async fn tls_termination_with_alpn() {
    let origin = Origin::start().await;
    let dir = tempdir();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).expect("write key");
    let extra = format!(
        "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{extra}[events]\nlog = false\n[[upstreams]]\nurl = \"{}\"\n",
        origin.url()
    );
    let config = portcullis_config::Config::parse(&text).expect("config");
    let gw = portcullis_gateway::start(ConfigSource::Fixed(Box::new(config)), Overrides::default())
        .await
        .expect("start");
    let tls_addr = gw.tls.expect("tls listener");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(tls_addr)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    tls.write_all(
        format!("GET /secure HTTP/1.1\r\nHost: localhost\r\n{BROWSER}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn config_file_changes_apply_within_two_seconds_and_bad_files_are_refused() {
    let origin = Origin::start().await;
    let dir = tempdir();
    let path = dir.join("portcullis.toml");
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[events]\nlog = false\n[[upstreams]]\nurl = \"{}\"\n",
        origin.url()
    );
    std::fs::write(&path, &base).expect("write config");
    let gw = portcullis_gateway::start(ConfigSource::File(path.clone()), Overrides::default())
        .await
        .expect("start");
    assert_eq!(status_of(&get(gw.listen, "/", BROWSER).await), 200);

    std::fs::write(
        &path,
        format!("{base}[ip_lists]\ndeny = [\"127.0.0.1/32\"]\n"),
    )
    .expect("rewrite");
    let changed = Instant::now();
    let mut status = 200;
    while changed.elapsed() < Duration::from_secs(2) && status != 403 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = status_of(&get(gw.listen, "/", BROWSER).await);
    }
    assert_eq!(status, 403, "deny list applied within 2 s");
    assert_eq!(gw.shared.runtime.load().version, 2);

    std::fs::write(
        &path,
        format!("{base}[ip_lists]\ndeny = [\"not-a-network\"]\n"),
    )
    .expect("rewrite");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gw.shared.runtime.load().version, 2, "invalid file refused");
    assert_eq!(
        status_of(&get(gw.listen, "/", BROWSER).await),
        403,
        "running config stays"
    );
    let metrics = get(gw.admin.expect("admin"), "/metrics", &admin_auth(&gw)).await;
    assert!(
        metrics.contains("portcullis_config_reloads_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("portcullis_config_version 2"), "{metrics}");
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-test-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An origin that serves one request per connection with keep-alive, then
/// closes the connection when the next request arrives on it: the race of
/// an origin ending an idle connection just as the gateway reuses it.
async fn origin_closing_reused_connections() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = 0;
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen += 1;
                    if seen > 1 {
                        return; // closes without an answer
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_idempotent_request_on_a_closed_pooled_connection_is_retried_once() {
    let origin = origin_closing_reused_connections().await;
    let config = portcullis_config::Config::parse(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[events]\nlog = false\n[[upstreams]]\nurl = \"http://{origin}\"\n"
    ))
    .expect("config");
    let gw = portcullis_gateway::start(ConfigSource::Fixed(Box::new(config)), Overrides::default())
        .await
        .expect("gateway");
    for n in 0..4 {
        let response = get(gw.listen, &format!("/page/{n}"), BROWSER).await;
        assert_eq!(status_of(&response), 200, "request {n}: {response}");
    }
}

/// The statuses of every answer in what a connection received.
fn statuses(received: &str) -> Vec<u16> {
    received
        .match_indices("HTTP/1.")
        .filter_map(|(at, _)| received[at + 9..].get(..3)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn http1_bodies_expectations_and_versions_on_the_wire() {
    use std::sync::atomic::Ordering;
    let origin = Origin::start().await;
    let gw = gateway(&origin, "").await;

    // `Expect: 100-continue`: the go-ahead comes when the body is read.
    let mut stream = tokio::net::TcpStream::connect(gw.listen)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .expect("head");
    let go_ahead = common::read_for(&mut stream, Duration::from_millis(500)).await;
    assert!(
        go_ahead.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{go_ahead}"
    );
    stream.write_all(b"hello").await.expect("body");
    let answer = common::read_for(&mut stream, Duration::from_millis(500)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(origin.last_body_len.load(Ordering::SeqCst), 5);

    // A chunked body reaches the origin whole, extensions and trailers dropped.
    let chunked = b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4;x=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-T: 1\r\n\r\n";
    let answer = raw(gw.listen, chunked, Duration::from_secs(3)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(origin.last_body_len.load(Ordering::SeqCst), 7);

    // HTTP/1.0: answered in its version, and the connection closes.
    let answer = raw(
        gw.listen,
        b"GET /old HTTP/1.0\r\nHost: t\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");

    // A head written a byte at a time is one request.
    let mut stream = tokio::net::TcpStream::connect(gw.listen)
        .await
        .expect("connect");
    for b in b"GET /slowly?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" {
        stream.write_all(&[*b]).await.expect("byte");
    }
    let answer = common::read_for(&mut stream, Duration::from_secs(3)).await;
    assert_eq!(statuses(&answer), [200], "{answer}");

    // A refused request's small body is read past: the request after it on
    // the same connection is answered too.
    let pipelined = b"POST /a?id=1%27%20OR%201=1-- HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbodyGET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let answer = raw(gw.listen, pipelined, Duration::from_secs(3)).await;
    assert_eq!(statuses(&answer), [403, 200], "{answer}");
    // A body that breaks its framing ends the connection after the answer.
    let broken = b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n";
    let answer = raw(gw.listen, broken, Duration::from_secs(3)).await;
    let answered = statuses(&answer);
    assert_eq!(answered.len(), 1, "{answer}");
    assert!((400..500).contains(&answered[0]), "{answer}");
}
