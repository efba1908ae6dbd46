//! On core URLs: the client's clearance (MAC, expiry, device, network,
//! revocation) and, where the policy asks, its request signature, body
//! digest and nonce.

use super::{Exchange, Flow, Stage};
use crate::context::Layer;
use crate::trust::check::{self, Requirement};

pub struct Trust;

impl Stage for Trust {
    const NAME: &'static str = "trust";
    const LAYER: Layer = Layer::Clean;
    const CORE_URLS_ONLY: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let Some(policy) = ex.policy() else {
            return Flow::Continue;
        };
        let need = Requirement {
            clearance: policy.config.clearance,
            signature: policy.config.signature,
        };
        check::check(
            &ex.rt.trust,
            ex.shared.state.as_ref(),
            &mut ex.ctx,
            &ex.parts,
            &ex.target.authority,
            ex.body.whole(),
            need,
        )
        .await;
        Flow::after(&ex.ctx)
    }
}
