//! Rate limits per route and key (address, prefix, device, account,
//! route); repeated violations ban the address.

use portcullis_config::LimitAction;

use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer, retry_after_secs};

pub struct Limits;

impl Stage for Limits {
    const NAME: &'static str = "limits";
    const LAYER: Layer = Layer::Clean;
    const SKIPPED_WHEN_TRUSTED: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let rt = ex.rt;
        if rt.rate_limits.is_empty() {
            return Flow::Continue;
        }
        let ctx = &mut ex.ctx;
        let facts = portcullis_limits::RequestFacts {
            host: &ex.target.authority,
            path: ex.target.path(),
            method: ex.parts.method.as_str(),
            ip: ctx.client_ip,
            device: ctx.device.as_deref(),
            account: ctx.account.as_deref(),
        };
        let exceeded = match rt.rate_limits.check(ex.shared.state.as_ref(), &facts).await {
            Ok(exceeded) => exceeded,
            Err(e) => {
                // Fail open: limits are lost while the state is down, the site is not.
                tracing::warn!(error = %e, "rate limit check failed");
                return Flow::Continue;
            }
        };
        for excess in exceeded {
            let demand = match excess.action {
                LimitAction::Reject => Demand::TooMany {
                    retry_after_s: retry_after_secs(excess.retry_after),
                    status: 429,
                },
                LimitAction::Tag => Demand::Tag,
            };
            if let Some(ttl) = excess.ban {
                let reason = format!("rate limit {} exceeded repeatedly", excess.rule);
                match ex.shared.bans.ban(ctx.client_ip, ttl, &reason).await {
                    Ok(_) => {
                        tracing::info!(ip = %ctx.client_ip, rule = excess.rule, ttl_s = ttl.as_secs(), "address banned")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot record a ban"),
                }
                ctx.add("rate_limit_ban", reason, Demand::Block);
            }
            ctx.add("rate_limit", excess.rule.to_string(), demand);
        }
        Flow::after(ctx)
    }
}
