//! The pure part: minute counts in, at most one message per evaluation out.
//! No clock and no I/O: the caller passes the time, so every flood
//! scenario can be replayed minute by minute in a test.

use std::collections::{HashMap, VecDeque};

use portcullis_config::{AlertKind, AlertRule, AlertsConfig, BaselineStat};
use serde::Serialize;

/// Entries listed per breakdown in a message.
pub const TOP: usize = 5;
/// Keys kept per breakdown (per minute and per incident): the rest are
/// dropped from the breakdown, never from the totals.
const MAX_KEYS: usize = 32;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// One metric of one minute: its total and its largest contributors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: u64,
    /// `(reason, count)`, any order.
    pub reasons: Vec<(String, u64)>,
    /// `(route, count)`, any order; `""` is "no named route".
    pub routes: Vec<(String, u64)>,
}

/// What the engine is fed: the counts of one minute (`ts_ms / 60_000`),
/// without the traffic classes the caller leaves out (scanners by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    pub minute: i64,
    /// Requests the gateway answered itself.
    pub intercepts: Tally,
    /// Passed requests whose origin failed.
    pub origin_errors: Tally,
    /// Every stored request.
    pub requests: Tally,
    /// Challenges (see `portcullis_store::ChallengeMinute`): `routes` per
    /// route, `""` for the check as a whole; `total` all of them.
    pub challenges: Tally,
    /// Of those, the ones solved, keyed the same way.
    pub solved: Tally,
}

impl MinuteCounts {
    pub fn empty(minute: i64) -> Self {
        MinuteCounts {
            minute,
            ..MinuteCounts::default()
        }
    }

    /// The tally a rule of this kind counts.
    pub fn tally(&self, kind: AlertKind) -> &Tally {
        match kind {
            AlertKind::InterceptSpike => &self.intercepts,
            AlertKind::OriginErrors => &self.origin_errors,
            AlertKind::Rate => &self.requests,
            AlertKind::SolveRate => &self.challenges,
        }
    }

    fn tally_mut(&mut self, kind: AlertKind) -> &mut Tally {
        match kind {
            AlertKind::InterceptSpike => &mut self.intercepts,
            AlertKind::OriginErrors => &mut self.origin_errors,
            AlertKind::Rate => &mut self.requests,
            AlertKind::SolveRate => &mut self.challenges,
        }
    }

    /// Keeps the totals, drops the breakdowns (minutes older than the
    /// window), except the challenges' per route: a route's solve rate is
    /// judged against its own baseline minutes.
    fn strip(&mut self) {
        for kind in [
            AlertKind::InterceptSpike,
            AlertKind::OriginErrors,
            AlertKind::Rate,
        ] {
            let tally = self.tally_mut(kind);
            tally.reasons = Vec::new();
            tally.routes = Vec::new();
        }
    }

    /// Caps every breakdown at its [`MAX_KEYS`] largest entries.
    fn bound(&mut self) {
        for kind in KINDS {
            let tally = self.tally_mut(kind);
            keep_largest(&mut tally.reasons);
            keep_largest(&mut tally.routes);
        }
        let challenged: Vec<&String> = self.challenges.routes.iter().map(|(k, _)| k).collect();
        self.solved
            .routes
            .retain(|(key, _)| challenged.contains(&key));
    }
}

const KINDS: [AlertKind; 4] = [
    AlertKind::InterceptSpike,
    AlertKind::OriginErrors,
    AlertKind::Rate,
    AlertKind::SolveRate,
];

fn keep_largest(entries: &mut Vec<(String, u64)>) {
    if entries.len() > MAX_KEYS {
        entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        entries.truncate(MAX_KEYS);
    }
}

/// Where a rule stands in the message it appears in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The rule has just started firing.
    Firing,
    /// Still firing: its count doubled since the last message, or the
    /// reminder interval passed.
    Ongoing,
    /// Quiet for `resolve_after_s`: the incident is over.
    Resolved,
}

/// One key of a breakdown and its count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: u64,
}

