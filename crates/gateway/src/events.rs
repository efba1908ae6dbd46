//! The decision-event pipeline: a bounded queue the request path never waits
//! on, drained by a writer thread in batches. Full queue: the event is dropped
//! and counted.

use std::io::Write;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::context::Event;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<Event>>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    /// Events written as JSON lines to `out` by a background thread.
    pub fn json_lines(capacity: usize, out: Box<dyn Write + Send>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let spawned = std::thread::Builder::new()
            .name("portcullis-events".into())
            .spawn(move || write_lines(rx, out));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the event writer; events are dropped");
        }
        EventSink {
            tx: Some(tx),
            metrics,
        }
    }

    /// A sink that drops everything (events disabled).
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        EventSink { tx: None, metrics }
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.tx
            && tx.try_send(event).is_err()
        {
            self.metrics.events_dropped.inc();
        }
    }
}

fn write_lines(mut rx: mpsc::Receiver<Event>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Some(event) = rx.blocking_recv() {
        write_one(&mut out, &event);
        while let Ok(event) = rx.try_recv() {
            write_one(&mut out, &event);
        }
        if out.flush().is_err() {
            return;
        }
    }
}

fn write_one(out: &mut impl Write, event: &Event) {
    if serde_json::to_writer(&mut *out, event).is_ok() {
        let _ = out.write_all(b"\n");
    }
}
