//! A gateway whose event store and console data are in PostgreSQL
//! (`[store] backend = "postgres"`), against a temporary server. Skipped,
//! saying so, when the PostgreSQL server binaries are not installed.

mod common;

use std::time::{Duration, Instant};

use common::{Origin, get, status_of};
use portcullis_config::Config;
use portcullis_gateway::{ConfigSource, Overrides, Services};
use portcullis_store::pg::{TempPostgres, TempPostgresError};
use portcullis_store::{EventFilter, EventStore, PgConfig, PgStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_console_data_go_to_postgres() {
    let server = match TempPostgres::start() {
        Ok(server) => server,
        Err(TempPostgresError::NotInstalled) => {
            eprintln!("SKIPPED: PostgreSQL server binaries are not installed");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let origin = Origin::start().await;
    let hash = portcullis_console::hash_password("correct horse battery").unwrap();
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[events]
log = false
log_passed = true
[store]
backend = "postgres"
url = "{url}"
batch_delay_ms = 20
[console]
admin_password_hash = "{hash}"
[[upstreams]]
url = "{origin}"
"#,
        url = server.url(),
        origin = origin.url(),
    );
    let config = Config::parse(&text).expect("valid");
    // Opened from async code, as the binary does.
    let services = Services::open(&config).expect("store and console open");
    let console = services.console.clone().expect("console on");
    let running = portcullis_gateway::start_with(
        ConfigSource::Fixed(Box::new(config)),
        Overrides::default(),
        services,
    )
    .await
    .expect("gateway starts");

    let answer = get(running.listen, "/a?x=%bf", "").await;
    assert_eq!(status_of(&answer), 403);

    let store = tokio::task::spawn_blocking(move || {
        PgStore::open(&PgConfig::new(server.url())).map(|store| (store, server))
    })
    .await
    .unwrap()
    .expect("a second node opens the same store");
    let (store, _server) = store;
    let started = Instant::now();
    let events = loop {
        let found = store.search(&EventFilter::default()).unwrap();
        if !found.is_empty() {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no event stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(events[0].action, "block");
    let users = tokio::task::spawn_blocking(move || console.user_count())
        .await
        .unwrap();
    assert_eq!(users.unwrap(), 1, "the admin user is in PostgreSQL");
}