/// One rule's part of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub rule: String,
    pub kind: AlertKind,
    pub status: AlertStatus,
    /// When the incident began (ms since the epoch).
    pub since_ms: i64,
    /// The counted span `[from_ms, to_ms)`: the last window, or the whole
    /// incident for a resolved alert.
    pub from_ms: i64,
    pub to_ms: i64,
    pub window_minutes: u32,
    /// The count of the last window.
    pub count: u64,
    /// The count expected per window, frozen when the incident began so a
    /// long attack does not become its own baseline.
    pub baseline: f64,
    /// Everything counted since the incident began.
    pub total: u64,
    /// The largest window count of the incident.
    pub peak: u64,
    pub top_reasons: Vec<Count>,
    pub top_routes: Vec<Count>,
    /// Filled by the runner from the event store when it can rank them.
    pub top_ips: Vec<Count>,
    /// A solve-rate rule's collapsed routes (`""` is the check as a
    /// whole), most challenged first; empty for the other kinds and once
    /// resolved.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub solve_rates: Vec<SolveRate>,
}

/// A route whose challenge solve rate collapsed in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SolveRate {
    pub route: String,
    pub challenged: u64,
    pub solved: u64,
    /// `solved / challenged` in the window.
    pub rate: f64,
    /// The rate of the baseline minutes, frozen when the incident began.
    pub baseline_rate: f64,
}

/// What a window is compared with: the count expected per window, and for
/// a solve-rate rule the solve rate of each route with enough challenges
/// in the baseline minutes.
#[derive(Debug, Clone, Default)]
struct Expected {
    count: f64,
    rates: HashMap<String, f64>,
}

/// What goes to every webhook: the alerts of one evaluation together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub at_ms: i64,
    pub alerts: Vec<Alert>,
    /// Alerts left out by the hourly cap since the previous message.
    pub suppressed: u64,
}

/// Counts per key, capped at [`MAX_KEYS`] keys: later keys are dropped
/// from the breakdown once it is full.
#[derive(Debug, Clone, Default)]
struct Breakdown(HashMap<String, u64>);

impl Breakdown {
    fn add(&mut self, key: &str, count: u64) {
        if let Some(n) = self.0.get_mut(key) {
            *n += count;
        } else if self.0.len() < MAX_KEYS {
            self.0.insert(key.to_owned(), count);
        }
    }

    fn top(&self) -> Vec<Count> {
        let mut all: Vec<Count> = self
            .0
            .iter()
            .map(|(key, &count)| Count {
                key: key.clone(),
                count,
            })
            .collect();
        all.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        all.truncate(TOP);
        all
    }
}

#[derive(Debug, Clone, Default)]
struct Breakdowns {
    reasons: Breakdown,
    routes: Breakdown,
}

impl Breakdowns {
    fn add(&mut self, tally: &Tally) {
        for (key, n) in &tally.reasons {
            self.reasons.add(key, *n);
        }
        for (key, n) in &tally.routes {
            self.routes.add(key, *n);
        }
    }
}

/// A firing rule's running account.
#[derive(Debug, Clone)]
struct Incident {
    since_ms: i64,
    /// First minute counted (the first minute of the window that fired).
    first_minute: i64,
    /// Last minute added to `total`.
    counted_through: i64,
    last_breach_ms: i64,
    /// When the last message about it went out (or was suppressed).
    last_sent_ms: i64,
    last_sent_count: u64,
    peak: u64,
    total: u64,
    breakdowns: Breakdowns,
    expected: Expected,
}

#[derive(Debug, Clone)]
struct RuleState {
    rule: AlertRule,
    incident: Option<Incident>,
}

/// The window a rule looks at, with its count and breakdowns.
struct Window {
    from_minute: i64,
    to_minute: i64,
    count: u64,
    breakdowns: Breakdowns,
}

/// Spike detection, aggregation and the hourly cap for a set of rules.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    rules: Vec<RuleState>,
    window_minutes: i64,
    repeat_ms: i64,
    resolve_after_ms: i64,
    max_per_hour: usize,
    /// The last `capacity` minutes, oldest first, without gaps; only the
    /// last window keeps its breakdowns.
    history: VecDeque<MinuteCounts>,
    capacity: usize,
    /// When the messages of the last hour went out (at most `max_per_hour`).
    sent: VecDeque<i64>,
    suppressed_pending: u64,
    suppressed_total: u64,
}

