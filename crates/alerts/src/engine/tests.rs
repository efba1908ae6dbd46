use portcullis_config::{AlertKind, AlertRule, AlertsConfig, BaselineStat};

use super::*;

const T0: i64 = 29_923_752; // a minute in 2026

fn config() -> AlertsConfig {
    AlertsConfig {
        enabled: true,
        ..AlertsConfig::default()
    }
}

/// Deterministic jitter in `[0, spread)`.
fn jitter(minute: i64, spread: u64) -> u64 {
    let x = (minute as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    x % spread.max(1)
}

fn intercepts(minute: i64, n: u64) -> MinuteCounts {
    let mut counts = MinuteCounts::empty(minute);
    if n > 0 {
        counts.intercepts = Tally {
            total: n,
            reasons: vec![
                ("sqli".into(), n * 3 / 4),
                ("bad_utf8".into(), n - n * 3 / 4),
            ],
            routes: vec![("login".into(), n)],
        };
    }
    counts
}

/// Feeds minutes `from..to` and evaluates after each, 5 s into the next
/// minute, as the runner does.
fn run(
    engine: &mut AlertEngine,
    from: i64,
    to: i64,
    counts: impl Fn(i64) -> MinuteCounts,
) -> Vec<Message> {
    let mut messages = Vec::new();
    for minute in from..to {
        engine.observe(counts(minute));
        messages.extend(engine.evaluate((minute + 1) * MINUTE_MS + 5_000));
    }
    messages
}

/// Feeds the history before `from` without evaluating, as the runner
/// does when it starts.
fn warm(engine: &mut AlertEngine, from: i64, counts: impl Fn(i64) -> MinuteCounts) {
    for minute in from - engine.history_minutes()..from {
        engine.observe(counts(minute));
    }
}

fn statuses(messages: &[Message]) -> Vec<AlertStatus> {
    messages
        .iter()
        .flat_map(|m| m.alerts.iter().map(|a| a.status))
        .collect()
}

#[test]
fn normal_noise_sends_nothing() {
    let mut engine = AlertEngine::new(&config());
    let messages = run(&mut engine, T0, T0 + 24 * 60, |m| {
        intercepts(m, jitter(m, 15))
    });
    assert!(messages.is_empty(), "{messages:?}");
}

#[test]
fn a_two_hour_attack_is_a_handful_of_messages() {
    let attack = T0 + 60..T0 + 180;
    let load = |m: i64| {
        if attack.contains(&m) {
            2000 + jitter(m, 600)
        } else {
            5 + jitter(m, 10)
        }
    };
    let mut engine = AlertEngine::new(&config());
    let messages = run(&mut engine, T0, T0 + 300, |m| intercepts(m, load(m)));

    assert!(
        (2..=5).contains(&messages.len()),
        "{} messages",
        messages.len()
    );
    let statuses = statuses(&messages);
    assert_eq!(statuses.first(), Some(&AlertStatus::Firing));
    assert_eq!(statuses.last(), Some(&AlertStatus::Resolved));
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == AlertStatus::Firing)
            .count(),
        1,
        "one incident: {statuses:?}"
    );

    let first = &messages[0].alerts[0];
    assert_eq!(first.rule, "intercepts");
    assert_eq!(
        first.from_ms,
        (T0 + 56) * MINUTE_MS,
        "fired on the first attack minute"
    );
    assert_eq!(first.top_reasons[0].key, "sqli");
    assert_eq!(first.top_routes[0].key, "login");

    let resolved = &messages.last().unwrap().alerts[0];
    let attack_total: u64 = attack.clone().map(load).sum();
    assert!(
        resolved.total >= attack_total && resolved.total < attack_total + 500,
        "total {} vs attack {attack_total}",
        resolved.total
    );
    assert!(resolved.peak >= 5 * 2000);
    assert!(
        resolved.baseline < 100.0,
        "baseline frozen before the attack"
    );
    let sqli = &resolved.top_reasons[0];
    assert_eq!(sqli.key, "sqli");
    assert!(sqli.count >= attack_total * 3 / 4 - 200);
}

