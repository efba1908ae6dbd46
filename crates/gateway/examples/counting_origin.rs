//! A benchmark origin that answers 200 and counts requests per value of one
//! header (by default `x-pc-device`); on SIGTERM or ctrl-c it writes the
//! counts as JSON to the file given.
//!
//!   cargo run --release -p portcullis-gateway --example counting_origin -- ADDR OUT.json [HEADER]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18591".into());
    let out = args.next().unwrap_or_else(|| "counts.json".into());
    let header = args.next().unwrap_or_else(|| "x-pc-device".into());
    let counts: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let serve = {
        let counts = Arc::clone(&counts);
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counts = Arc::clone(&counts);
                let header = header.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let key = req
                            .headers()
                            .get(header.as_str())
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string();
                        *counts.lock().entry(key).or_insert(0) += 1;
                        async {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = serve => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    std::fs::write(&out, serde_json::to_vec(&*counts.lock())?)?;
    Ok(())
}
