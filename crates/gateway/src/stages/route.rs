//! Which core URL (policy) the canonical request is on, if any. A route
//! that refuses encoded separators refuses them here, and so is a path that
//! origins would route elsewhere (decoded twice, folded to ASCII, trimmed):
//! its readings must fall under the same policy and rate limits.

use portcullis_config::EncodedSlash;

use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer};
use crate::http::readings::other_readings;

pub struct Route;

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
        if let Some(reading) = other_readings(path)
            .into_iter()
            .find(|reading| !routed_alike(ex, host, method, path, reading))
        {
            let evidence = format!("{path} also reads as {reading}");
            ex.ctx.add("path_confusion", evidence, Demand::Block);
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

/// Whether two paths meet the same policy and the same rate limits.
fn routed_alike(ex: &Exchange<'_>, host: &str, method: &str, path: &str, other: &str) -> bool {
    let rt = ex.rt;
    rt.policies.find(host, method, path) == rt.policies.find(host, method, other)
        && rt
            .rate_limits
            .routed(host, method, path)
            .eq(rt.rate_limits.routed(host, method, other))
}
