//! The request pipeline: the stages in their order, declared once, and the
//! one runner that times them, skips those that do not apply and stops at
//! the first refusal. The order is the request's journey:
//!
//! | # | stage | layer | skipped |
//! |---|---|---|---|
//! | 1 | framing | edge | |
//! | 2 | ip | edge | |
//! | 3 | protocol (and the canonical request) | edge | |
//! | 4 | route (which core URL) | policy | |
//! | 5 | quota | edge | |
//! | 6 | classify | edge | allow-listed |
//! | 7 | identify | clean | |
//! | 8 | limits | clean | allow-listed |
//! | 9 | body | edge | |
//! | 10 | portal (own endpoints, preflights) | clean | |
//! | 11 | detect | clean | allow-listed |
//! | 12 | rules | clean | allow-listed |
//! | 13 | trust (clearance, signature) | clean | not a core URL |
//! | 14 | jwt | clean | not a core URL |
//! | 15 | risk | policy | not a core URL |
//! | 16 | bands | policy | not a core URL |

// The TSC clock: a stage is timed at every request, and the system clock's
// read costs about twice as much.
use quanta::Instant;

use crate::context::TrafficClass;
use crate::stages::{
    Exchange, Flow, Stage, bands::Bands, body::Body, classify::Classify, detect::Detect,
    framing::Framing, identify::Identify, ip::Ip, jwt::Jwt, limits::Limits, portal::Portal,
    protocol::Protocol, quota::Quota, risk::Risk, route::Route, rules::Rules, trust::Trust,
};

/// Declares the order once: the runner, the stage names and their count
/// all come from this one list.
macro_rules! pipeline {
    ($($stage:ident),+ $(,)?) => {
        /// The stages' names, in order (metrics label them so).
        pub const STAGE_NAMES: &[&str] = &[$(<$stage as Stage>::NAME),+];

        /// Runs the stages in order until one stops the request.
        pub async fn run(ex: &mut Exchange<'_>) {
            let mut index = 0;
            let mut clock = Instant::now();
            $(
                if run_stage(&$stage, index, ex, &mut clock).await == Flow::Stop {
                    return;
                }
                index += 1;
            )+
            let _ = index;
        }
    };
}

pipeline!(
    Framing, Ip, Protocol, Route, Quota, Classify, Identify, Limits, Body, Portal, Detect, Rules,
    Trust, Jwt, Risk, Bands,
);

/// Runs one stage and times it from `clock` (the end of the previous
/// timed stage: one clock read per stage), which it moves on.
async fn run_stage<S: Stage>(
    stage: &S,
    index: usize,
    ex: &mut Exchange<'_>,
    clock: &mut Instant,
) -> Flow {
    if S::SKIPPED_WHEN_TRUSTED && ex.ctx.class == TrafficClass::Trusted {
        return Flow::Continue;
    }
    if S::CORE_URLS_ONLY && ex.ctx.policy.is_none() {
        return Flow::Continue;
    }
    let flow = stage.run(ex).await;
    let now = Instant::now();
    ex.shared.metrics.hot.observe(index, now - *clock);
    *clock = now;
    flow
}

/// The pipeline without sockets; the stage cost bench (in `proxy`) drives
/// its harness too.
#[cfg(test)]
pub(crate) mod tests;