#[test]
fn an_escalating_attack_updates_only_when_it_doubles() {
    // 200 per minute, doubling every 15 minutes for an hour.
    let load = |m: i64| match m - T0 - 60 {
        d if (0..60).contains(&d) => 200 << (d / 15),
        _ => 3,
    };
    let mut engine = AlertEngine::new(&config());
    let messages = run(&mut engine, T0, T0 + 180, |m| intercepts(m, load(m)));
    let statuses = statuses(&messages);
    let ongoing = statuses
        .iter()
        .filter(|s| **s == AlertStatus::Ongoing)
        .count();
    assert!((2..=4).contains(&ongoing), "{statuses:?}");
    for pair in messages.windows(2) {
        assert!(pair[1].at_ms - pair[0].at_ms >= 5 * MINUTE_MS);
    }
}

#[test]
fn an_attack_that_pauses_and_resumes_stays_one_incident() {
    // Two minutes on, eight off, for two hours.
    let load = |m: i64| {
        let d = m - T0 - 60;
        if (0..120).contains(&d) && d % 10 < 2 {
            3000
        } else {
            2
        }
    };
    let mut engine = AlertEngine::new(&config());
    let messages = run(&mut engine, T0, T0 + 240, |m| intercepts(m, load(m)));
    let statuses = statuses(&messages);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == AlertStatus::Firing)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(messages.len() <= 4, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&AlertStatus::Resolved));
}

#[test]
fn alerts_of_one_evaluation_share_one_message() {
    let mut engine = AlertEngine::new(&config());
    let messages = run(&mut engine, T0, T0 + 70, |m| {
        let mut counts = intercepts(m, if m >= T0 + 65 { 1000 } else { 1 });
        if m >= T0 + 65 {
            counts.origin_errors.total = 100;
            counts.origin_errors.reasons = vec![("origin_502".into(), 100)];
        }
        counts
    });
    assert_eq!(messages.len(), 1, "{messages:?}");
    let rules: Vec<_> = messages[0].alerts.iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(rules, ["intercepts", "origin-errors"]);
}

/// Short windows and quick resolution make a spike every 4 minutes a new
/// incident, so only the hourly cap stands between them and a flood.
fn flappy(max_per_hour: u32) -> AlertsConfig {
    AlertsConfig {
        window_s: 60,
        repeat_s: 60,
        resolve_after_s: 60,
        max_per_hour,
        ..config()
    }
}

fn spikes(m: i64) -> MinuteCounts {
    intercepts(
        m,
        if (m - T0) % 4 == 0 && m > T0 + 60 {
            5000
        } else {
            0
        },
    )
}

#[test]
fn the_hourly_cap_holds_and_counts_what_it_held_back() {
    let mut uncapped = AlertEngine::new(&flappy(10_000));
    let all = run(&mut uncapped, T0, T0 + 300, spikes);
    let alerts_without_cap: usize = all.iter().map(|m| m.alerts.len()).sum();
    assert!(
        alerts_without_cap > 60,
        "the scenario must flood: {alerts_without_cap}"
    );

    let mut engine = AlertEngine::new(&flappy(3));
    let sent = run(&mut engine, T0, T0 + 300, spikes);
    for (i, m) in sent.iter().enumerate() {
        let in_hour = sent[i..]
            .iter()
            .take_while(|n| n.at_ms - m.at_ms < HOUR_MS)
            .count();
        assert!(in_hour <= 3, "{in_hour} messages within an hour");
    }
    assert!(sent.len() <= 3 * 5);
    assert!(
        sent.iter().skip(3).any(|m| m.suppressed > 0),
        "the message after a cap says how many were held back"
    );
    let delivered: u64 = sent.iter().map(|m| m.alerts.len() as u64).sum();
    let reported: u64 = sent.iter().map(|m| m.suppressed).sum();
    assert_eq!(
        delivered + engine.suppressed_total(),
        alerts_without_cap as u64
    );
    assert!(reported <= engine.suppressed_total());
}

