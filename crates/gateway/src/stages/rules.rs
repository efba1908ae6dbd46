//! `[[detect.rules]]`: the operator's own rules, over the same canonical
//! request as detection, where detection is on.

use portcullis_config::RuleAction;

use super::detect::mode_demand;
use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer};

pub struct Rules;

impl Stage for Rules {
    const NAME: &'static str = "rules";
    const LAYER: Layer = Layer::Clean;
    const SKIPPED_WHEN_TRUSTED: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let rt = ex.rt;
        if rt.custom_rules.is_empty() {
            return Flow::Continue;
        }
        let Some(detection) = rt.detection(ex.target.path()) else {
            return Flow::Continue;
        };
        let block = mode_demand(detection.mode);
        let headers = ex.header_pairs();
        let target = ex.parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let (body, _) = ex.body.inspected();
        let req = portcullis_rules::Request::new(
            ex.parts.method.as_str(),
            &ex.target.authority,
            target,
            &headers,
            ex.ctx.client_ip,
            body,
        );
        let mut fired = Vec::new();
        for rule in &rt.custom_rules {
            if !rule.applies_to(req.path()) || !rule.expr.matches(&req) {
                continue;
            }
            let (weight, demand) = match rule.action {
                RuleAction::Block => (rule.score, block),
                RuleAction::Tag => (rule.score, Demand::Tag),
                // Recorded in the event, but no weight in the risk score.
                RuleAction::Log => (0, Demand::Tag),
            };
            fired.push((rule.id.clone(), weight, demand));
        }
        drop(req);
        drop(headers);
        for (id, weight, demand) in fired {
            ex.ctx.add_weighted("custom_rule", weight, id, demand);
        }
        Flow::after(&ex.ctx)
    }
}
