//! Query shapes shared by every backend.

use serde::{Deserialize, Serialize};

use crate::event::ActionKind;

/// The most events one search returns.
pub const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

/// The interception log's filters. Every `Some` field must match exactly;
/// results are newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventFilter {
    /// Inclusive start, milliseconds since the epoch.
    pub from_ms: Option<i64>,
    /// Exclusive end, milliseconds since the epoch.
    pub to_ms: Option<i64>,
    pub route: Option<String>,
    pub client_ip: Option<String>,
    pub device: Option<String>,
    pub account: Option<String>,
    pub cid: Option<String>,
    pub rule: Option<String>,
    pub action: Option<String>,
    /// Pass / challenge / intercept (any intercepting action).
    pub kind: Option<ActionKind>,
    pub class: Option<String>,
    /// Leave out this traffic class (e.g. `scanner`).
    pub exclude_class: Option<String>,
    /// At most this many events (0 means 100; capped at [`MAX_LIMIT`]).
    pub limit: u32,
    /// Cursor: only events with a smaller id (the last id of the previous page).
    pub before_id: Option<i64>,
    /// Only events a log-only policy would have stopped (`would` is set).
    pub trial: bool,
}

impl EventFilter {
    /// The effective limit: 100 by default, at most [`MAX_LIMIT`].
    pub fn limit(&self) -> u32 {
        match self.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        }
    }
}

/// Which column splits rollups into series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupGroup {
    Layer,
    Action,
    Reason,
    Route,
    Class,
}

impl RollupGroup {
    pub(crate) fn column(self) -> &'static str {
        match self {
            RollupGroup::Layer => "layer",
            RollupGroup::Action => "action",
            RollupGroup::Reason => "reason",
            RollupGroup::Route => "route",
            RollupGroup::Class => "class",
        }
    }
}

/// Minute series for charts. Minutes are `ts_ms / 60_000`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupQuery {
    /// Inclusive first minute.
    pub from_minute: i64,
    /// Exclusive last minute.
    pub to_minute: i64,
    pub group_by: RollupGroup,
    /// Only this kind of outcome (e.g. intercepts by reason).
    #[serde(default)]
    pub kind: Option<ActionKind>,
    #[serde(default)]
    pub route: Option<String>,
    /// Leave out this traffic class (alerts exclude `scanner` by default).
    #[serde(default)]
    pub exclude_class: Option<String>,
}

/// One chart line: the counts of one group value, minute by minute.
/// Minutes with no events are absent. An empty key means "none"
/// (no layer, no reason, no named route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    pub key: String,
    /// `(minute, count)`, ascending by minute.
    pub points: Vec<(i64, u64)>,
}

impl Series {
    pub fn total(&self) -> u64 {
        self.points.iter().map(|(_, c)| c).sum()
    }
}

/// Which column `top` ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopField {
    ClientIp,
    Device,
    Account,
    Route,
}

impl TopField {
    pub(crate) fn column(self) -> &'static str {
        match self {
            TopField::ClientIp => "client_ip",
            TopField::Device => "device_id",
            TopField::Account => "account_id",
            TopField::Route => "route",
        }
    }
}

/// What `top` ranks by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopOrder {
    #[default]
    Requests,
    Intercepts,
}

/// The top N values of a column in a time range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopQuery {
    pub field: TopField,
    pub from_ms: i64,
    pub to_ms: i64,
    pub limit: u32,
    #[serde(default)]
    pub order: TopOrder,
    #[serde(default)]
    pub exclude_class: Option<String>,
}

impl TopQuery {
    /// The minutes `[from, to)` that overlap the range: counted passes
    /// (see [`crate::PassTally`]) are kept per minute.
    pub fn minutes(&self) -> (i64, i64) {
        let to = crate::minute_of(self.to_ms.saturating_sub(1)) + 1;
        (crate::minute_of(self.from_ms), to)
    }
}

/// One ranked value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopEntry {
    pub key: String,
    pub requests: u64,
    pub intercepts: u64,
}

/// How long events and rollups are kept, and how much disk they may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub events_days: u32,
    pub rollups_days: u32,
    /// Rows deleted per transaction, so the writer is never stalled long.
    pub chunk: u32,
    /// Disk budget of the events, in bytes: beyond it the oldest events are
    /// dropped (and counted in [`Pruned::over_budget`]) whatever their age.
    pub max_bytes: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events_days: 7,
            rollups_days: 90,
            chunk: 5000,
            max_bytes: None,
        }
    }
}

impl Retention {
    pub(crate) fn events_cutoff_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(days_ms(self.events_days))
    }

    pub(crate) fn rollups_cutoff_minute(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(days_ms(self.rollups_days)) / 60_000
    }
}

fn days_ms(days: u32) -> i64 {
    i64::from(days) * 86_400_000
}

/// What one retention step (or run) deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Events deleted for their age.
    pub events: u64,
    pub rollups: u64,
    /// Events deleted, oldest first, to keep within [`Retention::max_bytes`].
    pub over_budget: u64,
    /// Bytes the events use after the step, when there is a budget.
    pub used_bytes: Option<u64>,
    /// A full chunk was deleted, or the store is still over its budget:
    /// more rows may have to go.
    pub more: bool,
}