#[test]
fn a_fixed_threshold_fires_whatever_the_baseline() {
    let mut rule = AlertRule::new("ceiling", AlertKind::InterceptSpike, 100);
    rule.factor = 1000.0;
    rule.threshold = Some(20_000);
    let config = AlertsConfig {
        rules: vec![rule],
        ..config()
    };
    let mut engine = AlertEngine::new(&config);
    let busy = |m: i64| intercepts(m, if m >= T0 + 90 { 4_100 } else { 3_000 });
    warm(&mut engine, T0, busy);
    let messages = run(&mut engine, T0, T0 + 100, busy);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].alerts[0].count, 5 * 4_100);
}

#[test]
fn the_median_ignores_an_earlier_burst_the_mean_does_not() {
    // A 10-minute burst 40 minutes ago, then a spike 10x the usual.
    let load = |m: i64| match m - T0 {
        20..30 => 5_000,
        60.. => 500,
        _ => 50,
    };
    let fires_on_the_spike = |stat| {
        let mut rule = AlertRule::new("r", AlertKind::InterceptSpike, 100);
        rule.baseline = stat;
        let mut engine = AlertEngine::new(&AlertsConfig {
            rules: vec![rule],
            ..config()
        });
        warm(&mut engine, T0, |m| intercepts(m, load(m)));
        let messages = run(&mut engine, T0, T0 + 66, |m| intercepts(m, load(m)));
        let firing = |m: &Message| m.alerts.iter().any(|a| a.status == AlertStatus::Firing);
        assert!(
            messages
                .first()
                .is_some_and(|m| firing(m) && m.at_ms < (T0 + 31) * MINUTE_MS),
            "the burst itself fires: {messages:?}"
        );
        messages
            .iter()
            .any(|m| m.at_ms >= (T0 + 60) * MINUTE_MS && firing(m))
    };
    assert!(fires_on_the_spike(BaselineStat::Median));
    assert!(!fires_on_the_spike(BaselineStat::Mean));
}

#[test]
fn other_kinds_count_their_own_tally() {
    let mut rule = AlertRule::new("rate", AlertKind::Rate, 1000);
    rule.factor = 3.0;
    let mut engine = AlertEngine::new(&AlertsConfig {
        rules: vec![rule],
        ..config()
    });
    let counts = |m: i64| {
        let mut counts = intercepts(m, 10_000); // not what a rate rule counts
        counts.requests.total = if m >= T0 + 65 { 2_000 } else { 300 };
        counts
    };
    warm(&mut engine, T0 + 60, counts);
    let messages = run(&mut engine, T0 + 60, T0 + 70, counts);
    assert_eq!(messages.len(), 1);
    let alert = &messages[0].alerts[0];
    assert_eq!(alert.baseline, 1_500.0);
    assert_eq!(
        alert.count,
        2 * 2_000 + 3 * 300,
        "fired when above 3 x 1500"
    );
}

#[test]
fn gaps_are_quiet_minutes_and_old_minutes_are_ignored() {
    let mut engine = AlertEngine::new(&config());
    engine.observe(intercepts(T0, 1));
    engine.observe(intercepts(T0 + 4, 1));
    assert_eq!(engine.history.len(), 5);
    engine.observe(intercepts(T0 + 2, 999_999));
    assert_eq!(engine.next_minute(), Some(T0 + 5));
    assert_eq!(
        engine
            .history
            .iter()
            .map(|m| m.intercepts.total)
            .sum::<u64>(),
        2
    );
}