impl AlertEngine {
    pub fn new(config: &AlertsConfig) -> Self {
        let window_minutes = i64::try_from(config.window_s / 60).unwrap_or(1).max(1);
        let baseline = config
            .rules
            .iter()
            .map(|r| i64::from(r.baseline_minutes))
            .max()
            .unwrap_or(0);
        let capacity = usize::try_from(window_minutes + baseline).unwrap_or(usize::MAX);
        AlertEngine {
            rules: config
                .rules
                .iter()
                .map(|rule| RuleState {
                    rule: rule.clone(),
                    incident: None,
                })
                .collect(),
            window_minutes,
            repeat_ms: secs_ms(config.repeat_s),
            resolve_after_ms: secs_ms(config.resolve_after_s),
            max_per_hour: usize::try_from(config.max_per_hour).unwrap_or(usize::MAX),
            history: VecDeque::with_capacity(capacity),
            capacity,
            sent: VecDeque::new(),
            suppressed_pending: 0,
            suppressed_total: 0,
        }
    }

    /// Minutes of history the rules look at: the longest baseline plus the
    /// window. Feed that many before the first evaluation.
    pub fn history_minutes(&self) -> i64 {
        i64::try_from(self.capacity).unwrap_or(i64::MAX)
    }

    /// The minute after the last one observed.
    pub fn next_minute(&self) -> Option<i64> {
        self.history.back().map(|m| m.minute + 1)
    }

    /// Alerts left out by the hourly cap since the engine started.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }

    /// Adds one complete minute. Minutes must come in order; one at or
    /// before the last observed minute is ignored, and a gap counts as
    /// minutes without events.
    pub fn observe(&mut self, mut counts: MinuteCounts) {
        if let Some(next) = self.next_minute() {
            if counts.minute < next {
                return;
            }
            let gap = (counts.minute - next).min(self.history_minutes());
            for minute in counts.minute - gap..counts.minute {
                self.push(MinuteCounts::empty(minute));
            }
        }
        counts.bound();
        self.push(counts);
    }

    fn push(&mut self, counts: MinuteCounts) {
        if self.history.len() == self.capacity {
            self.history.pop_front();
        }
        self.history.push_back(counts);
        let window = usize::try_from(self.window_minutes).unwrap_or(usize::MAX);
        if let Some(old) = self
            .history
            .len()
            .checked_sub(window + 1)
            .and_then(|i| self.history.get_mut(i))
        {
            old.strip();
        }
    }

    /// Evaluates every rule at `now_ms` on the minutes observed so far, and
    /// returns the message to send, if any.
    pub fn evaluate(&mut self, now_ms: i64) -> Option<Message> {
        let last = self.history.back()?.minute;
        let mut due = Vec::new();
        for i in 0..self.rules.len() {
            if let Some(alert) = self.evaluate_rule(i, last, now_ms) {
                due.push(alert);
            }
        }
        self.release(now_ms, due)
    }

    fn evaluate_rule(&mut self, i: usize, last: i64, now_ms: i64) -> Option<Alert> {
        let rule = self.rules[i].rule.clone();
        let window = self.window(rule.kind, last);
        let incident = match self.rules[i].incident.take() {
            Some(mut incident) => {
                self.account(&mut incident, rule.kind, last);
                incident
            }
            None => {
                let expected = self.expected(&rule, window.from_minute);
                let collapsed = self.breach(&rule, &window, &expected)?;
                let incident = self.open(&window, expected, now_ms);
                let alert = self.alert(&rule, &incident, &window, AlertStatus::Firing, collapsed);
                self.rules[i].incident = Some(incident);
                return Some(alert);
            }
        };
        let (incident, alert) = self.follow(&rule, incident, &window, now_ms);
        self.rules[i].incident = incident;
        alert
    }

