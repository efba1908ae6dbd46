//! Where the configuration comes from: the file or a fixed configuration,
//! the command-line overrides, and the console overlay over them.

use std::net::SocketAddr;
use std::path::PathBuf;

use parking_lot::Mutex;
use portcullis_config::{Config, ConfigError, ConsoleConfig, Overlay, UpstreamConfig};
use portcullis_console::{ConsoleDb, NewAudit};

/// Command-line settings that win over the file, on start and on every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub upstream: Option<String>,
}

impl Overrides {
    pub fn apply(&self, mut config: Config) -> Config {
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(admin) = self.admin {
            config.server.admin = Some(admin);
        }
        if let Some(upstream) = &self.upstream {
            config.upstreams = vec![UpstreamConfig::new(upstream.clone())];
        }
        config
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, watched for changes and re-read on SIGHUP.
    File(PathBuf),
    /// A fixed configuration (defaults plus overrides, or tests).
    Fixed(Box<Config>),
}

impl ConfigSource {
    pub fn load(&self, overrides: &Overrides) -> anyhow::Result<Config> {
        let config = match self {
            ConfigSource::File(path) => Config::load(path)?,
            ConfigSource::Fixed(config) => (**config).clone(),
        };
        Ok(overrides.apply(config))
    }
}

/// Where the configuration comes from, and the parts it is made of.
pub struct Control {
    pub(crate) source: ConfigSource,
    pub(crate) overrides: Overrides,
    pub(crate) parts: Mutex<Parts>,
}

/// The file's configuration last applied, and the overlay in force.
#[derive(Clone)]
pub(crate) struct Parts {
    pub(crate) file: Config,
    pub(crate) overlay: Overlay,
}

impl Control {
    pub fn new(source: ConfigSource, overrides: Overrides, file: Config, overlay: Overlay) -> Self {
        Control {
            source,
            overrides,
            parts: Mutex::new(Parts { file, overlay }),
        }
    }

    /// The file's configuration (with the command-line overrides).
    pub fn file_config(&self) -> Config {
        self.parts.lock().file.clone()
    }

    pub fn overlay(&self) -> Overlay {
        self.parts.lock().overlay.clone()
    }

    /// What `overlay` over the current file would give, validated.
    pub fn check(&self, overlay: &Overlay) -> Result<Config, ConfigError> {
        let file = self.file_config();
        merge(&file, overlay)
    }
}

/// The file with the overlay's sections in place of its own, validated.
/// An empty overlay returns the file, which was validated when loaded.
pub fn merge(file: &Config, overlay: &Overlay) -> Result<Config, ConfigError> {
    if overlay.is_empty() {
        return Ok(file.clone());
    }
    let merged = overlay.apply(file.clone());
    merged.check()?;
    Ok(merged)
}

/// The overlay to start with: the latest saved version, if it still
/// validates over the file. If it does not, the gateway starts with the
/// file alone and says so; the console shows the version as not in force.
pub fn initial_overlay(db: &ConsoleDb, file: &Config) -> Overlay {
    let latest = match db.latest_overlay() {
        Ok(latest) => latest,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the console overlay; starting with the file alone");
            return Overlay::default();
        }
    };
    let Some(latest) = latest else {
        return Overlay::default();
    };
    match merge(file, &latest.document) {
        Ok(_) => latest.document,
        Err(e) => {
            tracing::error!(
                version = latest.version,
                error = %e,
                "the console overlay does not validate over the file; starting with the file alone"
            );
            Overlay::default()
        }
    }
}

/// Says how to log in when no console user exists yet.
pub fn warn_if_no_user(db: &ConsoleDb) {
    if db.user_count().is_ok_and(|n| n == 0) {
        tracing::warn!(
            "the console has no user yet: run `portcullis console set-password` or set [console] admin_password_hash"
        );
    }
}

/// Sets the admin's password from `[console] admin_password_hash`, when
/// given and different, with an audit entry.
pub fn sync_admin_password(db: &ConsoleDb, console: &ConsoleConfig) {
    let Some(hash) = &console.admin_password_hash else {
        return;
    };
    let user = &console.admin_user;
    let outcome = db.sync_password(user, hash).and_then(|changed| {
        if changed {
            db.audit(&NewAudit {
                actor: "config",
                ip: "",
                action: "password.set",
                target: user,
                summary: "password set from [console] admin_password_hash",
                ..NewAudit::default()
            })?;
            tracing::info!(%user, "console password set from the configuration");
        }
        Ok(())
    });
    if let Err(e) = outcome {
        tracing::error!(error = %e, "cannot set the console password from the configuration");
    }
}
