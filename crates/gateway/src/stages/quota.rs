//! The package quota (QPS x bandwidth) of the whole gateway.

use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer, retry_after_secs};

pub struct Quota;

impl Stage for Quota {
    const NAME: &'static str = "quota";
    const LAYER: Layer = Layer::Edge;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let quota = &ex.rt.quota;
        if let Err(refused) = quota.admit(ex.target.path()) {
            let demand = Demand::TooMany {
                retry_after_s: retry_after_secs(refused.retry_after),
                status: quota.status,
            };
            ex.ctx.add("quota_exceeded", refused.which, demand);
        }
        Flow::after(&ex.ctx)
    }
}