    /// A firing rule at a new evaluation: an update, a reminder, its
    /// resolution, or nothing.
    fn follow(
        &self,
        rule: &AlertRule,
        mut incident: Incident,
        window: &Window,
        now_ms: i64,
    ) -> (Option<Incident>, Option<Alert>) {
        let since_sent = now_ms - incident.last_sent_ms;
        let window_ms = self.window_minutes * MINUTE_MS;
        if let Some(collapsed) = self.breach(rule, window, &incident.expected) {
            incident.last_breach_ms = now_ms;
            incident.peak = incident.peak.max(window.count);
            let escalated = window.count >= incident.last_sent_count.saturating_mul(2);
            if since_sent >= window_ms && (escalated || since_sent >= self.repeat_ms) {
                incident.last_sent_ms = now_ms;
                incident.last_sent_count = window.count;
                let alert = self.alert(rule, &incident, window, AlertStatus::Ongoing, collapsed);
                return (Some(incident), Some(alert));
            }
            return (Some(incident), None);
        }
        let quiet = now_ms - incident.last_breach_ms >= self.resolve_after_ms;
        if quiet && since_sent >= window_ms {
            let alert = self.alert(rule, &incident, window, AlertStatus::Resolved, Vec::new());
            return (None, Some(alert));
        }
        (Some(incident), None)
    }

    fn open(&self, window: &Window, expected: Expected, now_ms: i64) -> Incident {
        Incident {
            since_ms: now_ms,
            first_minute: window.from_minute,
            counted_through: window.to_minute - 1,
            last_breach_ms: now_ms,
            last_sent_ms: now_ms,
            last_sent_count: window.count,
            peak: window.count,
            total: window.count,
            breakdowns: window.breakdowns.clone(),
            expected,
        }
    }

    /// Adds the minutes observed since the last evaluation to the incident.
    fn account(&self, incident: &mut Incident, kind: AlertKind, last: i64) {
        for minute in self
            .history
            .iter()
            .filter(|m| m.minute > incident.counted_through)
        {
            let tally = minute.tally(kind);
            incident.total += tally.total;
            incident.breakdowns.add(tally);
        }
        incident.counted_through = incident.counted_through.max(last);
    }

    fn alert(
        &self,
        rule: &AlertRule,
        incident: &Incident,
        window: &Window,
        status: AlertStatus,
        solve_rates: Vec<SolveRate>,
    ) -> Alert {
        let (from_minute, breakdowns) = match status {
            AlertStatus::Resolved => (incident.first_minute, &incident.breakdowns),
            AlertStatus::Firing | AlertStatus::Ongoing => (window.from_minute, &window.breakdowns),
        };
        Alert {
            rule: rule.name.clone(),
            kind: rule.kind,
            status,
            since_ms: incident.since_ms,
            from_ms: from_minute * MINUTE_MS,
            to_ms: window.to_minute * MINUTE_MS,
            window_minutes: u32::try_from(self.window_minutes).unwrap_or(u32::MAX),
            count: window.count,
            baseline: incident.expected.count,
            total: incident.total,
            peak: incident.peak,
            top_reasons: breakdowns.reasons.top(),
            top_routes: breakdowns.routes.top(),
            top_ips: Vec::new(),
            solve_rates,
        }
    }

    /// The last `window_minutes` minutes up to `last`.
    fn window(&self, kind: AlertKind, last: i64) -> Window {
        let from_minute = last - self.window_minutes + 1;
        let mut window = Window {
            from_minute,
            to_minute: last + 1,
            count: 0,
            breakdowns: Breakdowns::default(),
        };
        for minute in self.history.iter().filter(|m| m.minute >= from_minute) {
            let tally = minute.tally(kind);
            window.count += tally.total;
            window.breakdowns.add(tally);
        }
        window
    }

    /// The count a window is expected to have: the median (or mean) of the
    /// per-minute counts of the rule's baseline minutes, times the window.
    /// Minutes never observed count as zero.
    fn baseline(&self, rule: &AlertRule, window_from: i64) -> f64 {
        let span = i64::from(rule.baseline_minutes);
        let from = window_from - span;
        let mut counts: Vec<u64> = self
            .history
            .iter()
            .filter(|m| (from..window_from).contains(&m.minute))
            .map(|m| m.tally(rule.kind).total)
            .collect();
        counts.resize(usize::try_from(span).unwrap_or(0), 0);
        per_minute(&mut counts, rule.baseline) * self.window_minutes as f64
    }

