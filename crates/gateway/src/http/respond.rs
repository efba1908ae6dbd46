//! Bodies and the responses the gateway writes itself.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response and of every request sent to an origin.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Why the gateway refused or challenged a request, for the SDK.
pub const X_PC_ERROR: HeaderName = HeaderName::from_static("x-pc-error");

pub fn empty_body() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full_body(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A response written by the gateway itself, always with the request id.
pub fn gateway_response(
    status: u16,
    content_type: &str,
    body: Bytes,
    request_id: &str,
) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A small JSON error answer: `{"error": ..., "request_id": ...}`.
pub fn json_error(status: u16, error: &str, request_id: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": error, "request_id": request_id }).to_string();
    gateway_response(status, "application/json", Bytes::from(body), request_id)
}

/// 16 hex digits, unique enough to find one request in logs.
pub fn new_request_id() -> String {
    hex_id(rand::random::<u64>())
}

/// `n` as 16 lower-case hex digits, written into a buffer rather than
/// through the formatter: this runs once per request.
fn hex_id(n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[(n >> ((15 - i) * 4)) as usize & 15];
    }
    std::str::from_utf8(&digits)
        .map(str::to_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits_with_leading_zeros() {
        for n in [0, 1, 0xabc, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(hex_id(n), format!("{n:016x}"));
        }
        assert_ne!(new_request_id(), new_request_id());
    }
}
