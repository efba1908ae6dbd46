//! Which core URL (policy) the canonical request is on, if any. A route
//! that refuses encoded separators refuses them here.

use portcullis_config::EncodedSlash;

use super::{Exchange, Flow, Stage};
use crate::context::Layer;

pub struct Route;

impl Stage for Route {
    const NAME: &'static str = "route";
    const LAYER: Layer = Layer::Policy;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let policies = &ex.rt.policies;
        if policies.is_empty() {
            return Flow::Continue;
        }
        let method = ex.parts.method.as_str();
        let Some(index) = policies.find(&ex.target.authority, method, ex.target.path()) else {
            return Flow::Continue;
        };
        ex.ctx.policy = Some(index);
        let refuses_encoded = policies
            .get(index)
            .is_some_and(|p| p.config.encoded_slash == EncodedSlash::Refuse);
        if refuses_encoded && ex.target.path.encoded_slash {
            ex.ctx
                .refuse("encoded_slash", "an encoded path separator", 400);
        }
        Flow::after(&ex.ctx)
    }
}