/// The trial of log-only policies over a time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialQuery {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// How many requests a log-only policy would have stopped one way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialCount {
    /// The policy's route name.
    pub route: String,
    /// `intercept` or `challenge`.
    pub would: String,
    pub events: u64,
}

/// The signals (stored as the event's `rule`) of the challenge service's
/// answers: a challenge handed out, a clearance minted, a call refused, a
/// call limited for its rate.
pub const CHECK_ISSUED: &str = "portal_issued";
pub const CHECK_SOLVED: &str = "portal_solved";
pub const CHECK_FAILED: &str = "portal_failed";
pub const CHECK_LIMITED: &str = "portal_limited";

/// Whether a signal is one of the challenge service's answers.
pub fn is_check_answer(name: &str) -> bool {
    matches!(
        name,
        CHECK_ISSUED | CHECK_SOLVED | CHECK_FAILED | CHECK_LIMITED
    )
}

/// The challenges of a time range, minute by minute (the console's solve
/// rate and the `solve_rate` alerts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolveRateQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    /// How long after its challenge a device's answer at the check still
    /// counts for the route that challenged it.
    pub window_ms: i64,
    #[serde(default)]
    pub exclude_class: Option<String>,
}

/// One minute of challenges.
///
/// For a route (a policy's name), `challenged` is the devices it sent to
/// the check that minute (its `challenge` answers, one per device), and of
/// those: `solved` got a clearance within the query's window, `limited`
/// were refused for their rate and got none, `failed` were refused
/// otherwise and got none; the rest never came to the check.
///
/// For the check itself (`route` empty: every call to `/.portcullis/`,
/// whatever sent the client there, the SDK's own start included),
/// `challenged` is the checks clients asked for (challenges handed out plus
/// calls limited for their rate) and the others count the answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeMinute {
    pub route: String,
    pub minute: i64,
    pub challenged: u64,
    pub solved: u64,
    pub failed: u64,
    pub limited: u64,
}

impl ChallengeMinute {
    /// `solved / challenged`, at most 1; `None` without challenges.
    pub fn solve_rate(&self) -> Option<f64> {
        (self.challenged > 0).then(|| (self.solved as f64 / self.challenged as f64).min(1.0))
    }
}

/// The check's own minutes from the rollups' `(minute, reason, count)`
/// rows, after the routes' minutes: routes first (the check's rows have
/// the empty route, which sorts first), then by minute.
pub(crate) fn with_check_minutes(
    mut routes: Vec<ChallengeMinute>,
    check: impl IntoIterator<Item = (i64, String, u64)>,
) -> Vec<ChallengeMinute> {
    let mut minutes: std::collections::BTreeMap<i64, ChallengeMinute> = Default::default();
    for (minute, reason, count) in check {
        let row = minutes.entry(minute).or_insert_with(|| ChallengeMinute {
            minute,
            ..ChallengeMinute::default()
        });
        match reason.as_str() {
            CHECK_ISSUED => row.challenged += count,
            CHECK_SOLVED => row.solved += count,
            CHECK_FAILED => row.failed += count,
            CHECK_LIMITED => {
                row.limited += count;
                row.challenged += count;
            }
            _ => {}
        }
    }
    let mut all: Vec<ChallengeMinute> = minutes.into_values().collect();
    all.append(&mut routes);
    all.sort_by(|a, b| a.route.cmp(&b.route).then(a.minute.cmp(&b.minute)));
    all
}

/// How a device fared at the check, best outcome first: 3 solved, 2
/// limited, 1 failed (on `events AS e`).
pub(crate) const OUTCOME_RANK: &str = "CASE e.rule WHEN 'portal_solved' THEN 3 \
     WHEN 'portal_limited' THEN 2 ELSE 1 END";

/// The rest of the solve-rate query of both backends, after a `moves`
/// table of `(device, ts, route, outcome)`: the routes' challenges (with
/// outcome 0) and the check's answers (with no route). Each challenge
/// takes the best answer its device got within the window after it (a
/// window frame per device: one sort, no join), then
/// each device counts once per route and minute. `{WINDOW}` is replaced
/// by the window in milliseconds (a frame offset must be a constant).
pub(crate) const FARED: &str = "judged AS (\
       SELECT route, ts, device, max(outcome) OVER (PARTITION BY device ORDER BY ts \
       RANGE BETWEEN CURRENT ROW AND {WINDOW} FOLLOWING) AS best FROM moves), \
     fared AS (\
       SELECT route, ts / 60000 AS minute, device, max(best) AS best FROM judged \
       WHERE route IS NOT NULL GROUP BY 1, 2, 3) \
     SELECT route, minute, count(*), sum(CASE WHEN best = 3 THEN 1 ELSE 0 END), \
     sum(CASE WHEN best = 1 THEN 1 ELSE 0 END), sum(CASE WHEN best = 2 THEN 1 ELSE 0 END) \
     FROM fared GROUP BY 1, 2";
