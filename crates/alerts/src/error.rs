//! Errors of the runner and of delivery. Neither ever quotes a webhook URL.

use std::time::Duration;

/// Why a webhook or the HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AlertsError {
    #[error("webhook {webhook}: environment variable {env} (its signing secret) is unset or empty")]
    MissingSecret { env: String, webhook: String },
    #[error("cannot set up TLS for webhooks: {0}")]
    Tls(String),
}

/// Why one post to a webhook failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("the webhook URL is not a valid request target")]
    BadUrl,
    #[error("request failed: {0}")]
    Request(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("the robot refused the message: errcode {code}: {message}")]
    Refused { code: i64, message: String },
    #[error("the robot's answer is not the JSON it documents")]
    UnexpectedAnswer,
}

impl DeliveryError {
    /// Worth another attempt: the network, a timeout, an overloaded or
    /// failing server. A refusal (bad token, bad signature, 4xx) is not.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            DeliveryError::Request(_) | DeliveryError::Timeout(_) => true,
            DeliveryError::Status(status) => *status == 429 || *status >= 500,
            DeliveryError::BadUrl
            | DeliveryError::Refused { .. }
            | DeliveryError::UnexpectedAnswer => false,
        }
    }
}
