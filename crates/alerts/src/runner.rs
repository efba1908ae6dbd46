//! The runner: every interval it reads the new complete minutes from the
//! store (off the runtime, behind `spawn_blocking`), feeds the engine, and
//! hands the message, if any, to every webhook's queue.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use portcullis_config::{AlertsConfig, Config};
use portcullis_store::{EventStore, minute_of};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::engine::{AlertEngine, Message};
use crate::notify::{self, Outbox, Retry, Webhook};
use crate::query::QueryPlan;
use crate::stats::{AlertStats, Counters};

/// A minute is read once it has been over for this long, so the event
/// writer (which batches for at most 100 ms) has committed it.
const SETTLE_MS: i64 = 5_000;

/// What the runner takes from the configuration.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    alerts: AlertsConfig,
    include_scanners: bool,
}

impl Settings {
    fn of(config: &Config) -> Self {
        Settings {
            alerts: config.alerts.clone(),
            include_scanners: config.traffic.scanner.alert,
        }
    }
}

/// Starts the alerts runner on the current Tokio runtime (it panics
/// outside one, like `tokio::spawn`). It runs while `[alerts]` is enabled
/// and idles otherwise; [`AlertsHandle::reload`] applies a new
/// configuration.
///
/// Keep the handle: dropping it stops the runner.
pub fn spawn(config: &Config, store: Arc<dyn EventStore>) -> AlertsHandle {
    let (settings, rx) = watch::channel(Settings::of(config));
    let counters = Arc::new(Counters::default());
    let task = tokio::spawn(run(rx, store, Arc::clone(&counters)));
    AlertsHandle {
        settings,
        counters,
        task,
    }
}

/// The running alerts: reload, statistics, and stop on drop.
#[must_use = "dropping the handle stops the alerts"]
pub struct AlertsHandle {
    settings: watch::Sender<Settings>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl AlertsHandle {
    /// Applies a reloaded configuration. Nothing happens unless `[alerts]`
    /// or `traffic.scanner.alert` changed; if they did, the rules start
    /// afresh (a rule firing at that moment is announced again if it still
    /// fires).
    pub fn reload(&self, config: &Config) {
        let new = Settings::of(config);
        self.settings.send_if_modified(|current| {
            let changed = *current != new;
            if changed {
                *current = new;
            }
            changed
        });
    }

    pub fn stats(&self) -> AlertStats {
        self.counters.snapshot()
    }
}

impl Drop for AlertsHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    mut settings: watch::Receiver<Settings>,
    store: Arc<dyn EventStore>,
    counters: Arc<Counters>,
) {
    loop {
        let current = settings.borrow_and_update().clone();
        if current.alerts.enabled {
            let mut session = Session::start(&current, Arc::clone(&store), Arc::clone(&counters));
            let mut ticks =
                tokio::time::interval(Duration::from_secs(current.alerts.interval_s.max(1)));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => session.tick().await,
                    changed = settings.changed() => match changed {
                        Ok(()) => break,
                        Err(_) => return,
                    },
                }
            }
        } else if settings.changed().await.is_err() {
            return;
        }
    }
}

/// One configuration's engine, queries and webhooks.
struct Session {
    engine: AlertEngine,
    plan: QueryPlan,
    outboxes: Vec<Outbox>,
    store: Arc<dyn EventStore>,
    counters: Arc<Counters>,
    /// The engine's suppressed total already added to the counters.
    suppressed_seen: u64,
}

impl Session {
    fn start(settings: &Settings, store: Arc<dyn EventStore>, counters: Arc<Counters>) -> Self {
        let alerts = &settings.alerts;
        let outboxes = start_outboxes(alerts, &counters);
        tracing::info!(
            rules = alerts.rules.len(),
            webhooks = outboxes.len(),
            include_scanners = settings.include_scanners,
            "alerts running"
        );
        Session {
            engine: AlertEngine::new(alerts),
            plan: QueryPlan::new(alerts, settings.include_scanners),
            outboxes,
            store,
            counters,
            suppressed_seen: 0,
        }
    }

