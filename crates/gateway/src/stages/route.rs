//! Which core URL (policy) the canonical request is on, if any. A route
//! that refuses encoded separators refuses them here, and so is a request
//! that origins would route elsewhere: its other readings (a path decoded
//! twice, folded to ASCII or trimmed; a method named by an override header)
//! must fall under the same policy and rate limits.

use http::HeaderMap;
use portcullis_config::EncodedSlash;

use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer};
use crate::http::readings::other_readings;

pub struct Route;

/// Headers by which frameworks let a POST act as another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

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
    let methods = overridden_methods(&ex.parts.headers);
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

fn overridden_methods(headers: &HeaderMap) -> Vec<String> {
    METHOD_OVERRIDES
        .iter()
        .flat_map(|name| headers.get_all(*name))
        .filter_map(|value| value.to_str().ok())
        .map(|value| value.trim().to_ascii_uppercase())
        .collect()
}

/// Whether two readings meet the same policy and the same rate limits.
fn routed_alike(ex: &Exchange<'_>, host: &str, one: (&str, &str), other: (&str, &str)) -> bool {
    let (policies, limits) = (&ex.rt.policies, &ex.rt.rate_limits);
    policies.find(host, one.0, one.1) == policies.find(host, other.0, other.1)
        && limits
            .routed(host, one.0, one.1)
            .eq(limits.routed(host, other.0, other.1))
}
