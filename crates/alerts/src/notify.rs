//! Delivery: one bounded queue and one task per webhook, so a slow or dead
//! robot delays only its own messages and never the evaluation. Each post
//! has a timeout and a few retries with doubling backoff; what still fails
//! is counted and logged without the URL's token.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_config::{WebhookConfig, WebhookFormat};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::engine::Message;
use crate::error::{AlertsError, DeliveryError};
use crate::format;
use crate::stats::Counters;

/// Messages waiting per webhook; beyond it new ones are dropped and counted.
const QUEUE: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The part of a robot's answer read (to find its `errcode`).
const MAX_ANSWER: usize = 64 * 1024;
const MAX_ERRMSG: usize = 200;

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP/1 client for `http://` and `https://` (rustls with the ring
/// provider, as the gateway's listener, and Mozilla's roots).
pub(crate) fn http_client() -> Result<HttpClient, AlertsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| AlertsError::Tls(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Timeout and retries of one message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    /// Wait before the second attempt; doubled before each later one.
    pub(crate) backoff: Duration,
    /// For the whole exchange: connect, send, read the answer.
    pub(crate) timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// A webhook ready to post to: its secret read from the environment.
pub(crate) struct Webhook {
    url: String,
    format: WebhookFormat,
    secret: Option<String>,
    /// What logs show instead of the URL.
    pub(crate) label: String,
}

impl Webhook {
    pub(crate) fn resolve(config: &WebhookConfig) -> Result<Self, AlertsError> {
        let label = redact(&config.url);
        let secret = match &config.secret_env {
            Some(env) => match std::env::var(env) {
                Ok(secret) if !secret.is_empty() => Some(secret),
                _ => {
                    return Err(AlertsError::MissingSecret {
                        env: env.clone(),
                        webhook: label,
                    });
                }
            },
            None => None,
        };
        Ok(Webhook {
            url: config.url.clone(),
            format: config.format,
            secret,
            label,
        })
    }
}

/// `scheme://host/…`: enough to tell webhooks apart in logs. The path goes
/// too, because Slack keeps its token there (WeCom and DingTalk keep theirs
/// in the query).
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let tail = if end < rest.len() { "/…" } else { "" };
    format!("{scheme}://{}{tail}", &rest[..end])
}

/// The sending side of one webhook's queue.
pub(crate) struct Outbox {
    tx: mpsc::Sender<Arc<Message>>,
    label: String,
    counters: Arc<Counters>,
}

impl Outbox {
    /// Starts the webhook's delivery task; it ends when the outbox is dropped
    /// and its queue is empty.
    pub(crate) fn start(
        hook: Webhook,
        client: HttpClient,
        retry: Retry,
        counters: Arc<Counters>,
    ) -> Outbox {
        let (tx, mut rx) = mpsc::channel::<Arc<Message>>(QUEUE);
        let label = hook.label.clone();
        let worker_counters = Arc::clone(&counters);
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                deliver(&client, &hook, &message, retry, &worker_counters).await;
            }
        });
        Outbox {
            tx,
            label,
            counters,
        }
    }

    /// Queues a message without waiting; a full queue drops it.
    pub(crate) fn offer(&self, message: Arc<Message>) {
        if self.tx.try_send(message).is_err() {
            self.counters.dropped.fetch_add(1, Relaxed);
            tracing::warn!(webhook = %self.label, "alert queue full; message dropped");
        }
    }
}

