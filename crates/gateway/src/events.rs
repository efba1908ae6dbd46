//! The decision-event pipeline: a bounded queue the request path never waits
//! on, drained by one thread that writes each event as a JSON line and hands
//! it to the event store's writer (which batches it into SQLite). A full
//! queue, here or at the store, drops the event and counts it.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use portcullis_config::Config;
use portcullis_store::{EventWriter, StoredEvent, WriterStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// How often the event thread drains the queue: the most an event waits
/// there, and at 10 ms a queue of 65 536 holds 6.5 M events/s.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

use crate::context::{Demand, Event, Signal};
use crate::metrics::Metrics;

/// Where events go.
#[derive(Default)]
pub struct EventOutputs {
    /// JSON lines (standard output in production).
    pub json: Option<Box<dyn Write + Send>>,
    /// The event store's writer.
    pub store: Option<Arc<EventWriter>>,
    /// The store also wants requests that passed with no signal.
    pub record_passed: bool,
}

#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<Event>>,
    metrics: Arc<Metrics>,
    /// `[events] log_passed` of the configuration in force (it reloads).
    log_passed: Arc<AtomicBool>,
    store: Option<Arc<EventWriter>>,
    record_passed: bool,
}

impl EventSink {
    /// Starts the thread feeding `outputs`; with no output, a disabled sink.
    pub fn start(outputs: EventOutputs, capacity: usize, metrics: Arc<Metrics>) -> Self {
        let store = outputs.store;
        let log_passed = Arc::new(AtomicBool::new(false));
        let mut sink = EventSink {
            tx: None,
            metrics,
            log_passed: Arc::clone(&log_passed),
            store: store.clone(),
            record_passed: outputs.record_passed && store.is_some(),
        };
        if outputs.json.is_none() && store.is_none() {
            return sink;
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let drain = Drain {
            json: outputs
                .json
                .map(|out| std::io::BufWriter::with_capacity(64 * 1024, out)),
            store,
            log_passed,
        };
        let spawned = std::thread::Builder::new()
            .name("portcullis-events".into())
            .spawn(move || drain.run(rx));
        match spawned {
            Ok(_) => sink.tx = Some(tx),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the event thread; events are dropped");
            }
        }
        sink
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether the request path should send the events of requests that
    /// passed with no signal: the log asks for them (`[events] log_passed`)
    /// or the store counts every request (`[store] record_passed`).
    pub fn wants_passed(&self, config: &Config) -> bool {
        self.is_enabled() && (config.events.log_passed || self.record_passed)
    }

    /// Follows `[events] log_passed` of a newly applied configuration.
    pub fn configure(&self, config: &Config) {
        self.log_passed.store(config.events.log_passed, Relaxed);
    }

    /// Never waits: a full queue drops the event and counts it.
    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.tx
            && tx.try_send(event).is_err()
        {
            self.metrics.events_dropped.inc();
        }
    }

    /// The store writer's counters, when events are stored.
    pub fn store_stats(&self) -> Option<WriterStats> {
        self.store.as_ref().map(|w| w.stats())
    }
}

/// The event thread's outputs.
struct Drain {
    json: Option<std::io::BufWriter<Box<dyn Write + Send>>>,
    store: Option<Arc<EventWriter>>,
    log_passed: Arc<AtomicBool>,
}

impl Drain {
    /// Drains the queue, then sleeps [`DRAIN_EVERY`]. The thread never
    /// waits on the channel, so a send from the request path is a plain
    /// push that wakes nobody: no system call per event (waking this thread
    /// for every event cost as much CPU as writing them into SQLite).
    fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        loop {
            let open = loop {
                match rx.try_recv() {
                    Ok(event) => self.take(event),
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Disconnected) => break false,
                }
            };
            if let Some(out) = &mut self.json
                && out.flush().is_err()
            {
                tracing::error!("cannot write the event log; it is turned off");
                self.json = None;
            }
            if !open {
                return;
            }
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    fn take(&mut self, event: Event) {
        if let Some(out) = &mut self.json
            && (!is_clean_pass(&event) || self.log_passed.load(Relaxed))
        {
            write_line(out, &event);
        }
        if let Some(store) = &self.store {
            // A full store queue counts the drop in the writer's stats.
            store.try_send(stored(event));
        }
    }
}

/// A request that passed with nothing to say about it (on a core URL there
/// is always its rank to say).
fn is_clean_pass(event: &Event) -> bool {
    event.action == "pass"
        && event.signals.is_empty()
        && event.would.is_none()
        && event.route.is_none()
}

fn write_line(out: &mut impl Write, event: &Event) {
    if serde_json::to_writer(&mut *out, event).is_ok() {
        let _ = out.write_all(b"\n");
    }
}

/// The signal that stopped the request: the strongest demand, as the
/// policy step chose it. An answer of the challenge service that passed
/// (a challenge issued, a clearance minted) is named by its `portal_*`
/// signal, so the rollups and the console's solve rate count it whatever
/// else the request carried. Without either (a pass) the store takes the
/// heaviest signal's name.
fn deciding(signals: &[Signal]) -> Option<&'static str> {
    signals
        .iter()
        .filter(|s| s.demand != Demand::Tag)
        .max_by_key(|s| s.demand)
        .or_else(|| signals.iter().find(|s| is_portal_outcome(s.name)))
        .map(|s| s.name)
}

