//! The API's error answers: a status and `{"error": ..., "errors": [...]}`.
//! Internal failures are logged and answered with a generic message.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_config::FieldError;
use serde::Serialize;

use crate::db::DbError;

/// One configuration problem, by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldIssue {
    pub field: String,
    pub message: String,
}

impl From<&FieldError> for FieldIssue {
    fn from(e: &FieldError) -> Self {
        FieldIssue {
            field: e.field.clone(),
            message: e.message.clone(),
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<FieldIssue>,
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[FieldIssue]>::is_empty")]
    errors: &'a [FieldIssue],
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: Vec::new(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "log in or give a valid bearer token",
        )
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("no such {what}"))
    }

    /// A configuration that does not validate, with each field's problem.
    pub fn invalid(errors: &[FieldError]) -> Self {
        ApiError {
            errors: errors.iter().map(FieldIssue::from).collect(),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the configuration does not validate",
            )
        }
    }

    /// Logs the cause; the client learns only that it failed.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "console request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the gateway's log)",
        )
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<portcullis_store::StoreError> for ApiError {
    fn from(e: portcullis_store::StoreError) -> Self {
        ApiError::internal(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            errors: &self.errors,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_s {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}
