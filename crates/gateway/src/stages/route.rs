//! Which core URL (policy) the canonical request is on, if any. A route
//! that refuses encoded separators refuses them here, and so is a request
//! that origins would route elsewhere: its other readings (a path decoded
//! twice, folded to ASCII or trimmed; a method named by an override header,
//! a `_method` field of the query or, once the body stage read it, of the
//! body) must fall under the same policy and rate limits.

use http::HeaderMap;
use portcullis_config::EncodedSlash;
use portcullis_detect::decode::form_values;

use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer};
use crate::http::headers::same_name;
use crate::http::readings::other_readings;

pub struct Route;

/// Headers by which frameworks let a POST act as another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The form, query or JSON field by which frameworks (Rails, Laravel,
/// Symfony) let a POST act as another method.
const METHOD_FIELD: &str = "_method";

impl Stage for Route {
    const NAME: &'static str = "route";
    const LAYER: Layer = Layer::Policy;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let rt = ex.rt;
        if rt.policies.is_empty() && rt.rate_limits.is_empty() {
            return Flow::Continue;
        }
        let method = ex.parts.method.as_str();
        let host = ex.target.authority.as_str();
        let path = ex.target.path();
        if let Some(evidence) = confusion(ex, host, method, path) {
            ex.ctx.add("route_confusion", evidence, Demand::Block);
            return Flow::Stop;
        }
        let Some(index) = rt.policies.find(host, method, path) else {
            return Flow::Continue;
        };
        ex.ctx.policy = Some(index);
        let refuses_encoded = rt
            .policies
            .get(index)
            .is_some_and(|p| p.config.encoded_slash == EncodedSlash::Refuse);
        if refuses_encoded && ex.target.path.encoded_slash {
            ex.ctx
                .refuse("encoded_slash", "an encoded path separator", 400);
        }
        Flow::after(&ex.ctx)
    }
}

/// The first other reading of the request that meets another policy or
/// other rate limits than the request as read here.
fn confusion(ex: &Exchange<'_>, host: &str, method: &str, path: &str) -> Option<String> {
    let mut paths = other_readings(path);
    let methods = overridden_methods(&ex.parts.headers, ex.target.query.as_deref());
    if paths.is_empty() && methods.is_empty() {
        return None;
    }
    paths.push(path.to_owned());
    let mut methods_read: Vec<&str> = methods.iter().map(String::as_str).collect();
    methods_read.push(method);
    for other_method in &methods_read {
        for other_path in &paths {
            if !routed_alike(ex, host, (method, path), (other_method, other_path)) {
                return Some(format!(
                    "{method} {path} also reads as {other_method} {other_path}"
                ));
            }
        }
    }
    None
}

/// The methods a framework may read instead of the request line's: an
/// override header under any spelling (case, `_` for `-`) and each member
/// of a list in it, and a `_method` query parameter.
fn overridden_methods(headers: &HeaderMap, query: Option<&str>) -> Vec<String> {
    let mut methods = Vec::new();
    let override_header = |name: &str| METHOD_OVERRIDES.iter().any(|o| same_name(name, o));
    for (name, value) in headers {
        if override_header(name.as_str()) {
            add_methods(&mut methods, &String::from_utf8_lossy(value.as_bytes()));
        }
    }
    if let Some(query) = query {
        add_form_methods(&mut methods, query.as_bytes());
    }
    methods
}

/// Every `_method` field of a form or query: frameworks differ on which of
/// several they read (PHP and Rack take the last), so each counts.
fn add_form_methods(methods: &mut Vec<String>, form: &[u8]) {
    for value in form_values(form, METHOD_FIELD) {
        add_methods(methods, &String::from_utf8_lossy(&value));
    }
}

fn add_methods(methods: &mut Vec<String>, value: &str) {
    methods.extend(
        value
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_ascii_uppercase),
    );
}

/// The methods a form, multipart or JSON body names in `_method`, for the
/// body stage to check once the body is read (see [`check_body_method`]).
fn body_methods(content_type: &[u8], body: &[u8]) -> Vec<String> {
    let mut methods = Vec::new();
    // Cheap first: most bodies never mention it (a JSON key may escape
    // the underscore, so `method` is what is looked for).
    if memchr::memmem::find(body, b"method").is_none() {
        return methods;
    }
    let media = content_type.to_ascii_lowercase();
    if media.starts_with(b"application/x-www-form-urlencoded") {
        add_form_methods(&mut methods, body);
    } else if media.starts_with(b"multipart/form-data") {
        for value in multipart_fields(body, METHOD_FIELD) {
            add_methods(&mut methods, &value);
        }
    } else if media.starts_with(b"application/json") || media.ends_with(b"+json") {
        let object: Option<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(body).ok();
        if let Some(value) = object.as_ref().and_then(|o| o.get(METHOD_FIELD)?.as_str()) {
            add_methods(&mut methods, value);
        }
    }
    methods
}

/// The value of every multipart part named `name`: the line after the
/// blank line that ends its headers.
fn multipart_fields(body: &[u8], name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\"");
    let lower = body.to_ascii_lowercase();
    memchr::memmem::find_iter(&lower, marker.as_bytes())
        .filter_map(|at| {
            let rest = &body[at..];
            let start = memchr::memmem::find(rest, b"\r\n\r\n")? + 4;
            let value = &rest[start..];
            let end = memchr::memmem::find(value, b"\r\n").unwrap_or(value.len());
            Some(String::from_utf8_lossy(&value[..end]).into_owned())
        })
        .collect()
}

/// Once the body is read: a `_method` in it that meets another policy or
/// other rate limits than the request line's method is a route confusion.
pub(super) fn check_body_method(ex: &mut Exchange<'_>, body: &[u8]) {
    let rt = ex.rt;
    if rt.policies.is_empty() && rt.rate_limits.is_empty() {
        return;
    }
    let content_type = ex
        .parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map_or(&b""[..], |v| v.as_bytes());
    let methods = body_methods(content_type, body);
    let (host, method, path) = (
        ex.target.authority.as_str(),
        ex.parts.method.as_str(),
        ex.target.path(),
    );
    let stepped = methods
        .iter()
        .find(|other| !routed_alike(ex, host, (method, path), (other.as_str(), path)));
    if let Some(other) = stepped {
        let evidence =
            format!("{method} {path} also reads as {other} {path} (body {METHOD_FIELD})");
        ex.ctx.add("route_confusion", evidence, Demand::Block);
    }
}

/// Whether two readings meet the same policy and the same rate limits.
fn routed_alike(ex: &Exchange<'_>, host: &str, one: (&str, &str), other: (&str, &str)) -> bool {
    let (policies, limits) = (&ex.rt.policies, &ex.rt.rate_limits);
    policies.find(host, one.0, one.1) == policies.find(host, other.0, other.1)
        && limits
            .routed(host, one.0, one.1)
            .eq(limits.routed(host, other.0, other.1))
}
