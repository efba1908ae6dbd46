//! `bench corpus`: every corpus replayed through a running gateway over
//! HTTP/1.1, each answer recorded with what the gateway said about it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::bench_report::{Answer, BenchReport, Tally, read_event_signals};
use crate::samples::{Sample, load_gotestwaf, load_httpparams, load_mgm, load_normal, spread};
use crate::{CorpusError, RawRequest};

/// The corpora `bench corpus` knows, in the order they are reported.
pub const CORPORA: [&str; 4] = ["normal", "httpparams", "mgm", "gotestwaf"];

/// Options of `portcullis bench corpus`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct BenchOptions {
    /// Directory of the vendored corpora (gotestwaf/, httpparams/, normal/).
    #[arg(long, value_name = "DIR", default_value = "bench/corpora")]
    pub corpora: PathBuf,
    /// GoTestWAF testcases directory [default: CORPORA/gotestwaf/testcases].
    #[arg(long, value_name = "DIR")]
    pub gotestwaf: Option<PathBuf>,
    /// Normal-traffic corpus [default: CORPORA/normal/requests.jsonl.gz].
    #[arg(long, value_name = "FILE")]
    pub normal: Option<PathBuf>,
    /// HttpParamsDataset CSV [default: CORPORA/httpparams/payload_train.csv].
    #[arg(long, value_name = "FILE")]
    pub httpparams: Option<PathBuf>,
    /// The mgm WAF payload collection (GPL-3.0, not vendored): replayed only
    /// when given.
    #[arg(long, value_name = "DIR")]
    pub mgm: Option<PathBuf>,
    /// Only these corpora (repeatable): normal, httpparams, mgm, gotestwaf.
    #[arg(long = "only", value_name = "CORPUS")]
    pub only: Vec<String>,
    /// At most this many requests per corpus, spread evenly over it.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The gateway's decision-event log (its JSON lines on stdout), read
    /// after the run to name the signal behind each refusal.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Gateway to send the requests to: http://HOST:PORT (loopback only).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// The gateway's refusal status: only this status counts as blocked.
    #[arg(long, value_name = "STATUS", default_value_t = 403)]
    pub block_status: u16,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub concurrency: usize,
    /// Name of this run: the report is RESULTS/corpus-<label>.json and the
    /// misclassified samples RESULTS/misclassified-<label>.jsonl.
    #[arg(long, default_value = "current")]
    pub label: String,
    /// Where reports go.
    #[arg(long, value_name = "DIR", default_value = "bench/results")]
    pub results: PathBuf,
    /// Per-request timeout in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Host header to send instead of the target's HOST:PORT (e.g. a name,
    /// so that rules flagging a numeric Host do not fire on every request).
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<String>,
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

impl BenchOptions {
    /// Options with the defaults of the command line.
    pub fn new(corpora: impl Into<PathBuf>, target: impl Into<String>) -> BenchOptions {
        BenchOptions {
            corpora: corpora.into(),
            gotestwaf: None,
            normal: None,
            httpparams: None,
            mgm: None,
            only: Vec::new(),
            limit: None,
            events: None,
            target: target.into(),
            block_status: 403,
            concurrency: 32,
            label: "current".into(),
            results: PathBuf::from("bench/results"),
            timeout: Duration::from_secs(10),
            host: None,
            no_progress: false,
        }
    }

    /// The report of this run: `RESULTS/corpus-<label>.json`.
    pub fn report_path(&self) -> PathBuf {
        self.results
            .join(format!("corpus-{}.json", safe_label(&self.label)))
    }

    /// The misclassified samples of this run: `RESULTS/misclassified-<label>.jsonl`.
    pub fn misclassified_path(&self) -> PathBuf {
        self.results
            .join(format!("misclassified-{}.jsonl", safe_label(&self.label)))
    }

