//! The client address: the allow list (trusted: later stages marked so are
//! skipped), the deny list, threat feeds and temporary bans.

use portcullis_config::ClassAction;

use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer, TrafficClass};

pub struct Ip;

impl Stage for Ip {
    const NAME: &'static str = "ip";
    const LAYER: Layer = Layer::Edge;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let (rt, ctx) = (ex.rt, &mut ex.ctx);
        let ip = ctx.client_ip;
        if rt.allow.contains(ip) {
            ctx.class = TrafficClass::Trusted;
            return Flow::Continue;
        }
        if rt.deny.contains(ip) {
            ctx.add("ip_denied", "deny list", Demand::Block);
            return Flow::Stop;
        }
        for feed in &rt.feeds {
            if feed.set.contains(ip) {
                let demand = match feed.action {
                    ClassAction::Block => Demand::Block,
                    _ => Demand::Tag,
                };
                ctx.add("threat_feed", feed.name.clone(), demand);
                if demand == Demand::Block {
                    return Flow::Stop;
                }
            }
        }
        if let Some(reason) = ex.shared.bans.check(ip) {
            ctx.add("ip_banned", reason, Demand::Block);
        }
        Flow::after(ctx)
    }
}
