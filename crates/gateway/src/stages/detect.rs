//! Attack detection (SQLi, XSS, RCE, traversal, SSRF, XXE ...) over the
//! canonical target, the headers and the inspected body, block or log-only
//! per route.

use portcullis_config::DetectMode;

use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer};

pub struct Detect;

impl Stage for Detect {
    const NAME: &'static str = "detect";
    const LAYER: Layer = Layer::Clean;
    const SKIPPED_WHEN_TRUSTED: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let Some(detection) = ex.rt.detection(ex.target.path()) else {
            return Flow::Continue;
        };
        let headers = ex.header_pairs();
        // The raw target: its decoding is what the origin receives, and its
        // encodings (a `%2F` inside a segment, stacked escapes) are evidence.
        let target = ex.raw_target.as_str();
        let (body, complete) = ex.body.inspected();
        let verdict = detection.detector.inspect(&portcullis_detect::RawRequest {
            method: ex.parts.method.as_str(),
            target: target.as_bytes(),
            headers: &headers,
            body,
            body_truncated: !complete,
        });
        drop(headers);
        // Signal findings (a scanner-looking path, an inspection limit under
        // `on_incomplete = "signal"`) weigh in the risk rank and never refuse.
        let attack = verdict.is_attack(detection.threshold);
        let block = mode_demand(detection.mode);
        for finding in verdict.findings.iter().filter(|f| attack || f.signal) {
            let evidence = format!(
                "{} {}: {}",
                finding.rule_id, finding.location, finding.evidence
            );
            let demand = if finding.signal { Demand::Tag } else { block };
            ex.ctx.add(finding.family.as_str(), evidence, demand);
        }
        Flow::after(&ex.ctx)
    }
}

/// What a detection that fires asks for under the route's mode.
pub fn mode_demand(mode: DetectMode) -> Demand {
    match mode {
        DetectMode::Block => Demand::Block,
        DetectMode::LogOnly => Demand::Tag,
    }
}
