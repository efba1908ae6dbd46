//! CORS for pages on other origins that call protected routes and the
//! challenge service through the SDK: the gateway answers their preflights
//! (the origin does not know the SDK's headers) and lets them read its own
//! answers (`x-pc-error`, the request id).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response};

use super::respond::{ProxyBody, gateway_response};

/// The request's `Origin`, when it is one of `allowed`.
pub fn allowed_origin<'h>(headers: &'h HeaderMap, allowed: &[String]) -> Option<&'h HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(text))
        .then_some(origin)
}

/// Whether the request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight from an allowed origin: the requested method
/// and headers are allowed (the SDK's among them), for ten minutes.
pub fn preflight(
    origin: &HeaderValue,
    headers: &HeaderMap,
    request_id: &str,
) -> Response<ProxyBody> {
    let mut response = gateway_response(204, "text/plain", Bytes::new(), request_id);
    let out = response.headers_mut();
    allow(out, origin);
    if let Some(method) = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
    }
    if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// The origin, its credentials, and that the answer varies by origin.
fn allow(out: &mut HeaderMap, origin: &HeaderValue) {
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    out.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    out.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// Lets an allowed origin read an answer the gateway wrote.
pub fn expose(origin: &HeaderValue, response: &mut Response<ProxyBody>) {
    let out = response.headers_mut();
    if out.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    allow(out, origin);
    out.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-pc-error, x-request-id, retry-after"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_get_a_preflight_answer() {
        let allowed = vec!["https://shop.example".to_string()];
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(allowed_origin(&h, &allowed).is_none());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://shop.example"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-pc-clearance, signature, signature-input, content-digest"),
        );
        assert!(is_preflight(&Method::OPTIONS, &h));
        let origin = allowed_origin(&h, &allowed).unwrap();
        let r = preflight(origin, &h, "rid");
        assert_eq!(r.status(), 204);
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://shop.example"
        );
        assert!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("signature-input")
        );
    }
}
