//! The decision-event pipeline: a bounded queue the request path never waits
//! on, drained by one thread that writes each event as a JSON line and hands
//! it to the event store's writer (which batches it into SQLite). A full
//! queue, here or at the store, drops the event and counts it.
//!
//! Clean passes (no signal, no core URL, an origin answer below 500) are
//! the bulk of the traffic and say nothing one by one: the request path
//! hands over a small [`PassNote`] instead of an event, which the thread
//! counts into a [`PassTally`] sent to the store about once a second (the
//! console's totals, series and top lists count them all). A sample of
//! them (`[events] pass_sample`) is still written one by one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_config::Config;
use portcullis_store::{EventWriter, PassTally, StoredEvent, TopField, WriterStats, minute_of};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// How often the event thread drains the queue: the most an event waits
/// there, and at 10 ms a queue of 65 536 holds 6.5 M events/s.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// How often counted passes go to the store.
const TALLY_EVERY: Duration = Duration::from_secs(1);
/// The longest a shutdown waits for the store to write what is queued.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// Client keys one tally holds; the passes of keys beyond it still count
/// in the totals.
const MAX_TALLY_KEYS: usize = 100_000;

use crate::client_ip::ip_text;
use crate::context::{Demand, Event, Signal, TrafficClass};
use crate::metrics::Metrics;

/// Where events go.
#[derive(Default)]
pub struct EventOutputs {
    /// JSON lines (standard output in production).
    pub json: Option<Box<dyn Write + Send>>,
    /// The event store's writer.
    pub store: Option<Arc<EventWriter>>,
    /// The store also counts requests that passed with no signal.
    pub record_passed: bool,
}

/// A clean pass, as the event thread counts it.
#[derive(Debug)]
pub struct PassNote {
    pub ts_ms: u64,
    pub class: TrafficClass,
    pub client_ip: IpAddr,
    pub device: Option<String>,
    pub account: Option<String>,
}

/// What the request path hands to the event thread.
enum Note {
    /// A decision written one by one, to the outputs it names.
    Event {
        event: Box<Event>,
        log: bool,
        store: bool,
    },
    Pass(PassNote),
    /// Write out everything sent before it (the log, the pending tally,
    /// the store's queue), then answer: a clean shutdown.
    Flush(std::sync::mpsc::Sender<()>),
}

/// Where the event of a passed request with nothing to say goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassRoute {
    /// Nowhere: no output wants it.
    Drop,
    /// Counted by the store.
    Count,
    /// Written one by one: to the log, to the store, or both.
    Write { log: bool, store: bool },
}

#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<Note>>,
    metrics: Arc<Metrics>,
    log: bool,
    store: Option<Arc<EventWriter>>,
    record_passed: bool,
}

