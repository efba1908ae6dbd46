//! Test helpers: a counting origin, a gateway on ephemeral ports, raw sockets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use portcullis_config::Config;
use portcullis_gateway::{ConfigSource, Overrides, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An origin that counts requests, remembers the last head, and echoes upgrades.
#[derive(Clone, Default)]
pub struct Origin {
    pub addr: Option<SocketAddr>,
    pub hits: Arc<AtomicUsize>,
    pub last_headers: Arc<Mutex<http::HeaderMap>>,
    pub last_body_len: Arc<AtomicUsize>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let mut origin = Origin {
            addr: Some(listener.local_addr().expect("addr")),
            ..Origin::default()
        };
        let state = origin.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        origin.hits = Arc::clone(&origin.hits);
        origin
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr.expect("started"))
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn handle(
    state: Origin,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    *state.last_headers.lock() = req.headers().clone();
    if req.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert(http::header::UPGRADE, "websocket".parse().unwrap());
        response
            .headers_mut()
            .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
        // `/ws-unanswered` switches without answering the handshake.
        let key = req.headers().get("sec-websocket-key");
        if let Some(key) = key.filter(|_| req.uri().path() != "/ws-unanswered") {
            use base64::Engine as _;
            use sha1::Digest as _;
            let digest = sha1::Sha1::new()
                .chain_update(key.as_bytes())
                .chain_update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                .finalize();
            let accept = base64::engine::general_purpose::STANDARD.encode(digest);
            response
                .headers_mut()
                .insert("sec-websocket-accept", accept.parse().unwrap());
        }
        return Ok(response);
    }
    if req.uri().path() == "/leak" {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"Server Unknown Error Detail error: Uncaught InvalidArgumentException: Malformed UTF-8 characters, possibly incorrectly encoded in /var/www/app/Record.php:42",
        )));
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(response);
    }
    let body = req.into_body().collect().await?.to_bytes();
    state.last_body_len.store(body.len(), Ordering::SeqCst);
    Ok(Response::new(Full::new(Bytes::from_static(b"origin ok"))))
}

/// A gateway on ephemeral ports in front of `origin`, with `extra` TOML appended.
pub async fn gateway(origin: &Origin, extra: &str) -> Running {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[events]\nlog = false\n[[upstreams]]\nurl = \"{}\"\n{extra}",
        origin.url()
    );
    let config = Config::parse(&text).expect("test config is valid");
    portcullis_gateway::start(ConfigSource::Fixed(Box::new(config)), Overrides::default())
        .await
        .expect("gateway starts")
}

/// Sends raw bytes and reads until the peer closes or `wait` passes.
pub async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    read_for(&mut stream, wait).await
}

pub async fn read_for(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An answer read off the socket: status, head and body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One request with these headers and body, on a connection it closes.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Reply {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let text = raw(addr, request.as_bytes(), Duration::from_secs(5)).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply {
        status: status_of(&text),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A simple GET that closes the connection.
pub async fn get(addr: SocketAddr, target: &str, headers: &str) -> String {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n");
    raw(addr, request.as_bytes(), Duration::from_secs(5)).await
}

pub const BROWSER: &str = "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)\r\nAccept: */*\r\nAccept-Language: zh-CN\r\n";

/// The `Authorization` header line of the admin API of `gw`.
pub fn admin_auth(gw: &Running) -> String {
    let token = gw.shared.admin_token.as_deref().expect("an admin token");
    format!("Authorization: Bearer {token}\r\n")
}