    fn wants(&self, corpus: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == corpus)
    }

    /// Loads the selected corpora, each cut to `limit`. A vendored corpus
    /// that is missing is an error; mgm is read only when its path is given.
    pub fn load(&self) -> Result<(Vec<Sample>, Vec<Sample>), CorpusError> {
        if let Some(unknown) = self.only.iter().find(|o| !CORPORA.contains(&o.as_str())) {
            return Err(CorpusError::Parse {
                path: PathBuf::from(unknown),
                message: format!("unknown corpus; expected one of {}", CORPORA.join(", ")),
            });
        }
        let at = |given: &Option<PathBuf>, rel: &str| -> PathBuf {
            given.clone().unwrap_or_else(|| self.corpora.join(rel))
        };
        let mut samples = Vec::new();
        let mut skipped = Vec::new();
        if self.wants("normal") {
            let path = at(&self.normal, "normal/requests.jsonl.gz");
            samples.extend(spread(load_normal(&path)?, self.limit));
        }
        if self.wants("httpparams") {
            let path = at(&self.httpparams, "httpparams/payload_train.csv");
            samples.extend(spread(load_httpparams(&path)?, self.limit));
        }
        if let Some(dir) = self.mgm.as_ref().filter(|_| self.wants("mgm")) {
            samples.extend(spread(load_mgm(dir)?, self.limit));
        }
        if self.wants("gotestwaf") {
            let loaded = load_gotestwaf(&at(&self.gotestwaf, "gotestwaf/testcases"))?;
            samples.extend(spread(loaded.samples, self.limit));
            skipped = loaded.unbuildable;
        }
        Ok((samples, skipped))
    }
}

fn safe_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
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

/// Loads the corpora, sends every request to `opts.target` with at most
/// `opts.concurrency` in flight, and tallies the answers per corpus,
/// category and signal. Draws a progress bar on stderr unless
/// `opts.no_progress`.
pub async fn run(opts: &BenchOptions) -> Result<BenchReport, CorpusError> {
    let mut target = parse_target(&opts.target)?;
    if let Some(host) = opts.host.as_ref().filter(|h| !h.is_empty()) {
        target.host = host.clone();
    }
    let target = Arc::new(target);
    let (samples, skipped) = opts.load()?;
    let started = Instant::now();
    let concurrency = opts.concurrency.max(1);

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector);

    let progress = progress_bar(opts, samples.len() as u64);
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<(Sample, Answer)> = JoinSet::new();
    let mut answers = Vec::with_capacity(samples.len());
    for sample in samples {
        let Ok(permit) = semaphore.clone().acquire_owned().await else {
            break; // the semaphore is never closed
        };
        let client = client.clone();
        let target = Arc::clone(&target);
        let progress = progress.clone();
        let timeout = opts.timeout;
        tasks.spawn(async move {
            let answer = send(&client, &target, &sample.request, timeout).await;
            drop(permit);
            progress.inc(1);
            (sample, answer)
        });
        while let Some(joined) = tasks.try_join_next() {
            collect(&mut answers, joined);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        collect(&mut answers, joined);
    }
    progress.finish_and_clear();

    let signals = match &opts.events {
        Some(path) => {
            // The gateway writes its events from a thread that drains every
            // 10 ms: give it time to write the last ones.
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some(read_event_signals(path)?)
        }
        None => None,
    };
    let mut tally = Tally::new(opts.block_status, started);
    for sample in &skipped {
        tally.skip(sample);
    }
    for (sample, answer) in &answers {
        tally.record(sample, answer, signals.as_ref());
    }
    Ok(tally.finish(&opts.label, &opts.target, opts.events.is_some()))
}

fn collect(
    answers: &mut Vec<(Sample, Answer)>,
    joined: Result<(Sample, Answer), tokio::task::JoinError>,
) {
    match joined {
        Ok(pair) => answers.push(pair),
        Err(e) => tracing::warn!("replay task failed: {e}"),
    }
}

