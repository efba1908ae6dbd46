//! The SQLite backend against real database files.

mod common;

use common::{T0, TempDir, challenges, pass, sample, sample_tally, solve_rate_of};
use portcullis_store::{
    ActionKind, EventFilter, EventStore, Retention, RollupGroup, RollupQuery, SqliteStore,
    StoreError, StoredEvent, TopField, TopOrder, TopQuery, TrialQuery, minute_of,
};

fn open_with_sample(dir: &TempDir) -> SqliteStore {
    let store = SqliteStore::open(dir.db()).unwrap();
    assert_eq!(store.write_batch(&sample()).unwrap(), 60);
    store
}

fn search(store: &SqliteStore, f: EventFilter) -> Vec<StoredEvent> {
    store.search(&f).unwrap()
}

#[test]
fn migrates_once_and_refuses_newer_schema() {
    let dir = TempDir::new("migrate");
    {
        let store = SqliteStore::open(dir.db()).unwrap();
        assert_eq!(store.schema_version().unwrap(), 3);
        store.write_batch(&[pass(T0, 1)]).unwrap();
    }
    let store = SqliteStore::open(dir.db()).unwrap();
    assert_eq!(store.search(&EventFilter::default()).unwrap().len(), 1);
    drop(store);
    let conn = rusqlite_set_version(&dir, 99);
    drop(conn);
    match SqliteStore::open(dir.db()) {
        Err(StoreError::SchemaTooNew {
            found: 99,
            supported: 3,
        }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a newer schema"),
    }
}

#[test]
fn follows_each_challenged_device_to_the_check() {
    let dir = TempDir::new("solve-rate");
    let store = SqliteStore::open(dir.db()).unwrap();
    store.write_batch(&challenges()).unwrap();
    let minute = T0 / 60_000;
    let row = |route: &str, minute, counts: [u64; 4]| portcullis_store::ChallengeMinute {
        route: route.into(),
        minute,
        challenged: counts[0],
        solved: counts[1],
        failed: counts[2],
        limited: counts[3],
    };
    let got = solve_rate_of(&store, Some("scanner"));
    assert_eq!(
        got,
        [
            // The check's own answers: 2 issued + 1 limited asked for, 2 minted
            // (one of them after the range, not counted), 1 refused.
            row("", minute, [3, 1, 1, 1]),
            row("coupon", minute, [4, 1, 1, 1]),
            // Its clearance came after the window.
            row("coupon", minute + 1, [1, 0, 0, 0]),
        ]
    );
    assert_eq!(got[1].solve_rate(), Some(0.25));
    let with_scanners = solve_rate_of(&store, None);
    assert_eq!(with_scanners.len(), 4);
    assert_eq!(with_scanners[1], row("", minute + 1, [0, 1, 0, 0]));
    assert_eq!(with_scanners[3], row("coupon", minute + 1, [2, 1, 0, 0]));
}

fn rusqlite_set_version(dir: &TempDir, v: i64) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.pragma_update(None, "user_version", v).unwrap();
    conn
}

#[test]
fn round_trips_every_field() {
    let dir = TempDir::new("roundtrip");
    let store = open_with_sample(&dir);
    let want = &sample()[2];
    let got = store.get(&want.request_id).unwrap().unwrap();
    assert!(got.id.is_some());
    assert_eq!(StoredEvent { id: None, ..got }, *want);
    assert_eq!(store.get("nope").unwrap(), None);
}

#[test]
fn search_is_newest_first_and_pages_by_cursor() {
    let dir = TempDir::new("page");
    let store = open_with_sample(&dir);
    let first = search(
        &store,
        EventFilter {
            limit: 25,
            ..Default::default()
        },
    );
    assert_eq!(first.len(), 25);
    assert_eq!(first[0].ts_ms, T0 + 59 * 3_000);
    assert!(first.windows(2).all(|w| w[0].id > w[1].id));
    let mut seen = first.len();
    let mut cursor = first.last().unwrap().id;
    loop {
        let page = search(
            &store,
            EventFilter {
                limit: 25,
                before_id: cursor,
                ..Default::default()
            },
        );
        if page.is_empty() {
            break;
        }
        seen += page.len();
        cursor = page.last().unwrap().id;
    }
    assert_eq!(seen, 60);
    let capped = search(
        &store,
        EventFilter {
            limit: 5000,
            ..Default::default()
        },
    );
    assert_eq!(capped.len(), 60);
}

