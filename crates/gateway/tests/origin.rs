//! The origin connection as origins really answer: every way a response
//! body can be framed, interim answers, malformed framing, connection
//! reuse and the idle timeout, against an origin scripted byte by byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis_gateway::{ConfigSource, Overrides, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The origin's answer to a request line.
fn answer(request_line: &str) -> &'static [u8] {
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    match path {
        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
        "/until-close" => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nread until the origin closes",
        "/interim" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
        "/both" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100\r\n\r\n4\r\nboth\r\n0\r\n\r\n",
        "/conflicting-length" => b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok",
        "/bad-chunk" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "/not-modified" => b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n",
        "/close-after" => b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone",
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain",
    }
}

/// Serves requests without bodies (or with a `content-length` body) on
/// keep-alive connections, counting the connections it accepted.
/// Connections the scripted origin accepted, and those the gateway closed.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    closed_by_gateway: AtomicUsize,
}

async fn scripted_origin() -> (std::net::SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.accepted.fetch_add(1, Ordering::SeqCst);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                if serve(stream).await {
                    counter.closed_by_gateway.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, seen)
}

/// Serves one connection; true when the gateway closed it.
async fn serve(mut stream: TcpStream) -> bool {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return pending.is_empty(),
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        if head.starts_with("POST /early ") {
            // Answers at once and stops reading, holding the connection open.
            let refusal =
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            let _ = stream.write_all(refusal).await;
            tokio::time::sleep(Duration::from_secs(4)).await;
            return false;
        }
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while pending.len() < end + 4 + body_len {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        pending.drain(..end + 4 + body_len);
        let line = head.lines().next().unwrap_or_default().to_owned();
        let mut reply = answer(&line);
        if line.starts_with("HEAD ") {
            reply = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
        }
        if line.starts_with("POST ") {
            let echo = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n");
            let _ = stream.write_all(echo.as_bytes()).await;
            let _ = stream.write_all(&vec![b'x'; body_len]).await;
            continue;
        }
        let closes = line.contains("/until-close") || line.contains("/close-after");
        if stream.write_all(reply).await.is_err() || closes {
            return false;
        }
    }
}

/// A gateway whose bodies past 1 KB stream to the origin after inspection.
async fn gateway_for(origin: std::net::SocketAddr, upstream_extra: &str) -> Running {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nworkers = 1\n[events]\nlog = false\n\
         [limits]\ninspect_body_bytes = 1024\n[detect]\non_incomplete = \"signal\"\n\
         [[upstreams]]\nurl = \"http://{origin}\"\n{upstream_extra}"
    );
    let config = portcullis_config::Config::parse(&text).expect("config");
    portcullis_gateway::start(ConfigSource::Fixed(Box::new(config)), Overrides::default())
        .await
        .expect("gateway")
}

struct Fetched {
    status: u16,
    headers: http::HeaderMap,
    body: Result<Bytes, String>,
}

async fn fetch(gw: &Running, method: &str, path: &str, body: Bytes) -> Fetched {
    try_fetch(gw, method, path, body)
        .await
        .expect("the gateway answers")
}

async fn try_fetch(gw: &Running, method: &str, path: &str, body: Bytes) -> Result<Fetched, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gw.listen))
        .header(
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
        )
        .header("accept", "*/*")
        .header("accept-language", "zh-CN")
        .body(Full::new(body))
        .unwrap();
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string());
    Ok(Fetched {
        status,
        headers,
        body,
    })
}

#[tokio::test]
async fn every_framing_of_a_response_body_reaches_the_client_decoded() {
    let (origin, _) = scripted_origin().await;
    let gw = gateway_for(origin, "").await;
    let cases: [(&str, &str, u16, &[u8]); 6] = [
        ("GET", "/chunked", 200, b"hello world"),
        ("GET", "/until-close", 200, b"read until the origin closes"),
        ("GET", "/interim", 200, b"final"),
        ("GET", "/both", 200, b"both"),
        ("GET", "/not-modified", 304, b""),
        ("HEAD", "/plain", 200, b""),
    ];
    for (method, path, status, body) in cases {
        let fetched = fetch(&gw, method, path, Bytes::new()).await;
        assert_eq!(fetched.status, status, "{method} {path}");
        assert_eq!(fetched.body.as_deref(), Ok(body), "{method} {path}");
        assert!(
            fetched.headers.contains_key("x-request-id"),
            "{method} {path}"
        );
        assert!(
            !fetched.headers.contains_key("x-trailer"),
            "trailers are dropped"
        );
    }
    let head = fetch(&gw, "HEAD", "/plain", Bytes::new()).await;
    assert_eq!(head.headers["content-length"], "5");
    let not_modified = fetch(&gw, "GET", "/not-modified", Bytes::new()).await;
    assert_eq!(not_modified.headers["etag"], "\"v1\"");
}

