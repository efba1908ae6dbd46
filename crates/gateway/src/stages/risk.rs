//! On core URLs: the risk features of the request's identities, the rank
//! from all signals with its reasons, and the risk headers for the origin.
//! A request already refused never gets here, so it never counts in the
//! velocity of the identities it claims.

use super::{Exchange, Flow, Stage};
use crate::context::Layer;

pub struct Risk;

impl Stage for Risk {
    const NAME: &'static str = "risk";
    const LAYER: Layer = Layer::Policy;
    const CORE_URLS_ONLY: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let Some(policy) = ex.policy() else {
            return Flow::Continue;
        };
        let (verdict, headers) = crate::risk::assess(
            &ex.rt.risk,
            ex.shared.state.as_ref(),
            &ex.ctx,
            &policy.config.name,
            std::time::Duration::from_millis(ex.rt.trust.authority.ttl_ms),
            policy.config.debug,
            &ex.parts,
        )
        .await;
        ex.ctx.risk = Some(verdict);
        if policy.config.risk_headers {
            ex.ctx.risk_headers = headers;
        }
        Flow::Continue
    }
}
