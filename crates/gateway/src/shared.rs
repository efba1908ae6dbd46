//! What every request handler shares: the runtime in force, the state
//! backend, metrics, the event queue and the admin side's handles.

use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_console::ConsoleDb;
use portcullis_state::StateStore;

use crate::edge::conn::ConnLimiter;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// What every request handler shares.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub state: Arc<dyn StateStore>,
    pub metrics: Arc<Metrics>,
    pub events: EventSink,
    pub conns: Arc<ConnLimiter>,
    pub bans: Arc<crate::bans::Bans>,
    /// Bearer token the admin API requires (from `PORTCULLIS_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// Where the configuration comes from: the file, the overrides and the
    /// console overlay (see [`reload`]).
    pub control: crate::control::Control,
    /// The console's database, when the console is on.
    pub console_db: Option<Arc<ConsoleDb>>,
    /// Webhook alerts on spikes, when there is an event store to watch.
    pub alerts: Option<portcullis_alerts::AlertsHandle>,
}
