//! The dashboard: totals, minute series and top lists over the last hour or day.

use axum::extract::State;
use portcullis_store::{
    ActionKind, ChallengeMinute, RollupGroup, RollupQuery, Series, SolveRateQuery, TopEntry,
    TopField, TopOrder, TopQuery, TrialCount, TrialQuery, WriterStats, minute_of,
};
use serde::{Deserialize, Serialize};

use super::{Q, Reply, Window, ok};
use crate::AppState;
use crate::auth::Caller;
use crate::db::now_ms;

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WindowQuery {
    window: Window,
}

#[derive(Serialize, Default, Debug, PartialEq, Eq)]
pub struct Totals {
    requests: u64,
    passes: u64,
    challenges: u64,
    intercepts: u64,
}

#[derive(Serialize)]
pub struct Summary {
    window: Window,
    totals: Totals,
    /// What log-only policies would have stopped in the window.
    trial: Vec<TrialCount>,
    config_version: u64,
    store: Option<WriterStats>,
}

/// Counts by outcome from a by-action grouping.
fn totals(by_action: &[Series]) -> Totals {
    let mut t = Totals::default();
    for series in by_action {
        let n = series.total();
        t.requests += n;
        match ActionKind::of(&series.key) {
            ActionKind::Pass => t.passes += n,
            ActionKind::Challenge => t.challenges += n,
            ActionKind::Intercept => t.intercepts += n,
        }
    }
    t
}

fn minutes(window: Window) -> (i64, i64) {
    let to = minute_of(now_ms()) + 1;
    (to - window.minutes(), to)
}

