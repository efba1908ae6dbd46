//! On core URLs: the risk features of the request's identities, the rank
//! from all signals with its reasons, and the risk headers for the origin.
//! A request already refused never gets here, so it never counts in the
//! velocity of the identities it claims.

use portcullis_config::ClearanceRequirement;

use super::{Exchange, Flow, Stage};
use crate::context::Layer;
use crate::risk::Assessing;

pub struct Risk;

impl Stage for Risk {
    const NAME: &'static str = "risk";
    const LAYER: Layer = Layer::Policy;
    const CORE_URLS_ONLY: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let Some(policy) = ex.policy() else {
            return Flow::Continue;
        };
        let checks_clearance = policy.config.clearance != ClearanceRequirement::Off;
        let how = Assessing {
            route: &policy.config.name,
            session: std::time::Duration::from_millis(ex.rt.trust.authority.ttl_ms),
            debug: policy.config.debug,
            sdk_device: checks_clearance
                && ex
                    .parts
                    .headers
                    .contains_key(ex.rt.config.identity.device_header.as_str()),
        };
        let (verdict, headers) =
            crate::risk::assess(&ex.rt.risk, &ex.shared.state, &ex.ctx, how, &ex.parts).await;
        ex.ctx.risk = Some(verdict);
        if policy.config.risk_headers {
            ex.ctx.risk_headers = headers;
        }
        Flow::Continue
    }
}
