//! The gateway's answers to the requests it stops: the configured
//! templates (`[block]`), the challenge (JSON or the interstitial page) and
//! a policy's own intercept response. Every one carries the request id.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response};

use crate::context::{Answer, RequestContext};
use crate::http::respond::{ProxyBody, X_PC_ERROR, gateway_response};
use crate::policy;
use crate::runtime::Runtime;
use crate::trust::portal;

/// A gateway answer from the configured templates, always with the request id.
pub fn intercept(
    rt: &Runtime,
    ctx: &RequestContext,
    headers: &HeaderMap,
    answer: Answer,
) -> Response<ProxyBody> {
    let block = &rt.config.block;
    let (template, status, retry_after, pc_error) = match answer {
        Answer::Blocked => (&block.blocked, block.blocked.status, None, None),
        Answer::BadRequest { status } => (&block.bad_request, status, None, None),
        Answer::TooMany {
            retry_after_s,
            status,
        } => (&block.too_many, status, Some(retry_after_s), None),
        Answer::Refuse { status, code } => (&block.blocked, status, None, Some(code)),
        Answer::Challenge { code } => return challenge(rt, ctx, headers, code),
        Answer::Custom => match policy_response(rt, ctx) {
            Some(response) => return response,
            None => (&block.blocked, block.blocked.status, None, None),
        },
    };
    let body = rt.render(template, status, &ctx.request_id);
    let mut response = gateway_response(status, &template.content_type, body, &ctx.request_id);
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(code) = pc_error {
        response
            .headers_mut()
            .insert(X_PC_ERROR, HeaderValue::from_static(code));
    }
    response
}

/// 401 with `x-pc-error`: the interstitial page for a browser navigation,
/// JSON pointing at the challenge for API clients (the SDK handles it).
fn challenge(
    rt: &Runtime,
    ctx: &RequestContext,
    headers: &HeaderMap,
    code: &'static str,
) -> Response<ProxyBody> {
    let mut response = if rt.trust.interstitial && policy::is_navigation(headers) {
        gateway_response(
            401,
            "text/html; charset=utf-8",
            portal::interstitial(&ctx.request_id),
            &ctx.request_id,
        )
    } else {
        gateway_response(
            401,
            "application/json",
            portal::challenge_body(&ctx.request_id, code),
            &ctx.request_id,
        )
    };
    response
        .headers_mut()
        .insert(X_PC_ERROR, HeaderValue::from_static(code));
    response
}

/// The matching policy's own intercept response, if it has one.
fn policy_response(rt: &Runtime, ctx: &RequestContext) -> Option<Response<ProxyBody>> {
    let policy = rt.policies.get(ctx.policy?)?;
    let custom = policy.config.intercept.as_ref()?;
    let body = Bytes::from(custom.body.replace("{{request_id}}", &ctx.request_id));
    let mut response = gateway_response(custom.status, &custom.content_type, body, &ctx.request_id);
    for (name, value) in &custom.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    Some(response)
}
