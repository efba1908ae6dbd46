//! On core URLs: the action of the policy's band for the rank (challenge
//! or intercept), or in log-only mode what it would have been.

use super::{Exchange, Flow, Stage};
use crate::context::Layer;

pub struct Bands;

impl Stage for Bands {
    const NAME: &'static str = "bands";
    const LAYER: Layer = Layer::Policy;
    const CORE_URLS_ONLY: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        if let Some(policy) = ex.policy() {
            crate::policy::apply_bands(&policy.config, &mut ex.ctx);
        }
        Flow::after(&ex.ctx)
    }
}