    async fn tick(&mut self) {
        let now = crate::now_ms();
        if !self.feed(now).await {
            return;
        }
        self.counters.evaluations.fetch_add(1, Relaxed);
        let message = self.engine.evaluate(now);
        let suppressed = self.engine.suppressed_total();
        self.counters
            .suppressed
            .fetch_add(suppressed - self.suppressed_seen, Relaxed);
        self.suppressed_seen = suppressed;
        if let Some(mut message) = message {
            self.rank_ips(&mut message).await;
            self.send(message);
        }
    }

    /// Reads the complete minutes the engine has not seen. False when the
    /// store could not be read: evaluating stale counts could resolve an
    /// incident that is still going on, or repeat one that is over.
    async fn feed(&mut self, now_ms: i64) -> bool {
        let end = minute_of(now_ms - SETTLE_MS);
        let earliest = end - self.engine.history_minutes();
        let from = self.engine.next_minute().unwrap_or(earliest).max(earliest);
        if from >= end {
            return true;
        }
        let plan = self.plan.clone();
        let store = Arc::clone(&self.store);
        let read = tokio::task::spawn_blocking(move || plan.read(&*store, from, end)).await;
        match read {
            Ok(Ok(minutes)) => {
                for minute in minutes {
                    self.engine.observe(minute);
                }
                true
            }
            Ok(Err(e)) => {
                self.query_failed(&e);
                false
            }
            Err(e) => {
                self.query_failed(&e);
                false
            }
        }
    }

    fn query_failed(&self, error: &dyn std::fmt::Display) {
        self.counters.query_errors.fetch_add(1, Relaxed);
        tracing::warn!(%error, "alerts cannot read the minute rollups; evaluation skipped");
    }

    /// Adds the top client addresses to the alerts still firing. A failed
    /// ranking leaves them out: the message matters more than its detail.
    async fn rank_ips(&self, message: &mut Message) {
        let plan = self.plan.clone();
        let store = Arc::clone(&self.store);
        let alerts = message.alerts.clone();
        let ranked = tokio::task::spawn_blocking(move || {
            alerts
                .iter()
                .map(|alert| plan.top_ips(&*store, alert))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        match ranked {
            Ok(Ok(tops)) => {
                for (alert, top) in message.alerts.iter_mut().zip(tops) {
                    alert.top_ips = top;
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "alerts cannot rank client addresses"),
            Err(e) => tracing::warn!(error = %e, "alerts cannot rank client addresses"),
        }
    }

    fn send(&self, message: Message) {
        self.counters.messages.fetch_add(1, Relaxed);
        tracing::info!(
            title = %crate::format::title(&message),
            alerts = message.alerts.len(),
            suppressed = message.suppressed,
            "alert message"
        );
        let message = Arc::new(message);
        for outbox in &self.outboxes {
            outbox.offer(Arc::clone(&message));
        }
    }
}

/// One outbox per webhook that can be set up; the others are logged and
/// counted, and the rest still get their messages.
fn start_outboxes(alerts: &AlertsConfig, counters: &Arc<Counters>) -> Vec<Outbox> {
    let client = match notify::http_client() {
        Ok(client) => client,
        Err(e) => {
            counters
                .webhook_errors
                .fetch_add(alerts.webhooks.len() as u64, Relaxed);
            tracing::error!(error = %e, "alerts cannot post to any webhook");
            return Vec::new();
        }
    };
    let mut outboxes = Vec::with_capacity(alerts.webhooks.len());
    for config in &alerts.webhooks {
        match Webhook::resolve(config) {
            Ok(hook) => outboxes.push(Outbox::start(
                hook,
                client.clone(),
                Retry::default(),
                Arc::clone(counters),
            )),
            Err(e) => {
                counters.webhook_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "webhook left out");
            }
        }
    }
    outboxes
}