/// The signals of the challenge service's answers (PROTOCOL.md).
pub fn is_portal_outcome(name: &str) -> bool {
    use portcullis_store::{CHECK_FAILED, CHECK_ISSUED, CHECK_LIMITED, CHECK_SOLVED};
    matches!(
        name,
        CHECK_ISSUED | CHECK_SOLVED | CHECK_FAILED | CHECK_LIMITED
    )
}

/// The stored form of an event.
pub fn stored(event: Event) -> StoredEvent {
    // A passed request the origin failed is recorded by its status, which
    // the origin-error alerts count.
    let rule = deciding(&event.signals)
        .map(str::to_owned)
        .or_else(|| portcullis_alerts::origin_error_reason(event.action, event.status));
    let signals = if event.signals.is_empty() {
        "[]".to_owned()
    } else {
        serde_json::to_string(&event.signals).unwrap_or_else(|_| "[]".to_owned())
    };
    StoredEvent {
        id: None,
        ts_ms: i64::try_from(event.ts_ms).unwrap_or(i64::MAX),
        request_id: event.request_id,
        client_ip: event.client_ip.to_string(),
        method: event.method,
        host: event.host,
        path: event.path,
        action: event.action.to_owned(),
        layer: event.layer.map(|l| l.as_str().to_owned()),
        status: event.status,
        class: event.class.as_str().to_owned(),
        cid: event.cid,
        device_id: event.device_id,
        account_id: event.account_id,
        route: event.route,
        risk_rank: event.risk_rank,
        rule,
        signals,
        duration_us: i64::try_from(event.duration_us).unwrap_or(i64::MAX),
        device_risk_rank: event.device_risk_rank,
        reasons: event.reasons,
        would: event.would.map(str::to_owned),
    }
}

/// Exposes the store writer's counters as `portcullis_store_events_*`.
pub struct StoreCollector(Arc<EventWriter>);

impl StoreCollector {
    pub fn new(writer: Arc<EventWriter>) -> Self {
        StoreCollector(writer)
    }
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counters = [
            (
                "store_events_written",
                "Decision events written to the event store",
                stats.written,
            ),
            (
                "store_events_dropped",
                "Decision events dropped because the store writer's queue was full",
                stats.dropped,
            ),
            (
                "store_events_failed",
                "Decision events lost because their batch failed to write",
                stats.failed,
            ),
            (
                "store_batches",
                "Batches committed to the event store",
                stats.batches,
            ),
            (
                "store_write_microseconds",
                "Time the store writer spent writing batches",
                stats.busy_us,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::context::{Layer, TrafficClass};

    fn event(action: &'static str, signals: Vec<Signal>) -> Event {
        Event {
            ts_ms: 1_795_425_152_006,
            request_id: "r1".into(),
            client_ip: IpAddr::from([192, 0, 2, 7]),
            method: "GET".into(),
            host: "shop".into(),
            path: "/a".into(),
            action,
            layer: (action != "pass").then_some(Layer::Clean),
            status: if action == "pass" { 200 } else { 403 },
            class: TrafficClass::Automation,
            signals,
            duration_us: 42,
            cid: Some("c1".into()),
            device_id: None,
            account_id: None,
            route: Some("coupon".into()),
            risk_rank: Some(3),
            device_risk_rank: Some(1),
            reasons: vec!["new_device".into()],
            would: None,
        }
    }

    #[test]
    fn stored_form_keeps_every_field() {
        let signal = Signal {
            name: "sqli",
            layer: Layer::Clean,
            weight: 80,
            evidence: "query: 1' or '1".into(),
            demand: Demand::Block,
        };
        let tag = Signal {
            name: "automation",
            layer: Layer::Edge,
            weight: 100,
            evidence: "curl/8".into(),
            demand: Demand::Tag,
        };
        let s = stored(event("block", vec![tag.clone(), signal]));
        assert_eq!(s.client_ip, "192.0.2.7");
        assert_eq!(s.layer.as_deref(), Some("clean"));
        assert_eq!(s.class, "automation");
        assert_eq!(s.reason(), "sqli", "the deciding signal, not the heaviest");
        assert_eq!(s.cid.as_deref(), Some("c1"));
        assert_eq!(s.device_risk_rank, Some(1));
        let signals: serde_json::Value = serde_json::from_str(&s.signals).unwrap();
        assert_eq!(signals[1]["evidence"], "query: 1' or '1");
        assert_eq!(signals[1]["demand"]["kind"], "block");
        assert_eq!(stored(event("pass", Vec::new())).signals, "[]");
        let tagged = stored(event("pass", vec![tag.clone()]));
        assert_eq!(tagged.rule, None);
        assert_eq!(tagged.reason(), "automation");
        let solved = Signal {
            name: "portal_solved",
            layer: Layer::Clean,
            weight: 0,
            evidence: "risk 0".into(),
            demand: Demand::Tag,
        };
        let solved = stored(event("pass", vec![tag, solved]));
        assert_eq!(
            solved.rule.as_deref(),
            Some("portal_solved"),
            "not the heavier tag"
        );
    }

    #[test]
    fn clean_passes_are_told_apart() {
        let mut clean = event("pass", Vec::new());
        clean.route = None;
        assert!(is_clean_pass(&clean));
        assert!(!is_clean_pass(&event("pass", Vec::new())), "a core URL");
        clean.would = Some("intercept");
        assert!(!is_clean_pass(&clean));
        assert!(!is_clean_pass(&event("block", Vec::new())));
    }
}
