//! Replaying the corpus against a running gateway over HTTP/1.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::report::Tally;
use crate::{Case, CorpusError, Outcome, RawRequest, Report, build, cases, load};

/// Options of a corpus replay; embeddable in a CLI as
/// `bench corpus --gotestwaf DIR --target URL [--label L] ...`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ReplayOptions {
    /// GoTestWAF testcases directory (holding owasp/, owasp-api/, community/, false-pos/).
    #[arg(long = "gotestwaf", value_name = "DIR")]
    pub testcases: PathBuf,
    /// Gateway to send the requests to: http://HOST:PORT (loopback only).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Status that means "blocked"; any other answer means "passed".
    #[arg(long, value_name = "STATUS", default_value_t = 403)]
    pub block_status: u16,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// Name of this run; the report is saved as bench/results/corpus-<label>.json.
    #[arg(long, default_value = "current")]
    pub label: String,
    /// Per-request timeout in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Host header to send instead of the target's HOST:PORT (e.g. a name,
    /// so that rules flagging a numeric Host do not fire on every request).
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Only replay these sets (repeatable), e.g. --set owasp --set false-pos.
    #[arg(long = "set", value_name = "SET")]
    pub sets: Vec<String>,
    /// Don't draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?}: must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl ReplayOptions {
    /// Options with the defaults of the command line.
    pub fn new(testcases: impl Into<PathBuf>, target: impl Into<String>) -> ReplayOptions {
        ReplayOptions {
            testcases: testcases.into(),
            target: target.into(),
            block_status: 403,
            concurrency: 16,
            label: "current".into(),
            timeout: Duration::from_secs(10),
            host: None,
            sets: Vec::new(),
            no_progress: false,
        }
    }

    /// Where this run's report goes by default: `bench/results/corpus-<label>.json`.
    pub fn results_path(&self) -> PathBuf {
        Report::default_path(&self.label)
    }
}

/// `http://host[:port][/]` split into the authority and the address to dial.
#[derive(Debug, Clone)]
struct Target {
    /// `host[:port]` of the target URL.
    authority: String,
    /// Address to connect to.
    dial: String,
    /// Value of the Host header.
    host: String,
}

fn parse_target(target: &str) -> Result<Target, CorpusError> {
    let err = |message: &str| CorpusError::Target {
        target: target.to_string(),
        message: message.to_string(),
    };
    let rest = target
        .strip_prefix("http://")
        .ok_or_else(|| err("only http:// targets are supported"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(err("expected http://HOST:PORT with no path"));
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let dial = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        authority: authority.to_string(),
        host: authority.to_string(),
        dial,
    })
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Loads the corpus at `opts.testcases`, sends every buildable request to
/// `opts.target` with at most `opts.concurrency` in flight, and scores the
/// answers: `opts.block_status` is blocked, any other status passed, no
/// answer an error. Unbuildable cases (gRPC, ...) count as skipped.
/// Draws a progress bar on stderr unless `opts.no_progress`.
pub async fn replay(opts: ReplayOptions) -> Result<Report, CorpusError> {
    let mut target = parse_target(&opts.target)?;
    if let Some(host) = opts.host.as_ref().filter(|h| !h.is_empty()) {
        target.host = host.clone();
    }
    let target = Arc::new(target);
    let mut files = load(&opts.testcases)?;
    if !opts.sets.is_empty() {
        files.retain(|f| opts.sets.iter().any(|s| s == &f.set));
    }
    let all: Vec<Case> = cases(&files).collect();
    let concurrency = opts.concurrency.max(1);

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector);

    let progress = if opts.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(all.len() as u64), ProgressDrawTarget::stderr())
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        progress.set_style(style);
    }
    progress.set_prefix(format!("corpus {}", opts.label));

    let semaphore = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<(Case, Outcome, Option<String>)> = JoinSet::new();
    let mut tally = Tally::new();
    let record = |tally: &mut Tally, joined| match joined {
        Ok((case, outcome, detail)) => tally.record(&case, outcome, detail),
        Err(e) => tracing::warn!("replay task failed: {e}"),
    };

    for case in all {
        let Some(req) = build(&case) else {
            tally.record(&case, Outcome::Skipped, None);
            progress.inc(1);
            continue;
        };
        let Ok(permit) = semaphore.clone().acquire_owned().await else {
            break; // the semaphore is never closed
        };
        let client = client.clone();
        let target = Arc::clone(&target);
        let progress = progress.clone();
        let (block_status, timeout) = (opts.block_status, opts.timeout);
        tasks.spawn(async move {
            let (outcome, detail) = match send(&client, &target, &req, timeout).await {
                Ok(status) if status == block_status => {
                    (Outcome::Blocked, Some(status.to_string()))
                }
                Ok(status) => (Outcome::Passed, Some(status.to_string())),
                Err(e) => (Outcome::Error, Some(e)),
            };
            drop(permit);
            progress.inc(1);
            (case, outcome, detail)
        });
        while let Some(joined) = tasks.try_join_next() {
            record(&mut tally, joined);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        record(&mut tally, joined);
    }
    progress.finish_and_clear();
    Ok(tally.finish(&opts.label, Some(opts.target.clone()), opts.block_status))
}