impl EventSink {
    /// Starts the thread feeding `outputs`; with no output, a disabled sink.
    pub fn start(outputs: EventOutputs, capacity: usize, metrics: Arc<Metrics>) -> Self {
        let store = outputs.store;
        let mut sink = EventSink {
            tx: None,
            metrics,
            log: outputs.json.is_some(),
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
            counts: PassCounts::default(),
            tally_due: Instant::now() + TALLY_EVERY,
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

    /// Where a passed request with nothing to say goes under `config`:
    /// `[events] pass_sample` of them (all with `log_passed`) are written
    /// one by one, the others counted when the store counts passes.
    /// `origin_failed` (an answer of 500 or more) is always written to the
    /// store that records passes: the origin-error alerts and search want it.
    pub fn route_pass(&self, config: &Config, origin_failed: bool) -> PassRoute {
        if !self.is_enabled() {
            return PassRoute::Drop;
        }
        let events = &config.events;
        let rate = if events.log_passed {
            1.0
        } else {
            events.pass_sample
        };
        let sampled = rate >= 1.0 || (rate > 0.0 && rand::random::<f64>() < rate);
        let log = self.log && sampled;
        let store = self.record_passed && (sampled || origin_failed);
        match (log || store, self.record_passed) {
            (true, _) => PassRoute::Write { log, store },
            (false, true) => PassRoute::Count,
            (false, false) => PassRoute::Drop,
        }
    }

    /// Never waits: a full queue drops the event and counts it.
    pub fn send(&self, event: Event) {
        self.push(Note::Event {
            event: Box::new(event),
            log: true,
            store: true,
        });
    }

    /// Sends the event of a pass to the outputs `route` names.
    pub fn send_pass(&self, event: Event, route: PassRoute) {
        if let PassRoute::Write { log, store } = route {
            self.push(Note::Event {
                event: Box::new(event),
                log,
                store,
            });
        }
    }

    /// Counts a clean pass; never waits.
    pub fn count_pass(&self, pass: PassNote) {
        self.push(Note::Pass(pass));
    }

    fn push(&self, note: Note) {
        if let Some(tx) = &self.tx
            && tx.try_send(note).is_err()
        {
            self.metrics.events_dropped.inc();
        }
    }

    /// Blocks until every event sent before the call is written out (log,
    /// counted passes, store), or `timeout` passes; false then, or when
    /// the queue is full. For shutdown: a deployment loses no events.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let (done, written) = std::sync::mpsc::channel();
        tx.try_send(Note::Flush(done)).is_ok() && written.recv_timeout(timeout).is_ok()
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
    /// Passes counted since the last tally went to the store.
    counts: PassCounts,
    tally_due: Instant,
}

impl Drain {
    /// Drains the queue, then sleeps [`DRAIN_EVERY`]. The thread never
    /// waits on the channel, so a send from the request path is a plain
    /// push that wakes nobody: no system call per event (waking this thread
    /// for every event cost as much CPU as writing them into SQLite).
    fn run(mut self, mut rx: mpsc::Receiver<Note>) {
        loop {
            let open = loop {
                match rx.try_recv() {
                    Ok(note) => self.take(note),
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
            if !open || Instant::now() >= self.tally_due {
                self.send_tally();
            }
            if !open {
                return;
            }
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    fn take(&mut self, note: Note) {
        match note {
            Note::Event { event, log, store } => {
                if log && let Some(out) = &mut self.json {
                    write_line(out, &event);
                }
                if store && let Some(writer) = &self.store {
                    // A full store queue counts the drop in the writer's stats.
                    writer.try_send(stored(*event));
                }
            }
            Note::Pass(pass) => self.counts.count(pass),
            Note::Flush(done) => {
                if let Some(out) = &mut self.json {
                    let _ = out.flush();
                }
                self.send_tally();
                if let Some(writer) = &self.store {
                    writer.flush(FLUSH_WAIT);
                }
                let _ = done.send(());
            }
        }
    }

    fn send_tally(&mut self) {
        self.tally_due = Instant::now() + TALLY_EVERY;
        if self.counts.is_empty() {
            return;
        }
        let counts = std::mem::take(&mut self.counts);
        if let Some(writer) = &self.store {
            writer.try_send_tally(counts.into_tally());
        }
    }
}

/// Passes counted since the last tally went to the store, under keys that
/// cost no allocation per pass (the class as itself, the client address as
/// an address); made a [`PassTally`] as the tally is sent.
#[derive(Default)]
struct PassCounts {
    /// `(minute, class)` to passes.
    passes: HashMap<(i64, TrafficClass), u64>,
    /// `(minute, class, key)` to passes; at most [`MAX_TALLY_KEYS`] keys,
    /// the passes of the others counting in `passes` only.
    keys: HashMap<(i64, TrafficClass, PassKey), u64>,
}

/// A client key of the top lists.
#[derive(PartialEq, Eq, Hash)]
enum PassKey {
    ClientIp(IpAddr),
    Device(String),
    Account(String),
}

impl PassCounts {
    /// Adds one clean pass: its minute and class, and its client address,
    /// device and account for the top lists.
    fn count(&mut self, pass: PassNote) {
        let minute = minute_of(i64::try_from(pass.ts_ms).unwrap_or(i64::MAX));
        *self.passes.entry((minute, pass.class)).or_insert(0) += 1;
        let keys = [
            Some(PassKey::ClientIp(pass.client_ip)),
            pass.device.map(PassKey::Device),
            pass.account.map(PassKey::Account),
        ];
        for key in keys.into_iter().flatten() {
            let full = self.keys.len() >= MAX_TALLY_KEYS;
            match self.keys.entry((minute, pass.class, key)) {
                Entry::Occupied(mut counted) => *counted.get_mut() += 1,
                Entry::Vacant(new) if !full => {
                    new.insert(1);
                }
                Entry::Vacant(_) => {}
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.passes.is_empty()
    }

    fn into_tally(self) -> PassTally {
        let mut tally = PassTally::default();
        for ((minute, class), n) in self.passes {
            tally.add_passes(minute, class.as_str(), n);
        }
        for ((minute, class, key), n) in self.keys {
            let (field, key) = match key {
                PassKey::ClientIp(ip) => (TopField::ClientIp, ip_text(ip).as_str().to_owned()),
                PassKey::Device(device) => (TopField::Device, device),
                PassKey::Account(account) => (TopField::Account, account),
            };
            tally.add_key(minute, field, key, class.as_str(), n, MAX_TALLY_KEYS);
        }
        tally
    }
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
        .or_else(|| {
            signals
                .iter()
                .find(|s| portcullis_store::is_check_answer(s.name))
        })
        .map(|s| s.name)
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

    fn sink(json: bool, record_passed: bool, store: Option<Arc<EventWriter>>) -> EventSink {
        let metrics = Arc::new(Metrics::new(1, &["stage"]));
        let outputs = EventOutputs {
            json: json.then(|| Box::new(std::io::sink()) as Box<dyn Write + Send>),
            store,
            record_passed,
        };
        EventSink::start(outputs, 16, metrics)
    }

    fn config(log_passed: bool, pass_sample: f64) -> Config {
        let mut config = Config::default();
        config.events.log_passed = log_passed;
        config.events.pass_sample = pass_sample;
        config
    }

    #[test]
    fn clean_passes_are_counted_or_sampled() {
        let dir = std::env::temp_dir().join(format!("pc-events-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = portcullis_store::SqliteStore::open(dir.join("e.db")).unwrap();
        let writer = EventWriter::spawn(Arc::new(store), Default::default()).unwrap();
        let both = sink(true, true, Some(Arc::new(writer)));
        assert_eq!(
            both.route_pass(&config(false, 0.0), false),
            PassRoute::Count
        );
        assert_eq!(
            both.route_pass(&config(false, 1.0), false),
            PassRoute::Write {
                log: true,
                store: true
            }
        );
        assert_eq!(
            both.route_pass(&config(true, 0.0), false),
            PassRoute::Write {
                log: true,
                store: true
            },
            "log_passed logs every pass"
        );
        assert_eq!(
            both.route_pass(&config(false, 0.0), true),
            PassRoute::Write {
                log: false,
                store: true
            },
            "an origin error is stored one by one"
        );
        let sampled = (0..10_000)
            .filter(|_| both.route_pass(&config(false, 0.1), false) != PassRoute::Count)
            .count();
        assert!((700..1300).contains(&sampled), "{sampled} of 10 000 at 0.1");
        let log_only = sink(true, false, None);
        assert_eq!(
            log_only.route_pass(&config(false, 0.0), true),
            PassRoute::Drop
        );
        assert_eq!(
            log_only.route_pass(&config(false, 1.0), false),
            PassRoute::Write {
                log: true,
                store: false
            }
        );
        assert_eq!(
            sink(false, true, None).route_pass(&config(true, 1.0), false),
            PassRoute::Drop,
            "no output"
        );
        drop(both);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_flush_writes_out_what_was_sent_before_it() {
        use portcullis_store::{EventFilter, EventStore};
        let dir = std::env::temp_dir().join(format!("pc-flush-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(portcullis_store::SqliteStore::open(dir.join("e.db")).unwrap());
        // A writer that would otherwise hold its batch for a minute.
        let config = portcullis_store::WriterConfig {
            max_delay: Duration::from_secs(60),
            ..Default::default()
        };
        let writer = EventWriter::spawn(Arc::clone(&store) as Arc<dyn EventStore>, config).unwrap();
        let events = sink(false, true, Some(Arc::new(writer)));
        events.send(event("block", Vec::new()));
        assert!(events.flush(Duration::from_secs(10)));
        let found = store.search(&EventFilter::default()).unwrap();
        assert_eq!(found.len(), 1, "the event is in the store at once");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_counted_pass_counts_its_minute_and_keys() {
        let mut counts = PassCounts::default();
        let note = |device: Option<&str>| PassNote {
            ts_ms: 120_001,
            class: TrafficClass::Crawler,
            client_ip: IpAddr::from([192, 0, 2, 7]),
            device: device.map(Into::into),
            account: None,
        };
        counts.count(note(Some("d1")));
        counts.count(note(None));
        let tally = counts.into_tally();
        assert_eq!(tally.passes[&(2, "crawler".to_owned())], 2);
        let ip = (
            2,
            TopField::ClientIp,
            "192.0.2.7".to_owned(),
            "crawler".to_owned(),
        );
        assert_eq!(tally.keys[&ip], 2);
        let device = (2, TopField::Device, "d1".to_owned(), "crawler".to_owned());
        assert_eq!(tally.keys[&device], 1);
        assert_eq!(tally.keys.len(), 2);
    }
}