#[test]
fn memory_is_bounded() {
    let mut engine = AlertEngine::new(&config());
    for minute in T0..T0 + 5_000 {
        let mut counts = MinuteCounts::empty(minute);
        counts.intercepts.reasons = (0..500).map(|i| (format!("r{i}"), i)).collect();
        counts.intercepts.total = 500;
        engine.observe(counts);
    }
    assert_eq!(engine.history.len() as i64, engine.history_minutes());
    assert_eq!(engine.history_minutes(), 65);
    let with_breakdowns = engine
        .history
        .iter()
        .filter(|m| !m.intercepts.reasons.is_empty())
        .count();
    assert_eq!(with_breakdowns, 5, "only the window keeps breakdowns");
    let kept = &engine.history.back().unwrap().intercepts.reasons;
    assert_eq!(kept.len(), MAX_KEYS);
    assert_eq!(kept[0], ("r499".to_string(), 499), "the largest are kept");
}

/// A minute of challenges: `(route, challenged, solved)`.
fn challenges(minute: i64, routes: &[(&str, u64, u64)]) -> MinuteCounts {
    let mut counts = MinuteCounts::empty(minute);
    for &(route, challenged, solved) in routes {
        counts.challenges.total += challenged;
        counts.challenges.routes.push((route.into(), challenged));
        counts.solved.total += solved;
        counts.solved.routes.push((route.into(), solved));
    }
    counts
}

fn solve_rate_rules() -> AlertsConfig {
    AlertsConfig {
        rules: vec![AlertRule {
            factor: 3.0,
            ..AlertRule::new("solve-rate", AlertKind::SolveRate, 50)
        }],
        ..config()
    }
}

#[test]
fn a_collapsed_solve_rate_is_one_incident_naming_its_route() {
    // A campus locked out of the check for an hour: "api" challenges as
    // many devices as before, almost none solve; "vote" and the check as
    // a whole stay healthy; "tiny" collapses but below the volume.
    let lockout = T0 + 90..T0 + 150;
    let minute = |m: i64| {
        let api_solved = if lockout.contains(&m) {
            1
        } else {
            45 + jitter(m, 5)
        };
        let tiny_solved = if lockout.contains(&m) { 0 } else { 2 };
        challenges(
            m,
            &[
                ("", 200, 180 + jitter(m, 10)),
                ("api", 50, api_solved),
                ("vote", 30, 27),
                ("tiny", 3, tiny_solved),
            ],
        )
    };
    let mut engine = AlertEngine::new(&solve_rate_rules());
    warm(&mut engine, T0, minute);
    let messages = run(&mut engine, T0, T0 + 240, minute);
    let statuses = statuses(&messages);
    assert_eq!(statuses.first(), Some(&AlertStatus::Firing), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&AlertStatus::Resolved));
    assert!((2..=4).contains(&statuses.len()), "{statuses:?}");
    let first = &messages[0].alerts[0];
    assert_eq!(first.kind, AlertKind::SolveRate);
    let routes: Vec<&str> = first.solve_rates.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(routes, ["api"], "only the collapsed route with volume");
    let api = &first.solve_rates[0];
    assert!(api.baseline_rate > 0.85, "{api:?}");
    assert!(api.rate < api.baseline_rate / 3.0, "{api:?}");
    assert_eq!(api.challenged, 250, "the window's five minutes");
    assert!(first.from_ms >= (T0 + 86) * MINUTE_MS);
}

#[test]
fn a_solve_rate_needs_volume_and_a_baseline() {
    // Cold start: no baseline minutes, then a rate that is low from the start.
    let mut engine = AlertEngine::new(&solve_rate_rules());
    let low = |m| challenges(m, &[("api", 100, 5)]);
    assert!(run(&mut engine, T0, T0 + 30, low).is_empty());
    // A steady low rate is its own baseline, not a collapse.
    let mut engine = AlertEngine::new(&solve_rate_rules());
    warm(&mut engine, T0, low);
    assert!(run(&mut engine, T0, T0 + 120, low).is_empty());
}