    /// What the window of a rule starting at `window_from` is compared with.
    fn expected(&self, rule: &AlertRule, window_from: i64) -> Expected {
        match rule.kind {
            AlertKind::SolveRate => {
                let span = i64::from(rule.baseline_minutes);
                let rates = self
                    .route_challenges(window_from - span, window_from)
                    .into_iter()
                    .filter(|(_, (challenged, _))| *challenged >= rule.min_count)
                    .map(|(route, (challenged, solved))| {
                        (route.to_owned(), ratio(solved, challenged))
                    })
                    .collect();
                Expected { count: 0.0, rates }
            }
            _ => Expected {
                count: self.baseline(rule, window_from),
                rates: HashMap::new(),
            },
        }
    }

    /// Whether the window breaches the rule: `None` if not, else the
    /// routes whose solve rate collapsed (none for the count kinds).
    fn breach(
        &self,
        rule: &AlertRule,
        window: &Window,
        expected: &Expected,
    ) -> Option<Vec<SolveRate>> {
        if rule.kind != AlertKind::SolveRate {
            return breached(rule, window.count, expected.count).then(Vec::new);
        }
        let mut collapsed: Vec<SolveRate> = self
            .route_challenges(window.from_minute, window.to_minute)
            .into_iter()
            .filter(|(_, (challenged, _))| *challenged >= rule.min_count)
            .filter_map(|(route, (challenged, solved))| {
                let baseline_rate = *expected.rates.get(route)?;
                let rate = ratio(solved, challenged);
                (rate < baseline_rate / rule.factor).then(|| SolveRate {
                    route: route.to_owned(),
                    challenged,
                    solved,
                    rate,
                    baseline_rate,
                })
            })
            .collect();
        collapsed.sort_unstable_by(|a, b| {
            b.challenged
                .cmp(&a.challenged)
                .then_with(|| a.route.cmp(&b.route))
        });
        collapsed.truncate(TOP);
        (!collapsed.is_empty()).then_some(collapsed)
    }

    /// `(challenged, solved)` per route over minutes `[from, to)`.
    fn route_challenges(&self, from: i64, to: i64) -> HashMap<&str, (u64, u64)> {
        let mut counts: HashMap<&str, (u64, u64)> = HashMap::new();
        for minute in self
            .history
            .iter()
            .filter(|m| (from..to).contains(&m.minute))
        {
            for (route, n) in &minute.challenges.routes {
                counts.entry(route).or_default().0 += n;
            }
            for (route, n) in &minute.solved.routes {
                counts.entry(route).or_default().1 += n;
            }
        }
        counts
    }

    /// Applies the hourly cap: the alerts go out together, or are counted
    /// and mentioned in the next message that does.
    fn release(&mut self, now_ms: i64, due: Vec<Alert>) -> Option<Message> {
        while self.sent.front().is_some_and(|t| now_ms - t >= HOUR_MS) {
            self.sent.pop_front();
        }
        if due.is_empty() {
            return None;
        }
        let count = u64::try_from(due.len()).unwrap_or(u64::MAX);
        if self.sent.len() >= self.max_per_hour {
            self.suppressed_pending += count;
            self.suppressed_total += count;
            return None;
        }
        self.sent.push_back(now_ms);
        Some(Message {
            at_ms: now_ms,
            alerts: due,
            suppressed: std::mem::take(&mut self.suppressed_pending),
        })
    }
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn breached(rule: &AlertRule, count: u64, baseline: f64) -> bool {
    let spike = count >= rule.min_count && count as f64 > rule.factor * baseline;
    spike || rule.threshold.is_some_and(|t| count >= t)
}

/// `part / whole`, at most 1 (a device may solve more than once).
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64).min(1.0)
}

fn per_minute(counts: &mut [u64], stat: BaselineStat) -> f64 {
    if counts.is_empty() {
        return 0.0;
    }
    match stat {
        BaselineStat::Mean => counts.iter().sum::<u64>() as f64 / counts.len() as f64,
        BaselineStat::Median => {
            counts.sort_unstable();
            let mid = counts.len() / 2;
            if counts.len() % 2 == 1 {
                counts[mid] as f64
            } else {
                (counts[mid - 1] as f64 + counts[mid] as f64) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests;
