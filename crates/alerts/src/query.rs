//! What the runner reads from the store: the rollup queries the rules need,
//! turned into [`MinuteCounts`], and the top client addresses of a window.
//!
//! Scanner traffic is left out here, in the queries (`exclude_class`),
//! because the rollups cannot split a reason or a route by class afterwards.

use portcullis_config::{AlertKind, AlertsConfig};
use portcullis_store::{
    ActionKind, ChallengeMinute, EventStore, RollupGroup, RollupQuery, Series, SolveRateQuery,
    StoreError, TopField, TopOrder, TopQuery,
};

use crate::engine::{Alert, AlertStatus, Count, MinuteCounts, TOP};

/// The reason recorded for a passed request whose origin failed starts
/// with this (see [`origin_error_reason`]).
pub const ORIGIN_ERROR_PREFIX: &str = "origin_";

/// The reason to record (as the stored event's `rule`) for a decision, so
/// that origin errors show in the minute rollups: `origin_502` for a passed
/// request answered 502, and so on for every status of 500 and above.
/// `None` for anything else. The rollups keep no status, so this reason is
/// how the alerts (and the console) tell origin failures apart.
pub fn origin_error_reason(action: &str, status: u16) -> Option<String> {
    (action == "pass" && status >= 500).then(|| format!("{ORIGIN_ERROR_PREFIX}{status}"))
}

/// How long after its minute a challenged device's clearance still counts
/// as solving it: the SDK answers within seconds, and the runner reads
/// whole minutes, so a minute is judged once its devices had a minute more.
const SOLVE_WINDOW_MS: i64 = 60_000;

/// Which part of [`MinuteCounts`] a query fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    InterceptReasons,
    InterceptRoutes,
    OriginReasons,
    RequestRoutes,
}

/// The queries for a set of rules.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryPlan {
    parts: Vec<Part>,
    /// Whether a solve-rate rule needs the challenges.
    challenges: bool,
    exclude_class: Option<String>,
}

impl QueryPlan {
    pub(crate) fn new(alerts: &AlertsConfig, include_scanners: bool) -> Self {
        let wants = |kind| alerts.rules.iter().any(|r| r.kind == kind);
        let mut parts = Vec::new();
        if wants(AlertKind::InterceptSpike) {
            parts.extend([Part::InterceptReasons, Part::InterceptRoutes]);
        }
        if wants(AlertKind::OriginErrors) {
            parts.push(Part::OriginReasons);
        }
        if wants(AlertKind::Rate) {
            parts.push(Part::RequestRoutes);
        }
        QueryPlan {
            parts,
            challenges: wants(AlertKind::SolveRate),
            exclude_class: (!include_scanners).then(|| "scanner".to_owned()),
        }
    }

    fn query(&self, part: Part, from_minute: i64, to_minute: i64) -> RollupQuery {
        let (group_by, kind) = match part {
            Part::InterceptReasons => (RollupGroup::Reason, Some(ActionKind::Intercept)),
            Part::InterceptRoutes => (RollupGroup::Route, Some(ActionKind::Intercept)),
            Part::OriginReasons => (RollupGroup::Reason, Some(ActionKind::Pass)),
            Part::RequestRoutes => (RollupGroup::Route, None),
        };
        RollupQuery {
            from_minute,
            to_minute,
            group_by,
            kind,
            route: None,
            exclude_class: self.exclude_class.clone(),
        }
    }

    /// The counts of minutes `[from_minute, to_minute)`, one entry per
    /// minute, quiet minutes included. Blocking: call it off the runtime.
    pub(crate) fn read(
        &self,
        store: &dyn EventStore,
        from_minute: i64,
        to_minute: i64,
    ) -> Result<Vec<MinuteCounts>, StoreError> {
        let mut minutes: Vec<MinuteCounts> =
            (from_minute..to_minute).map(MinuteCounts::empty).collect();
        for &part in &self.parts {
            let series = store.rollups(&self.query(part, from_minute, to_minute))?;
            fill(&mut minutes, part, series);
        }
        if self.challenges {
            let rows = store.solve_rate(&SolveRateQuery {
                from_ms: from_minute.saturating_mul(60_000),
                to_ms: to_minute.saturating_mul(60_000),
                window_ms: SOLVE_WINDOW_MS,
                exclude_class: self.exclude_class.clone(),
            })?;
            fill_challenges(&mut minutes, rows);
        }
        Ok(minutes)
    }

    /// The client addresses with the most of what `alert` counts in its
    /// window, where the store can rank them: intercepts and requests, for
    /// alerts still firing. Blocking.
    pub(crate) fn top_ips(
        &self,
        store: &dyn EventStore,
        alert: &Alert,
    ) -> Result<Vec<Count>, StoreError> {
        let order = match (alert.kind, alert.status) {
            (_, AlertStatus::Resolved) | (AlertKind::OriginErrors | AlertKind::SolveRate, _) => {
                return Ok(Vec::new());
            }
            (AlertKind::InterceptSpike, _) => TopOrder::Intercepts,
            (AlertKind::Rate, _) => TopOrder::Requests,
        };
        let entries = store.top(&TopQuery {
            field: TopField::ClientIp,
            from_ms: alert.from_ms,
            to_ms: alert.to_ms,
            limit: u32::try_from(TOP).unwrap_or(u32::MAX),
            order,
            exclude_class: self.exclude_class.clone(),
        })?;
        Ok(entries
            .into_iter()
            .map(|e| Count {
                count: match order {
                    TopOrder::Intercepts => e.intercepts,
                    TopOrder::Requests => e.requests,
                },
                key: e.key,
            })
            .filter(|c| c.count > 0)
            .collect())
    }
}