#[tokio::test]
async fn a_response_framed_two_ways_is_refused() {
    let (origin, _) = scripted_origin().await;
    let gw = gateway_for(origin, "").await;
    let conflicting = fetch(&gw, "GET", "/conflicting-length", Bytes::new()).await;
    assert_eq!(conflicting.status, 502);
    // A broken chunk comes after the head: the client's response fails.
    let bad_chunk = try_fetch(&gw, "GET", "/bad-chunk", Bytes::new()).await;
    assert!(
        bad_chunk.is_err() || bad_chunk.is_ok_and(|f| f.body.is_err()),
        "a malformed chunk never reads as a body"
    );
    // The gateway still serves the next request.
    assert_eq!(fetch(&gw, "GET", "/plain", Bytes::new()).await.status, 200);
}

#[tokio::test]
async fn keep_alive_connections_are_reused_and_closing_ones_are_not() {
    let (origin, seen) = scripted_origin().await;
    let accepted = || seen.accepted.load(Ordering::SeqCst);
    let gw = gateway_for(origin, "").await;
    for path in ["/plain", "/chunked", "/interim", "/not-modified", "/plain"] {
        let status = fetch(&gw, "GET", path, Bytes::new()).await.status;
        assert!(status == 200 || status == 304, "{path}: {status}");
    }
    // Beyond the inspected part: the body streams to the origin.
    let body = Bytes::from(vec![b'a'; 300_000]);
    let posted = fetch(&gw, "POST", "/upload", body.clone()).await;
    assert_eq!(posted.body.map(|b| b.len()), Ok(body.len()));
    assert_eq!(fetch(&gw, "HEAD", "/plain", Bytes::new()).await.status, 200);
    assert_eq!(
        accepted(),
        1,
        "one origin connection served every keep-alive exchange in turn"
    );
    for path in ["/close-after", "/until-close", "/both"] {
        fetch(&gw, "GET", path, Bytes::new()).await;
    }
    fetch(&gw, "GET", "/plain", Bytes::new()).await;
    assert_eq!(
        accepted(),
        4,
        "each of the three responses that end their connection cost a new one"
    );
}

#[tokio::test]
async fn idle_origin_connections_are_closed_by_the_gateway() {
    let (origin, seen) = scripted_origin().await;
    let gw = gateway_for(origin, "pool_idle_timeout_ms = 200\n").await;
    assert_eq!(fetch(&gw, "GET", "/plain", Bytes::new()).await.status, 200);
    // No request comes: the gateway itself ends the idle connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while seen.closed_by_gateway.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an idle connection outlived its timeout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fetch(&gw, "GET", "/plain", Bytes::new()).await.status, 200);
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_connection_is_kept_when_the_pool_holds_none() {
    let (origin, seen) = scripted_origin().await;
    let gw = gateway_for(origin, "pool_max_idle = 0\n").await;
    for _ in 0..3 {
        assert_eq!(fetch(&gw, "GET", "/plain", Bytes::new()).await.status, 200);
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_origin_that_answers_before_the_body_ends_is_heard() {
    let (origin, _) = scripted_origin().await;
    let gw = gateway_for(origin, "").await;
    let started = std::time::Instant::now();
    let body = Bytes::from(vec![b'a'; 12 << 20]);
    let answer = try_fetch(&gw, "POST", "/early", body).await;
    assert_eq!(answer.map(|f| f.status), Ok(413));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the answer came while the body was still being sent: {:?}",
        started.elapsed()
    );
}
