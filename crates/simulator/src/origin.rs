//! The simulator's own origin: it answers every request with the risk
//! headers it received (so the simulator learns the rank of each request
//! that passed) and counts what it saw per population label.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Population;
use crate::http::{ORIGIN_MARK, POPULATION_HEADER};

const MAX_BODY: usize = 64 * 1024;

/// What the origin received from one population.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginCount {
    pub requests: u64,
    /// By the rank header's value, 0-4.
    pub ranks: [u64; 5],
    pub without_rank: u64,
}

/// The origin's counts, by population name (`unlabelled` for the rest).
pub type OriginCounts = Arc<Mutex<BTreeMap<&'static str, OriginCount>>>;

pub struct Origin {
    pub addr: SocketAddr,
    pub counts: OriginCounts,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the origin echoes: the names of the risk headers, the first being
/// the rank.
#[derive(Clone)]
struct Echo {
    headers: Arc<Vec<String>>,
    counts: OriginCounts,
}

/// Starts the origin on `addr` (port 0: any).
pub async fn start(addr: SocketAddr, risk_headers: Vec<String>) -> std::io::Result<Origin> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let counts = OriginCounts::default();
    let echo = Echo {
        headers: Arc::new(risk_headers),
        counts: Arc::clone(&counts),
    };
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let echo = echo.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(echo.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Origin { addr, counts, task })
}

async fn answer(echo: Echo, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let risk: BTreeMap<&str, &str> = echo
        .headers
        .iter()
        .filter_map(|name| Some((name.as_str(), header(name)?)))
        .collect();
    let rank = echo
        .headers
        .first()
        .and_then(|name| risk.get(name.as_str()))
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|r| *r <= 4);
    count(&echo.counts, header(POPULATION_HEADER), rank);
    let (status, reply) = business(&parts.method, parts.uri.path(), &body);
    let json = serde_json::json!({ "reply": reply, "risk": risk });
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(ORIGIN_MARK, http::HeaderValue::from_static("1"));
    Ok(response)
}

fn count(counts: &OriginCounts, label: Option<&str>, rank: Option<usize>) {
    let name = Population::ALL
        .iter()
        .map(|p| p.name())
        .find(|name| Some(*name) == label)
        .unwrap_or("unlabelled");
    let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = counts.entry(name).or_default();
    entry.requests += 1;
    match rank {
        Some(rank) => entry.ranks[rank] += 1,
        None => entry.without_rank += 1,
    }
}

/// The app's behaviour: logins succeed with the account's own password
/// (`pw-<account>`); the challenge paths do not exist here (a gateway that
/// forwards them has no challenge service); everything else is fine.
fn business(method: &Method, path: &str, body: &[u8]) -> (StatusCode, &'static str) {
    #[derive(Deserialize)]
    struct Login {
        account: String,
        password: String,
    }
    if path.starts_with(portcullis_challenge::PATH_PREFIX) {
        return (StatusCode::NOT_FOUND, "not_found");
    }
    if method == Method::POST && path == "/api/login" {
        return match serde_json::from_slice::<Login>(body) {
            Ok(login) if login.password == format!("pw-{}", login.account) => {
                (StatusCode::OK, "logged_in")
            }
            _ => (StatusCode::UNAUTHORIZED, "bad_credentials"),
        };
    }
    (StatusCode::OK, "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_need_the_accounts_password() {
        let ok = br#"{"account":"u1","password":"pw-u1"}"#;
        let bad = br#"{"account":"u1","password":"123456"}"#;
        assert_eq!(business(&Method::POST, "/api/login", ok).0, StatusCode::OK);
        assert_eq!(
            business(&Method::POST, "/api/login", bad).0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            business(&Method::GET, "/.portcullis/challenge", b"").0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn counts_by_label() {
        let counts = OriginCounts::default();
        count(&counts, Some("ordinary"), Some(0));
        count(&counts, Some("ordinary"), None);
        count(&counts, Some("someone"), Some(4));
        let counts = counts.lock().expect("lock");
        assert_eq!(counts["ordinary"].requests, 2);
        assert_eq!(counts["ordinary"].ranks[0], 1);
        assert_eq!(counts["ordinary"].without_rank, 1);
        assert_eq!(counts["unlabelled"].ranks[4], 1);
    }
}