/// Adds one query's series to the minutes (which start at `minutes[0]`).
fn fill(minutes: &mut [MinuteCounts], part: Part, series: Vec<Series>) {
    let Some(first) = minutes.first().map(|m| m.minute) else {
        return;
    };
    for line in series {
        if part == Part::OriginReasons && !line.key.starts_with(ORIGIN_ERROR_PREFIX) {
            continue;
        }
        for (minute, count) in line.points {
            let slot = usize::try_from(minute - first)
                .ok()
                .and_then(|i| minutes.get_mut(i));
            let Some(slot) = slot else {
                continue;
            };
            let entry = (line.key.clone(), count);
            match part {
                Part::InterceptReasons => {
                    slot.intercepts.total += count;
                    slot.intercepts.reasons.push(entry);
                }
                // Every intercept has one reason: the reasons made the total.
                Part::InterceptRoutes => slot.intercepts.routes.push(entry),
                Part::OriginReasons => {
                    slot.origin_errors.total += count;
                    slot.origin_errors.reasons.push(entry);
                }
                Part::RequestRoutes => {
                    slot.requests.total += count;
                    slot.requests.routes.push(entry);
                }
            }
        }
    }
}

/// Adds the challenges of each route (and of the check, `""`) to their minutes.
fn fill_challenges(minutes: &mut [MinuteCounts], rows: Vec<ChallengeMinute>) {
    let Some(first) = minutes.first().map(|m| m.minute) else {
        return;
    };
    for row in rows {
        let slot = usize::try_from(row.minute - first)
            .ok()
            .and_then(|i| minutes.get_mut(i));
        let Some(slot) = slot else {
            continue;
        };
        slot.challenges.total += row.challenged;
        slot.challenges
            .routes
            .push((row.route.clone(), row.challenged));
        slot.solved.total += row.solved;
        slot.solved.routes.push((row.route, row.solved));
    }
}

#[cfg(test)]
mod tests {
    use portcullis_config::AlertRule;

    use super::*;

    fn series(key: &str, points: &[(i64, u64)]) -> Series {
        Series {
            key: key.into(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn scanners_are_left_out_of_every_query_unless_included() {
        let mut alerts = AlertsConfig::default();
        alerts
            .rules
            .push(AlertRule::new("rate", AlertKind::Rate, 1000));
        let plan = QueryPlan::new(&alerts, false);
        assert_eq!(
            plan.parts,
            [
                Part::InterceptReasons,
                Part::InterceptRoutes,
                Part::OriginReasons,
                Part::RequestRoutes
            ]
        );
        for &part in &plan.parts {
            assert_eq!(
                plan.query(part, 10, 20).exclude_class.as_deref(),
                Some("scanner")
            );
        }
        let origin = plan.query(Part::OriginReasons, 10, 20);
        assert_eq!(origin.kind, Some(ActionKind::Pass));
        assert_eq!(origin.group_by, RollupGroup::Reason);
        assert_eq!((origin.from_minute, origin.to_minute), (10, 20));
        let included = QueryPlan::new(&alerts, true);
        assert_eq!(
            included.query(Part::RequestRoutes, 0, 1).exclude_class,
            None
        );
    }

    #[test]
    fn only_the_kinds_in_use_are_queried() {
        let alerts = AlertsConfig {
            rules: vec![AlertRule::new("o", AlertKind::OriginErrors, 5)],
            ..AlertsConfig::default()
        };
        assert_eq!(QueryPlan::new(&alerts, false).parts, [Part::OriginReasons]);
    }

    #[test]
    fn series_fill_their_minutes() {
        let mut minutes: Vec<_> = (100..103).map(MinuteCounts::empty).collect();
        fill(
            &mut minutes,
            Part::InterceptReasons,
            vec![
                series("sqli", &[(100, 5), (102, 1)]),
                series("bad_utf8", &[(100, 2)]),
            ],
        );
        fill(
            &mut minutes,
            Part::InterceptRoutes,
            vec![series("login", &[(100, 7), (102, 1)])],
        );
        fill(
            &mut minutes,
            Part::OriginReasons,
            vec![
                series("origin_502", &[(101, 4)]),
                series("error_page_leak", &[(101, 9)]),
                series("", &[(101, 90)]),
            ],
        );
        fill(
            &mut minutes,
            Part::RequestRoutes,
            vec![series("", &[(99, 1000), (101, 50), (103, 1000)])],
        );
        assert_eq!(minutes[0].intercepts.total, 7);
        assert_eq!(minutes[0].intercepts.routes, [("login".to_string(), 7)]);
        assert_eq!(minutes[1].intercepts.total, 0);
        assert_eq!(minutes[1].origin_errors.total, 4, "only origin_ reasons");
        assert_eq!(
            minutes[1].requests.total, 50,
            "points outside the span are ignored"
        );
        assert_eq!(minutes[2].intercepts.reasons, [("sqli".to_string(), 1)]);
    }

    #[test]
    fn origin_failures_get_a_reason() {
        assert_eq!(
            origin_error_reason("pass", 502).as_deref(),
            Some("origin_502")
        );
        assert_eq!(
            origin_error_reason("pass", 500).as_deref(),
            Some("origin_500")
        );
        assert_eq!(origin_error_reason("pass", 404), None);
        assert_eq!(
            origin_error_reason("block", 503),
            None,
            "the gateway's own 503"
        );
    }
}