fn progress_bar(opts: &BenchOptions, len: u64) -> ProgressBar {
    let progress = if opts.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        progress.set_style(style);
    }
    progress.set_prefix(format!("corpus {}", opts.label));
    progress
}

/// Sends one request; the answer's status and the gateway's headers, or the
/// transport error.
async fn send(client: &HttpClient, target: &Target, req: &RawRequest, timeout: Duration) -> Answer {
    let work = async {
        match to_hyper(target, req) {
            Some(hreq) => {
                let resp = client.request(hreq).await.map_err(|e| format!("{e:?}"))?;
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let answer = Answer {
                    status: Some(resp.status().as_u16()),
                    pc_error: header("x-pc-error"),
                    request_id: header("x-request-id"),
                    error: None,
                };
                // Read the body so the connection can be reused; its content
                // does not matter.
                let _ = resp.into_body().collect().await;
                Ok(answer)
            }
            None => send_raw(target, req).await,
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => Answer::failed(e),
        Err(_) => Answer::failed(format!("timeout after {timeout:?}")),
    }
}

/// The request as a hyper request, or `None` when hyper can't express it
/// (raw UTF-8 or other bytes its URI parser refuses in the target).
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
/// reads the head of the answer.
async fn send_raw(target: &Target, req: &RawRequest) -> Result<Answer, String> {
    let mut stream = tokio::net::TcpStream::connect(&target.dial)
        .await
        .map_err(|e| format!("connect {}: {e}", target.dial))?;
    stream
        .write_all(&req.to_wire(&target.host))
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() <= 64 * 1024 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_head(&head).ok_or_else(|| "no HTTP status line in answer".to_string())
}

/// The status and the gateway's headers of an HTTP/1.1 answer head.
fn parse_head(head: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let mut answer = Answer {
        status: Some(status),
        ..Answer::default()
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_string());
        if name.eq_ignore_ascii_case("x-pc-error") {
            answer.pc_error = value;
        } else if name.eq_ignore_ascii_case("x-request-id") {
            answer.request_id = value;
        }
    }
    Some(answer)
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
        assert_eq!(t.dial, "localhost:80");
        let t = parse_target("http://[::1]:9000").expect("target");
        assert_eq!(t.dial, "[::1]:9000");
        assert!(parse_target("https://127.0.0.1").is_err());
        assert!(parse_target("http://127.0.0.1/app").is_err());
    }

    #[test]
    fn answer_heads() {
        let a = parse_head(
            b"HTTP/1.1 403 Forbidden\r\nX-PC-Error: blocked\r\nx-request-id: r-1\r\n\r\nbody",
        )
        .expect("head");
        assert_eq!(a.status, Some(403));
        assert_eq!(a.pc_error.as_deref(), Some("blocked"));
        assert_eq!(a.request_id.as_deref(), Some("r-1"));
        assert_eq!(
            parse_head(b"HTTP/1.0 200\r\n").and_then(|a| a.status),
            Some(200)
        );
        assert!(parse_head(b"garbage\r\n").is_none());
    }

    #[test]
    fn secs() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("x").is_err());
    }

    #[test]
    fn clap_args_and_paths() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            opts: BenchOptions,
        }
        let cli = Cli::parse_from(["x", "--target", "http://127.0.0.1:9", "--label", "a b"]);
        let mut expected = BenchOptions::new("bench/corpora", "http://127.0.0.1:9");
        expected.label = "a b".into();
        assert_eq!(cli.opts, expected);
        assert_eq!(
            cli.opts.report_path(),
            PathBuf::from("bench/results/corpus-a_b.json")
        );
        assert_eq!(
            cli.opts.misclassified_path(),
            PathBuf::from("bench/results/misclassified-a_b.jsonl")
        );
    }

    #[test]
    fn unknown_corpus_is_refused() {
        let mut o = BenchOptions::new("bench/corpora", "http://127.0.0.1:9");
        o.only = vec!["nope".into()];
        assert!(o.load().is_err());
    }
}