#[test]
fn search_filters_match_exactly() {
    let dir = TempDir::new("filters");
    let store = open_with_sample(&dir);
    let count = |f: EventFilter| search(&store, f).len();
    assert_eq!(
        count(EventFilter {
            cid: Some("cid-8".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(EventFilter {
            device: Some("dev-1".into()),
            ..Default::default()
        }),
        10
    );
    assert_eq!(
        count(EventFilter {
            account: Some("acct-7".into()),
            ..Default::default()
        }),
        10
    );
    assert_eq!(
        count(EventFilter {
            client_ip: Some("198.51.100.1".into()),
            ..Default::default()
        }),
        10
    );
    assert_eq!(
        count(EventFilter {
            route: Some("coupon".into()),
            ..Default::default()
        }),
        10
    );
    assert_eq!(
        count(EventFilter {
            rule: Some("sqli".into()),
            ..Default::default()
        }),
        10
    );
    assert_eq!(
        count(EventFilter {
            rule: Some("rank-band-3".into()),
            ..Default::default()
        }),
        10
    );
    assert_eq!(
        count(EventFilter {
            action: Some("block".into()),
            ..Default::default()
        }),
        20
    );
    assert_eq!(
        count(EventFilter {
            action: Some("pass".into()),
            ..Default::default()
        }),
        30
    );
    assert_eq!(
        count(EventFilter {
            kind: Some(ActionKind::Intercept),
            ..Default::default()
        }),
        20
    );
    assert_eq!(
        count(EventFilter {
            kind: Some(ActionKind::Challenge),
            ..Default::default()
        }),
        10
    );
    assert_eq!(
        count(EventFilter {
            class: Some("scanner".into()),
            ..Default::default()
        }),
        10
    );
    let no_scanner = EventFilter {
        kind: Some(ActionKind::Intercept),
        exclude_class: Some("scanner".into()),
        ..Default::default()
    };
    assert!(
        search(&store, no_scanner)
            .iter()
            .all(|e| e.rule.as_deref() == Some("sqli"))
    );
    let both = EventFilter {
        route: Some("login".into()),
        client_ip: Some("198.51.100.1".into()),
        action: Some("block".into()),
        ..Default::default()
    };
    assert_eq!(count(both), 10);
}

#[test]
fn key_searches_page_across_buckets() {
    let dir = TempDir::new("keyed");
    let store = SqliteStore::open(dir.db()).unwrap();
    // One event every 7 s for 20 minutes: ~170 key buckets, 4 IPs.
    let events: Vec<_> = (0..172).map(|n| pass(T0 + n as i64 * 7_000, n)).collect();
    store.write_batch(&events).unwrap();
    let ip = events[5].client_ip.clone();
    let want: Vec<i64> = {
        let mut ts: Vec<i64> = events
            .iter()
            .filter(|e| e.client_ip == ip)
            .map(|e| e.ts_ms)
            .collect();
        ts.reverse();
        ts
    };
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let f = EventFilter {
            client_ip: Some(ip.clone()),
            limit: 10,
            before_id: cursor,
            ..Default::default()
        };
        let page = search(&store, f);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        cursor = page.last().unwrap().id;
        got.extend(page.iter().map(|e| e.ts_ms));
    }
    assert_eq!(got, want);
    let window = EventFilter {
        client_ip: Some(ip.clone()),
        from_ms: Some(T0 + 60_000),
        to_ms: Some(T0 + 120_000),
        ..Default::default()
    };
    let in_window = search(&store, window);
    let expected = want
        .iter()
        .filter(|t| (T0 + 60_000..T0 + 120_000).contains(*t))
        .count();
    assert_eq!(in_window.len(), expected);
    assert!(expected > 0);
    let top = store
        .top(&TopQuery {
            field: TopField::ClientIp,
            from_ms: T0,
            to_ms: T0 + 3_600_000,
            limit: 10,
            order: TopOrder::Requests,
            exclude_class: None,
        })
        .unwrap();
    assert_eq!(top.iter().map(|e| e.requests).sum::<u64>(), 172);
}

#[test]
fn search_time_range_is_inclusive_exclusive() {
    let dir = TempDir::new("time");
    let store = open_with_sample(&dir);
    let minute = EventFilter {
        from_ms: Some(T0 + 60_000),
        to_ms: Some(T0 + 120_000),
        ..Default::default()
    };
    let got = search(&store, minute);
    assert_eq!(got.len(), 20);
    assert!(
        got.iter()
            .all(|e| (T0 + 60_000..T0 + 120_000).contains(&e.ts_ms))
    );
    let one = EventFilter {
        from_ms: Some(T0 + 3_000),
        to_ms: Some(T0 + 3_001),
        ..Default::default()
    };
    assert_eq!(search(&store, one).len(), 1);
}

#[test]
fn search_uses_the_filter_indexes() {
    let dir = TempDir::new("plan");
    let store = open_with_sample(&dir);
    let plan = |f: EventFilter| store.explain_search(&f).unwrap();
    let cases = [
        (
            EventFilter {
                cid: Some("c".into()),
                ..Default::default()
            },
            "SEARCH k USING PRIMARY KEY (bucket=? AND key=?)",
        ),
        (
            EventFilter {
                device: Some("d".into()),
                ..Default::default()
            },
            "SEARCH k USING PRIMARY KEY",
        ),
        (
            EventFilter {
                account: Some("a".into()),
                from_ms: Some(T0),
                ..Default::default()
            },
            "SEARCH k USING PRIMARY KEY",
        ),
        (
            EventFilter {
                client_ip: Some("i".into()),
                kind: Some(ActionKind::Intercept),
                ..Default::default()
            },
            "SEARCH k USING PRIMARY KEY",
        ),
        (
            EventFilter {
                rule: Some("r".into()),
                ..Default::default()
            },
            "events_rule",
        ),
        (
            EventFilter {
                route: Some("r".into()),
                ..Default::default()
            },
            "events_route",
        ),
        (
            EventFilter {
                action: Some("block".into()),
                ..Default::default()
            },
            "events_stopped",
        ),
        (
            EventFilter {
                kind: Some(ActionKind::Intercept),
                ..Default::default()
            },
            "events_stopped",
        ),
    ];
    for (filter, index) in cases {
        let p = plan(filter.clone());
        assert!(p.contains(index), "{filter:?}: {p}");
        // A key probe sorts only the few rows it found; others never sort.
        let keyed = p.contains("SEARCH k USING PRIMARY KEY");
        assert!(keyed || !p.contains("TEMP B-TREE"), "{filter:?} sorts: {p}");
    }
    let time = plan(EventFilter {
        from_ms: Some(T0),
        to_ms: Some(T0 + 1),
        ..Default::default()
    });
    assert!(
        time.contains("INTEGER PRIMARY KEY") && !time.contains("TEMP B-TREE"),
        "{time}"
    );
}

#[test]
fn rollups_count_each_event_once_per_minute() {
    let dir = TempDir::new("rollups");
    let store = open_with_sample(&dir);
    let m0 = minute_of(T0);
    let query = |group_by, kind, exclude: Option<&str>| RollupQuery {
        from_minute: m0,
        to_minute: m0 + 3,
        group_by,
        kind,
        route: None,
        exclude_class: exclude.map(Into::into),
    };
    let by_action = store
        .rollups(&query(RollupGroup::Action, None, None))
        .unwrap();
    let totals: Vec<(&str, u64)> = by_action
        .iter()
        .map(|s| (s.key.as_str(), s.total()))
        .collect();
    assert_eq!(totals, [("block", 20), ("challenge", 10), ("pass", 30)]);
    let pass = by_action.iter().find(|s| s.key == "pass").unwrap();
    let per_minute = |m: i64| {
        let events = sample();
        events
            .iter()
            .filter(|e| e.action == "pass" && minute_of(e.ts_ms) == m)
            .count() as u64
    };
    let want: Vec<(i64, u64)> = (m0..m0 + 3).map(|m| (m, per_minute(m))).collect();
    assert_eq!(pass.points, want);

    let reasons = store
        .rollups(&query(
            RollupGroup::Reason,
            Some(ActionKind::Intercept),
            Some("scanner"),
        ))
        .unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!((reasons[0].key.as_str(), reasons[0].total()), ("sqli", 10));

    let by_route = store
        .rollups(&query(RollupGroup::Route, None, None))
        .unwrap();
    let routes: Vec<(&str, u64)> = by_route
        .iter()
        .map(|s| (s.key.as_str(), s.total()))
        .collect();
    assert_eq!(routes, [("", 40), ("coupon", 10), ("login", 10)]);

    let later = RollupQuery {
        from_minute: m0 + 1,
        to_minute: m0 + 2,
        ..query(RollupGroup::Class, None, None)
    };
    let classes: u64 = store
        .rollups(&later)
        .unwrap()
        .iter()
        .map(|s| s.total())
        .sum();
    assert_eq!(classes, 20);
}

#[test]
fn rollups_add_up_across_batches() {
    let dir = TempDir::new("upsert");
    let store = SqliteStore::open(dir.db()).unwrap();
    for batch in 0..3 {
        let events: Vec<_> = (0..7)
            .map(|n| pass(T0 + n, batch * 10 + n as usize))
            .collect();
        store.write_batch(&events).unwrap();
    }
    let q = RollupQuery {
        from_minute: minute_of(T0),
        to_minute: minute_of(T0) + 1,
        group_by: RollupGroup::Layer,
        kind: Some(ActionKind::Pass),
        route: None,
        exclude_class: None,
    };
    let series = store.rollups(&q).unwrap();
    assert_eq!(series[0].points, [(minute_of(T0), 21)]);
}

#[test]
fn top_ranks_by_requests_and_by_intercepts() {
    let dir = TempDir::new("top");
    let store = open_with_sample(&dir);
    let q = |field, order, exclude: Option<&str>| TopQuery {
        field,
        from_ms: T0,
        to_ms: T0 + 180_000,
        limit: 3,
        order,
        exclude_class: exclude.map(Into::into),
    };
    let ips = store
        .top(&q(TopField::ClientIp, TopOrder::Requests, None))
        .unwrap();
    assert_eq!(ips.len(), 3);
    assert!(ips.windows(2).all(|w| w[0].requests >= w[1].requests));
    let blockers = store
        .top(&q(TopField::ClientIp, TopOrder::Intercepts, None))
        .unwrap();
    let keys: Vec<(&str, u64, u64)> = blockers
        .iter()
        .map(|e| (e.key.as_str(), e.requests, e.intercepts))
        .collect();
    assert_eq!(keys, [("198.51.100.1", 10, 10), ("203.0.113.9", 10, 10)]);
    let real = store
        .top(&q(
            TopField::ClientIp,
            TopOrder::Intercepts,
            Some("scanner"),
        ))
        .unwrap();
    assert_eq!(real.len(), 1);
    let routes = store
        .top(&q(TopField::Route, TopOrder::Requests, None))
        .unwrap();
    let keys: Vec<(&str, u64, u64)> = routes
        .iter()
        .map(|e| (e.key.as_str(), e.requests, e.intercepts))
        .collect();
    assert_eq!(keys, [("coupon", 10, 0), ("login", 10, 10)]);
    let devices = store
        .top(&q(TopField::Device, TopOrder::Requests, None))
        .unwrap();
    assert_eq!(devices[0].key, "dev-1");
    assert_eq!(devices[0].requests, 10);
}

#[test]
fn counted_passes_count_in_totals_and_top_lists() {
    let dir = TempDir::new("tally");
    let store = open_with_sample(&dir);
    store.write_tally(&sample_tally()).unwrap();
    let m0 = minute_of(T0);
    let by = |group_by, exclude: Option<&str>| {
        let q = RollupQuery {
            from_minute: m0,
            to_minute: m0 + 3,
            group_by,
            kind: None,
            route: None,
            exclude_class: exclude.map(Into::into),
        };
        let series = store.rollups(&q).unwrap();
        series
            .iter()
            .map(|s| (s.key.clone(), s.total()))
            .collect::<Vec<_>>()
    };
    let totals = by(RollupGroup::Action, None);
    assert!(totals.contains(&("pass".into(), 30 + 45)), "{totals:?}");
    let without_crawlers = by(RollupGroup::Action, Some("crawler"));
    assert!(
        without_crawlers.contains(&("pass".into(), 30 + 40)),
        "{without_crawlers:?}"
    );
    let q = |field, order, exclude: Option<&str>| TopQuery {
        field,
        from_ms: T0,
        to_ms: T0 + 180_000,
        limit: 3,
        order,
        exclude_class: exclude.map(Into::into),
    };
    let ips = store
        .top(&q(TopField::ClientIp, TopOrder::Requests, None))
        .unwrap();
    assert_eq!(
        (ips[0].key.as_str(), ips[0].requests, ips[0].intercepts),
        ("192.0.2.50", 30, 0)
    );
    let blocked = ips.iter().find(|e| e.key == "198.51.100.1").unwrap();
    assert_eq!((blocked.requests, blocked.intercepts), (17, 10));
    let blockers = store
        .top(&q(TopField::ClientIp, TopOrder::Intercepts, None))
        .unwrap();
    assert_eq!(
        (blockers[0].key.as_str(), blockers[0].requests),
        ("198.51.100.1", 17),
        "its requests count its counted passes"
    );
    let accounts = store
        .top(&q(TopField::Account, TopOrder::Requests, Some("crawler")))
        .unwrap();
    assert!(accounts.iter().all(|e| e.key != "acct-9"), "{accounts:?}");
    let later = TopQuery {
        from_ms: T0 + 120_000,
        ..q(TopField::ClientIp, TopOrder::Requests, None)
    };
    let later = store.top(&later).unwrap();
    assert!(
        later.iter().all(|e| e.key != "192.0.2.50"),
        "outside the window: {later:?}"
    );
}

#[test]
fn counted_passes_expire_with_the_events() {
    let dir = TempDir::new("tally-retention");
    let store = SqliteStore::open(dir.db()).unwrap();
    store.write_tally(&sample_tally()).unwrap();
    let policy = Retention {
        events_days: 1,
        rollups_days: 90,
        chunk: 2,
        max_bytes: None,
    };
    let day = 86_400_000;
    let top = TopQuery {
        field: TopField::ClientIp,
        from_ms: T0,
        to_ms: T0 + 180_000,
        limit: 3,
        order: TopOrder::Requests,
        exclude_class: None,
    };
    store.retention(&policy, T0 + day / 2).unwrap();
    assert_eq!(store.top(&top).unwrap().len(), 2, "not expired yet");
    let first = store.retention_step(&policy, T0 + 2 * day).unwrap();
    assert!(first.more, "a full chunk asks for more");
    store.retention(&policy, T0 + 2 * day).unwrap();
    assert!(store.top(&top).unwrap().is_empty());
}

#[test]
fn retention_deletes_in_chunks() {
    let dir = TempDir::new("retention");
    let store = SqliteStore::open(dir.db()).unwrap();
    let day = 86_400_000;
    let old: Vec<_> = (0..25)
        .map(|n| pass(T0 - 10 * day + n as i64 * 60_000, n))
        .collect();
    let new: Vec<_> = (0..5).map(|n| pass(T0 + n as i64, 100 + n)).collect();
    store.write_batch(&old).unwrap();
    store.write_batch(&new).unwrap();
    let policy = Retention {
        events_days: 7,
        rollups_days: 9,
        chunk: 10,
        max_bytes: None,
    };
    let first = store.retention_step(&policy, T0).unwrap();
    assert_eq!((first.events, first.rollups, first.more), (10, 10, true));
    let rest = store.retention(&policy, T0).unwrap();
    assert_eq!((rest.events, rest.rollups, rest.more), (15, 15, false));
    assert_eq!(store.search(&EventFilter::default()).unwrap().len(), 5);
    let all = RollupQuery {
        from_minute: 0,
        to_minute: i64::MAX,
        group_by: RollupGroup::Action,
        kind: None,
        route: None,
        exclude_class: None,
    };
    assert_eq!(store.rollups(&all).unwrap()[0].total(), 5);
}

#[test]
fn same_millisecond_after_restart_keeps_every_event() {
    let dir = TempDir::new("ids");
    for round in 0..2 {
        let store = SqliteStore::open(dir.db()).unwrap();
        let events: Vec<_> = (0..5).map(|n| pass(T0, round * 10 + n)).collect();
        assert_eq!(store.write_batch(&events).unwrap(), 5);
    }
    let store = SqliteStore::open(dir.db()).unwrap();
    assert_eq!(store.search(&EventFilter::default()).unwrap().len(), 10);
}

#[test]
fn trial_counts_what_log_only_policies_would_have_stopped() {
    let dir = TempDir::new("trial");
    let store = open_with_sample(&dir);
    let trial = |n: usize, would: &str| StoredEvent {
        route: Some("vote".into()),
        would: Some(would.into()),
        ..pass(T0 + 200_000 + n as i64, 100 + n)
    };
    let batch = [
        trial(0, "intercept"),
        trial(1, "intercept"),
        trial(2, "challenge"),
    ];
    store.write_batch(&batch).unwrap();
    let counts = store
        .trial(&TrialQuery {
            from_ms: T0,
            to_ms: T0 + 300_000,
        })
        .unwrap();
    let got: Vec<_> = counts
        .iter()
        .map(|c| (c.route.as_str(), c.would.as_str(), c.events))
        .collect();
    assert_eq!(got, [("vote", "intercept", 2), ("vote", "challenge", 1)]);
    let none = store
        .trial(&TrialQuery {
            from_ms: T0 + 300_000,
            to_ms: T0 + 400_000,
        })
        .unwrap();
    assert!(none.is_empty());
    let listed = search(
        &store,
        EventFilter {
            trial: true,
            route: Some("vote".into()),
            ..EventFilter::default()
        },
    );
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed[0].would.as_deref(),
        Some("challenge"),
        "newest first"
    );
    assert_eq!(
        store
            .get(&batch[0].request_id)
            .unwrap()
            .unwrap()
            .would
            .as_deref(),
        Some("intercept")
    );
}