pub async fn summary(
    State(state): State<AppState>,
    _caller: Caller,
    Q(q): Q<WindowQuery>,
) -> Reply<Summary> {
    let (from_minute, to_minute) = minutes(q.window);
    let (from_ms, to_ms) = q.window.range_ms(now_ms());
    let (by_action, trial) = state
        .events(move |store| {
            let by_action = store.rollups(&RollupQuery {
                from_minute,
                to_minute,
                group_by: RollupGroup::Action,
                kind: None,
                route: None,
                exclude_class: None,
            })?;
            let trial = store.trial(&TrialQuery { from_ms, to_ms })?;
            Ok((by_action, trial))
        })
        .await?;
    ok(Summary {
        window: q.window,
        totals: totals(&by_action),
        trial,
        config_version: state.gateway.config_version(),
        store: state.gateway.store_stats(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    #[serde(default)]
    window: Window,
    group: RollupGroup,
    #[serde(default)]
    kind: Option<ActionKind>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    exclude_class: Option<String>,
}

#[derive(Serialize)]
pub struct SeriesReply {
    from_minute: i64,
    to_minute: i64,
    series: Vec<Series>,
}

pub async fn series(
    State(state): State<AppState>,
    _caller: Caller,
    Q(q): Q<SeriesQuery>,
) -> Reply<SeriesReply> {
    let (from_minute, to_minute) = minutes(q.window);
    let query = RollupQuery {
        from_minute,
        to_minute,
        group_by: q.group,
        kind: q.kind,
        route: q.route,
        exclude_class: q.exclude_class,
    };
    let mut series = state.events(move |store| store.rollups(&query)).await?;
    series.sort_by(|a, b| b.total().cmp(&a.total()).then_with(|| a.key.cmp(&b.key)));
    ok(SeriesReply {
        from_minute,
        to_minute,
        series,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopParams {
    #[serde(default)]
    window: Window,
    field: TopField,
    #[serde(default)]
    order: TopOrder,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn top(
    State(state): State<AppState>,
    _caller: Caller,
    Q(q): Q<TopParams>,
) -> Reply<Vec<TopEntry>> {
    let (from_ms, to_ms) = q.window.range_ms(now_ms());
    let query = TopQuery {
        field: q.field,
        from_ms,
        to_ms,
        limit: q.limit.unwrap_or(10).clamp(1, 100),
        order: q.order,
        exclude_class: None,
    };
    ok(state.events(move |store| store.top(&query)).await?)
}

/// How long after its challenge a device's clearance counts as solving it.
const SOLVE_WINDOW_MS: i64 = 60_000;

#[derive(Serialize, Debug, PartialEq)]
pub struct ChallengeCounts {
    minute: i64,
    challenged: u64,
    solved: u64,
    failed: u64,
    limited: u64,
    /// `solved / challenged`; absent without challenges.
    solve_rate: Option<f64>,
}

impl From<&ChallengeMinute> for ChallengeCounts {
    fn from(m: &ChallengeMinute) -> Self {
        ChallengeCounts {
            minute: m.minute,
            challenged: m.challenged,
            solved: m.solved,
            failed: m.failed,
            limited: m.limited,
            solve_rate: m.solve_rate(),
        }
    }
}

/// One route's challenges over the window, and minute by minute.
#[derive(Serialize, Debug, PartialEq)]
pub struct RouteChallenges {
    /// The policy's name; `""` is the check itself (every call to
    /// `/.portcullis/`, whatever sent the client there).
    route: String,
    /// The window's totals (`minute` is its first minute).
    total: ChallengeCounts,
    minutes: Vec<ChallengeCounts>,
}

#[derive(Serialize)]
pub struct ChallengesReply {
    from_minute: i64,
    to_minute: i64,
    /// How long after its challenge a device's clearance counts as solving it.
    window_ms: i64,
    routes: Vec<RouteChallenges>,
}

/// The store's minutes (by route, then minute) as one entry per route.
fn by_route(from_minute: i64, minutes: &[ChallengeMinute]) -> Vec<RouteChallenges> {
    let mut routes: Vec<RouteChallenges> = Vec::new();
    for m in minutes {
        let counts = ChallengeCounts::from(m);
        match routes.last_mut() {
            Some(last) if last.route == m.route => last.minutes.push(counts),
            _ => routes.push(RouteChallenges {
                route: m.route.clone(),
                total: ChallengeCounts::from(&ChallengeMinute::default()),
                minutes: vec![counts],
            }),
        }
    }
    for route in &mut routes {
        let sum = |f: fn(&ChallengeCounts) -> u64| route.minutes.iter().map(f).sum();
        let total = ChallengeMinute {
            route: String::new(),
            minute: from_minute,
            challenged: sum(|m| m.challenged),
            solved: sum(|m| m.solved),
            failed: sum(|m| m.failed),
            limited: sum(|m| m.limited),
        };
        route.total = ChallengeCounts::from(&total);
    }
    routes
}

/// The challenge solve rate per route (and of the check itself).
pub async fn challenges(
    State(state): State<AppState>,
    _caller: Caller,
    Q(q): Q<WindowQuery>,
) -> Reply<ChallengesReply> {
    let (from_minute, to_minute) = minutes(q.window);
    let query = SolveRateQuery {
        from_ms: from_minute * 60_000,
        to_ms: to_minute * 60_000,
        window_ms: SOLVE_WINDOW_MS,
        exclude_class: None,
    };
    let minutes = state.events(move |store| store.solve_rate(&query)).await?;
    ok(ChallengesReply {
        from_minute,
        to_minute,
        window_ms: SOLVE_WINDOW_MS,
        routes: by_route(from_minute, &minutes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_grouped_by_route_with_their_totals() {
        let m = |route: &str, minute, challenged, solved| ChallengeMinute {
            route: route.into(),
            minute,
            challenged,
            solved,
            failed: 1,
            limited: 0,
        };
        let routes = by_route(
            10,
            &[m("", 10, 4, 4), m("api", 10, 10, 9), m("api", 12, 10, 1)],
        );
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1].route, "api");
        assert_eq!(routes[1].minutes.len(), 2);
        assert_eq!(routes[1].total.challenged, 20);
        assert_eq!(routes[1].total.failed, 2);
        assert_eq!(routes[1].total.solve_rate, Some(0.5));
        assert_eq!(routes[0].total.solve_rate, Some(1.0));
    }

    #[test]
    fn totals_by_outcome() {
        let s = |key: &str, n: u64| Series {
            key: key.into(),
            points: vec![(1, n)],
        };
        let t = totals(&[
            s("pass", 10),
            s("block", 2),
            s("throttle", 1),
            s("challenge", 3),
        ]);
        assert_eq!(
            t,
            Totals {
                requests: 16,
                passes: 10,
                challenges: 3,
                intercepts: 3
            }
        );
    }
}
