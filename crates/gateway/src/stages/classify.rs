//! Traffic classes: crawlers, automation and scanners, each with its
//! configured action (allow, tag, throttle, block); and browsers whose
//! usual headers are missing.

use std::net::IpAddr;

use portcullis_config::ClassAction;
use portcullis_state::Gcra;

use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer, TrafficClass, retry_after_secs};
use crate::shared::Shared;

pub struct Classify;

impl Stage for Classify {
    const NAME: &'static str = "classify";
    const LAYER: Layer = Layer::Edge;
    const SKIPPED_WHEN_TRUSTED: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let traffic = &ex.rt.config.traffic;
        let headers = &ex.parts.headers;
        let ctx = &mut ex.ctx;
        if let Some(found) = ex.rt.classifier.classify(ctx.client_ip, headers) {
            ctx.class = found.class;
            let (action, rps, name) = match found.class {
                TrafficClass::Scanner => (
                    traffic.scanner.action,
                    traffic.scanner.throttle_rps,
                    "scanner",
                ),
                TrafficClass::Automation => (
                    traffic.automation.action,
                    traffic.automation.throttle_rps,
                    "automation",
                ),
                _ => (traffic.crawler.action, 1.0, "crawler"),
            };
            let demand = match action {
                ClassAction::Allow => return Flow::Continue,
                ClassAction::Tag => Demand::Tag,
                ClassAction::Block => Demand::Block,
                ClassAction::Throttle => throttle(ex.shared, name, ctx.client_ip, rps).await,
            };
            ctx.add(name, found.evidence, demand);
        }
        if ctx.class == TrafficClass::Normal
            && let Some(missing) = crate::edge::classify::missing_browser_headers(headers)
        {
            ctx.add("browser_headers_missing", missing, Demand::Tag);
        }
        Flow::after(ctx)
    }
}

async fn throttle(shared: &Shared, class: &str, ip: IpAddr, rps: f64) -> Demand {
    let burst = (rps * 5.0).ceil().max(1.0) as u32;
    let key = format!("throttle:{class}:{ip}");
    match shared
        .state
        .rate_limit(&key, Gcra::per_second(rps, burst), 1)
        .await
    {
        Ok(d) if !d.allowed => Demand::TooMany {
            retry_after_s: retry_after_secs(d.retry_after),
            status: 429,
        },
        Ok(_) => Demand::Tag,
        Err(e) => {
            tracing::warn!(error = %e, "throttle lookup failed");
            Demand::Tag
        }
    }
}