async fn deliver(
    client: &HttpClient,
    hook: &Webhook,
    message: &Message,
    retry: Retry,
    counters: &Counters,
) {
    let body = Bytes::from(format::render(hook.format, message).to_string());
    let mut backoff = retry.backoff;
    for attempt in 1..=retry.attempts {
        match post(client, hook, body.clone(), retry.timeout).await {
            Ok(()) => {
                counters.delivered.fetch_add(1, Relaxed);
                tracing::debug!(webhook = %hook.label, attempt, "alert message delivered");
                return;
            }
            Err(e) if e.retryable() && attempt < retry.attempts => {
                counters.retries.fetch_add(1, Relaxed);
                tracing::debug!(webhook = %hook.label, attempt, error = %e, "alert delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            Err(e) => {
                counters.failed.fetch_add(1, Relaxed);
                tracing::warn!(webhook = %hook.label, attempt, error = %e, "alert message not delivered");
                return;
            }
        }
    }
}

async fn post(
    client: &HttpClient,
    hook: &Webhook,
    body: Bytes,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let url = match &hook.secret {
        Some(secret) => format::dingtalk_signed_url(&hook.url, secret, crate::now_ms()),
        None => hook.url.clone(),
    };
    // The builder's error would quote the URL: it is replaced, not kept.
    let request = http::Request::post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("portcullis/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|_| DeliveryError::BadUrl)?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| DeliveryError::Request(error_chain(&e)))?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Ok::<_, DeliveryError>((status, answer))
    };
    let (status, answer) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DeliveryError::Timeout(timeout))??;
    check_answer(hook.format, status, &answer)
}

/// WeCom and DingTalk answer 200 with an `errcode` (0 when accepted).
#[derive(Deserialize)]
struct RobotAnswer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

fn check_answer(
    format: WebhookFormat,
    status: StatusCode,
    answer: &[u8],
) -> Result<(), DeliveryError> {
    if !status.is_success() {
        return Err(DeliveryError::Status(status.as_u16()));
    }
    if matches!(format, WebhookFormat::Wecom | WebhookFormat::Dingtalk) {
        let robot: RobotAnswer =
            serde_json::from_slice(answer).map_err(|_| DeliveryError::UnexpectedAnswer)?;
        if robot.errcode != 0 {
            return Err(DeliveryError::Refused {
                code: robot.errcode,
                message: robot.errmsg.chars().take(MAX_ERRMSG).collect(),
            });
        }
    }
    Ok(())
}

/// An error and its causes on one line (hyper's client errors say little
/// on their own; none of them quote the URL).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_never_show_tokens() {
        assert_eq!(
            redact("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=secret-key"),
            "https://qyapi.weixin.qq.com/…"
        );
        assert_eq!(
            redact("https://oapi.dingtalk.com/robot/send?access_token=tok"),
            "https://oapi.dingtalk.com/…"
        );
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redact("http://10.0.0.5:8080"), "http://10.0.0.5:8080");
        assert_eq!(redact("http://relay?token=x"), "http://relay/…");
    }

    #[test]
    fn robot_answers_are_checked() {
        let ok = StatusCode::OK;
        assert!(check_answer(WebhookFormat::Wecom, ok, br#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        let refused = check_answer(
            WebhookFormat::Dingtalk,
            ok,
            br#"{"errcode":310000,"errmsg":"sign not match"}"#,
        );
        assert!(
            matches!(&refused, Err(DeliveryError::Refused { code: 310000, message }) if message == "sign not match"),
            "{refused:?}"
        );
        assert!(!refused.unwrap_err().retryable());
        assert!(matches!(
            check_answer(WebhookFormat::Wecom, ok, b"<html>"),
            Err(DeliveryError::UnexpectedAnswer)
        ));
        assert!(check_answer(WebhookFormat::Slack, ok, b"ok").is_ok());
        assert!(check_answer(WebhookFormat::Generic, StatusCode::NO_CONTENT, b"").is_ok());
        let busy = check_answer(WebhookFormat::Generic, StatusCode::TOO_MANY_REQUESTS, b"");
        assert!(busy.unwrap_err().retryable());
        let gone = check_answer(WebhookFormat::Slack, StatusCode::NOT_FOUND, b"no_service");
        assert!(!gone.unwrap_err().retryable());
    }

    #[test]
    fn a_missing_secret_names_the_variable_not_the_url() {
        let config = WebhookConfig {
            url: "https://oapi.dingtalk.com/robot/send?access_token=tok".into(),
            format: WebhookFormat::Dingtalk,
            secret_env: Some("PORTCULLIS_TEST_UNSET_SECRET_4f1c".into()),
        };
        let Err(e) = Webhook::resolve(&config) else {
            panic!("resolved without its secret");
        };
        let text = e.to_string();
        assert!(text.contains("PORTCULLIS_TEST_UNSET_SECRET_4f1c"), "{text}");
        assert!(!text.contains("tok"), "{text}");
    }
}
