//! Metrics counted on every request, kept per worker thread so that two
//! cores never write the same cache line; summed only when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::context::{Action, Answer, Layer, TrafficClass};

/// Most stages a pipeline may time.
pub const MAX_STAGES: usize = 24;

/// Upper bounds in nanoseconds: 1 µs x 4^i, up to ~16 s.
const BOUNDS_NS: [u64; 13] = {
    let mut bounds = [0u64; 13];
    let mut i = 0;
    let mut b = 1_000u64;
    while i < 13 {
        bounds[i] = b;
        b *= 4;
        i += 1;
    }
    bounds
};

const ACTIONS: [&str; 7] = [
    "pass",
    "block",
    "bad_request",
    "throttle",
    "challenge",
    "refuse",
    "intercept",
];
const LAYERS: [&str; 4] = ["none", "edge", "clean", "policy"];
const CLASSES: [TrafficClass; 5] = [
    TrafficClass::Normal,
    TrafficClass::Crawler,
    TrafficClass::Automation,
    TrafficClass::Scanner,
    TrafficClass::Trusted,
];

#[derive(Default)]
struct StageCells {
    /// Non-cumulative: one count per bound, plus one for +Inf.
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

/// One worker's cells, aligned so that workers never share a cache line.
#[repr(align(128))]
struct WorkerCells {
    stages: [StageCells; MAX_STAGES],
    requests: [AtomicU64; ACTIONS.len() * LAYERS.len() * CLASSES.len()],
}

impl Default for WorkerCells {
    fn default() -> Self {
        WorkerCells {
            stages: Default::default(),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

pub struct HotMetrics {
    workers: Box<[WorkerCells]>,
    /// The timed stages' names, by index.
    stage_names: &'static [&'static str],
}

fn action_index(action: Action) -> usize {
    match action {
        Action::Pass => 0,
        Action::Intercept(Answer::Blocked) => 1,
        Action::Intercept(Answer::BadRequest { .. }) => 2,
        Action::Intercept(Answer::TooMany { .. }) => 3,
        Action::Intercept(Answer::Challenge { .. }) => 4,
        Action::Intercept(Answer::Refuse { .. }) => 5,
        Action::Intercept(Answer::Custom) => 6,
    }
}

fn layer_index(layer: Option<Layer>) -> usize {
    match layer {
        None => 0,
        Some(Layer::Edge) => 1,
        Some(Layer::Clean) => 2,
        Some(Layer::Policy) => 3,
    }
}

fn class_index(class: TrafficClass) -> usize {
    CLASSES.iter().position(|c| *c == class).unwrap_or(0)
}

impl HotMetrics {
    /// Cells for `workers` threads and the stages named in `stage_names`
    /// (at most [`MAX_STAGES`]; later ones are not timed).
    pub fn new(workers: usize, stage_names: &'static [&'static str]) -> Self {
        // The stages' clock calibrates itself at its first read: now rather
        // than during the first request.
        let _ = quanta::Instant::now();
        HotMetrics {
            workers: (0..workers.max(1))
                .map(|_| WorkerCells::default())
                .collect(),
            stage_names: &stage_names[..stage_names.len().min(MAX_STAGES)],
        }
    }

    fn mine(&self) -> &WorkerCells {
        &self.workers[crate::worker::worker_index() % self.workers.len()]
    }

    /// Records `took` for the stage at `stage` in the names.
    pub fn observe(&self, stage: usize, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let Some(cells) = self.mine().stages.get(stage) else {
            return;
        };
        let bucket = BOUNDS_NS
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(BOUNDS_NS.len());
        cells.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        cells.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn count_request(&self, action: Action, layer: Option<Layer>, class: TrafficClass) {
        let index = (action_index(action) * LAYERS.len() + layer_index(layer)) * CLASSES.len()
            + class_index(class);
        self.mine().requests[index].fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self, f: impl Fn(&WorkerCells) -> &AtomicU64) -> u64 {
        self.workers
            .iter()
            .map(|w| f(w).load(Ordering::Relaxed))
            .sum()
    }

    /// Per stage: its name, how many times it ran and the nanoseconds it
    /// took in all (the stage cost bench reads them).
    #[cfg(test)]
    pub fn stage_totals(&self) -> Vec<(&'static str, u64, u64)> {
        self.stage_names
            .iter()
            .enumerate()
            .map(|(s, name)| {
                let runs = (0..=BOUNDS_NS.len())
                    .map(|b| self.sum(|w| &w.stages[s].buckets[b]))
                    .sum();
                (*name, runs, self.sum(|w| &w.stages[s].sum_ns))
            })
            .collect()
    }

    /// Appends the text exposition of these metrics.
    pub fn encode(&self, out: &mut String) {
        out.push_str(
            "# HELP portcullis_requests Requests by action, deciding layer and traffic class.\n",
        );
        out.push_str("# TYPE portcullis_requests counter\n");
        for (a, action) in ACTIONS.iter().enumerate() {
            for (l, layer) in LAYERS.iter().enumerate() {
                for (c, class) in CLASSES.iter().enumerate() {
                    let index = (a * LAYERS.len() + l) * CLASSES.len() + c;
                    let n = self.sum(|w| &w.requests[index]);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "portcullis_requests_total{{action=\"{action}\",layer=\"{layer}\",class=\"{}\"}} {n}",
                            class.as_str()
                        );
                    }
                }
            }
        }
        out.push_str(
            "# HELP portcullis_stage_duration_seconds Time spent in each pipeline stage.\n",
        );
        out.push_str("# TYPE portcullis_stage_duration_seconds histogram\n");
        for (s, name) in self.stage_names.iter().enumerate() {
            let mut cumulative = 0;
            for (b, bound) in BOUNDS_NS.iter().enumerate() {
                cumulative += self.sum(|w| &w.stages[s].buckets[b]);
                let _ = writeln!(
                    out,
                    "portcullis_stage_duration_seconds_bucket{{stage=\"{name}\",le=\"{}\"}} {cumulative}",
                    *bound as f64 / 1e9
                );
            }
            cumulative += self.sum(|w| &w.stages[s].buckets[BOUNDS_NS.len()]);
            let sum = self.sum(|w| &w.stages[s].sum_ns) as f64 / 1e9;
            let _ = writeln!(
                out,
                "portcullis_stage_duration_seconds_bucket{{stage=\"{name}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "portcullis_stage_duration_seconds_sum{{stage=\"{name}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "portcullis_stage_duration_seconds_count{{stage=\"{name}\"}} {cumulative}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histograms_render() {
        let m = HotMetrics::new(2, &["ip", "body"]);
        m.count_request(Action::Pass, None, TrafficClass::Normal);
        m.count_request(Action::Pass, None, TrafficClass::Normal);
        m.count_request(
            Action::Intercept(Answer::Blocked),
            Some(Layer::Edge),
            TrafficClass::Scanner,
        );
        m.observe(0, Duration::from_micros(3));
        let mut out = String::new();
        m.encode(&mut out);
        assert!(
            out.contains(
                "portcullis_requests_total{action=\"pass\",layer=\"none\",class=\"normal\"} 2"
            ),
            "{out}"
        );
        assert!(out.contains(
            "portcullis_requests_total{action=\"block\",layer=\"edge\",class=\"scanner\"} 1"
        ));
        assert!(out.contains("portcullis_stage_duration_seconds_count{stage=\"ip\"} 1"));
        assert!(
            out.contains("portcullis_stage_duration_seconds_bucket{stage=\"ip\",le=\"+Inf\"} 1")
        );
        assert!(out.contains("portcullis_stage_duration_seconds_count{stage=\"body\"} 0"));
    }
}
