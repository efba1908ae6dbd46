//! `[store]`: where decision events and their minute rollups are kept, and
//! `[console]`: the admin console's database, first password and sessions.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::Checker;

/// Where events (and, with PostgreSQL, the console's data) are kept.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// One embedded SQLite file per node.
    Sqlite,
    /// PostgreSQL 13 or newer, shared by every node: events, and the
    /// console's users, sessions, tokens, audit log and policy versions.
    Postgres,
}

/// The event store. Changes need a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Write decision events to the store (the console's dashboard and log).
    pub enabled: bool,
    /// `sqlite` or `postgres`.
    pub backend: StoreBackend,
    /// SQLite file, relative to the working directory.
    pub path: PathBuf,
    /// PostgreSQL connection URL (`postgres://user:password@host:5432/db`),
    /// for `backend = "postgres"`; Portcullis wants a database of its own.
    /// TLS as libpq takes it: `?sslmode=verify-full&sslrootcert=/path/ca.pem`
    /// (or `disable`, `prefer`, `require`, `verify-ca`).
    pub url: Option<String>,
    /// Disk budget of the events, in MiB: beyond it the oldest events are
    /// dropped, and counted, whatever their age (0: no budget). PostgreSQL
    /// drops whole past days; size it for two days of traffic at least.
    pub max_mib: u64,
    /// Events kept in memory while PostgreSQL is unreachable, written when
    /// it is back; beyond it the oldest are dropped and counted.
    pub spool: usize,
    /// Keep events this many days.
    pub events_days: u32,
    /// Keep minute rollups this many days.
    pub rollups_days: u32,
    /// Events waiting for the writer; beyond it they are dropped and counted.
    pub queue: usize,
    /// Events per transaction at most.
    pub batch_size: usize,
    /// How long the first event of a batch waits for others, in milliseconds.
    pub batch_delay_ms: u64,
    /// Also count requests that passed with no signal, so the dashboard
    /// counts every request: per minute, class and client key, with
    /// `[events] pass_sample` of them stored as rows.
    pub record_passed: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            backend: StoreBackend::Sqlite,
            path: PathBuf::from("portcullis.db"),
            url: None,
            max_mib: 8192,
            spool: 50_000,
            events_days: 7,
            rollups_days: 90,
            queue: 32_768,
            batch_size: 5_000,
            batch_delay_ms: 100,
            record_passed: true,
        }
    }
}

/// The admin console on the admin listener. Changes need a restart, except
/// `admin_password_hash`, which is applied on every reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console (web UI and `/api/`) on the admin listener.
    pub enabled: bool,
    /// SQLite file of users, sessions, API tokens, the audit log and the
    /// versioned policy overlay.
    pub path: PathBuf,
    /// The user `admin_password_hash` belongs to.
    pub admin_user: String,
    /// Argon2id hash (PHC string, `$argon2id$...`) of the admin's password,
    /// from `portcullis console hash-password`. Unset: set the password with
    /// `portcullis console set-password`.
    pub admin_password_hash: Option<String>,
    /// How long a login lasts, in seconds.
    pub session_ttl_s: u64,
    /// Mark the session cookie `Secure` (the admin listener is behind TLS).
    pub secure_cookie: bool,
    /// Failed logins allowed per client address within `login_window_s`.
    pub login_attempts: u32,
    pub login_window_s: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            path: PathBuf::from("portcullis-console.db"),
            admin_user: "admin".into(),
            admin_password_hash: None,
            session_ttl_s: 12 * 3600,
            secure_cookie: false,
            login_attempts: 10,
            login_window_s: 300,
        }
    }
}

/// The smallest disk budget: below it the schema alone would be "over".
const MIN_BUDGET_MIB: u64 = 16;

pub(crate) fn check_store(store: &StoreConfig, c: &mut Checker) {
    c.check(
        !store.path.as_os_str().is_empty(),
        "store.path",
        "must name a file",
    );
    c.check(
        store.backend != StoreBackend::Postgres
            || store.url.as_deref().is_some_and(|u| !u.trim().is_empty()),
        "store.url",
        "backend = \"postgres\" needs the database URL",
    );
    c.check(
        store.max_mib == 0 || store.max_mib >= MIN_BUDGET_MIB,
        "store.max_mib",
        "must be 0 (no budget) or at least 16",
    );
    c.check(
        store.events_days >= 1,
        "store.events_days",
        "must be at least 1",
    );
    c.check(
        store.rollups_days >= 1,
        "store.rollups_days",
        "must be at least 1",
    );
    c.check(store.queue >= 1, "store.queue", "must be at least 1");
    c.check(
        (1..=100_000).contains(&store.batch_size),
        "store.batch_size",
        "must be between 1 and 100000",
    );
    c.check(
        (1..=10_000).contains(&store.batch_delay_ms),
        "store.batch_delay_ms",
        "must be between 1 and 10000",
    );
}

pub(crate) fn check_console(console: &ConsoleConfig, c: &mut Checker) {
    c.check(
        !console.path.as_os_str().is_empty(),
        "console.path",
        "must name a file",
    );
    c.check(
        !console.admin_user.trim().is_empty() && console.admin_user.len() <= 64,
        "console.admin_user",
        "must be a name of 1 to 64 characters",
    );
    c.check(
        console
            .admin_password_hash
            .as_deref()
            .is_none_or(|h| h.starts_with("$argon2id$")),
        "console.admin_password_hash",
        "must be an Argon2id hash ($argon2id$...) from `portcullis console hash-password`",
    );
    c.check(
        console.session_ttl_s >= 60,
        "console.session_ttl_s",
        "must be at least 60",
    );
    c.check(
        console.login_attempts >= 1 && console.login_window_s >= 1,
        "console.login_attempts",
        "login_attempts and login_window_s must be at least 1",
    );
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn postgres_needs_a_url_and_a_budget_has_a_floor() {
        let text = "[store]\nbackend = \"postgres\"\nmax_mib = 1\n";
        let errors = Config::parse(text).unwrap_err().field_errors();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["store.url", "store.max_mib"]);
        let ok = "[store]\nbackend = \"postgres\"\nurl = \"postgres://pc@db/pc\"\n";
        let config = Config::parse(ok).unwrap();
        assert_eq!(config.store.backend, crate::StoreBackend::Postgres);
    }

    #[test]
    fn store_and_console_errors_name_their_fields() {
        let text = "[store]\nbatch_size = 0\n[console]\nadmin_password_hash = \"plain\"\n";
        let errors = Config::parse(text).unwrap_err().field_errors();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["store.batch_size", "console.admin_password_hash"]);
        assert_eq!(errors[1].line, Some(4));
    }
}