/// Sends one request and returns the answer's status.
async fn send(
    client: &HttpClient,
    target: &Target,
    req: &RawRequest,
    timeout: Duration,
) -> Result<u16, String> {
    let work = async {
        match to_hyper(target, req) {
            Some(hreq) => {
                let resp = client.request(hreq).await.map_err(|e| format!("{e:?}"))?;
                let status = resp.status().as_u16();
                // Read the body so the connection can be reused; its content
                // does not matter.
                let _ = resp.into_body().collect().await;
                Ok(status)
            }
            None => send_raw(target, req).await,
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("timeout after {timeout:?}"))?
}

/// The request as a hyper request, or `None` when hyper can't express it.
fn to_hyper(target: &Target, req: &RawRequest) -> Option<http::Request<Full<Bytes>>> {
    let uri: http::Uri = format!("http://{}{}", target.authority, req.target)
        .parse()
        .ok()?;
    let mut builder = http::Request::builder()
        .method(http::Method::from_bytes(req.method.as_bytes()).ok()?)
        .uri(uri)
        .header(http::header::HOST, target.host.as_str());
    for (k, v) in &req.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(v.as_bytes()).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::from(req.body.clone()))).ok()
}

/// Sends the request bytes as they are over a fresh TCP connection and
/// reads the status line of the answer.
async fn send_raw(target: &Target, req: &RawRequest) -> Result<u16, String> {
    let mut stream = tokio::net::TcpStream::connect(&target.dial)
        .await
        .map_err(|e| format!("connect {}: {e}", target.dial))?;
    stream
        .write_all(&req.to_wire(&target.host))
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 || head.len() > 16 * 1024 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status_line(&head).ok_or_else(|| "no HTTP status line in answer".to_string())
}

fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("http://127.0.0.1:8080").expect("target");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.dial, "127.0.0.1:8080");
        let t = parse_target("http://localhost/").expect("target");
        assert_eq!(t.authority, "localhost");
        assert_eq!(t.dial, "localhost:80");
        let t = parse_target("http://[::1]:9000").expect("target");
        assert_eq!(t.dial, "[::1]:9000");
        assert!(parse_target("https://127.0.0.1").is_err());
        assert!(parse_target("http://127.0.0.1/app").is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 403 Forbidden\r\n"), Some(403));
        assert_eq!(parse_status_line(b"HTTP/1.0 200\r\n"), Some(200));
        assert_eq!(parse_status_line(b"garbage\r\n"), None);
    }

    #[test]
    fn secs() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("x").is_err());
    }

    #[test]
    fn clap_args() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            opts: ReplayOptions,
        }
        let cli = Cli::parse_from([
            "x",
            "--gotestwaf",
            "/tc",
            "--target",
            "http://127.0.0.1:9",
            "--label",
            "l",
        ]);
        assert_eq!(cli.opts.testcases, PathBuf::from("/tc"));
        assert_eq!(cli.opts.block_status, 403);
        assert_eq!(cli.opts.concurrency, 16);
        assert_eq!(cli.opts.timeout, Duration::from_secs(10));
        assert_eq!(
            cli.opts.results_path(),
            PathBuf::from("bench/results/corpus-l.json")
        );
        let mut expected = ReplayOptions::new("/tc", "http://127.0.0.1:9");
        expected.label = "l".into();
        assert_eq!(cli.opts, expected);
    }
}
