//! `portcullis console ...`: first-run setup of the console's password.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use portcullis_config::Config;
use portcullis_console::{ConsoleDb, NewAudit, hash_password};

#[derive(Subcommand)]
pub enum ConsoleCommand {
    /// Set (or create) a console user's password in the console database.
    /// The password is read from the first line of standard input, or from
    /// the environment variable named by --password-env.
    SetPassword {
        /// The configuration whose `[console] path` names the database.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The user; `[console] admin_user` by default.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Print an Argon2id hash of a password, for `[console] admin_password_hash`.
    HashPassword {
        #[arg(long)]
        password_env: Option<String>,
    },
}

pub fn run(command: ConsoleCommand) -> anyhow::Result<()> {
    match command {
        ConsoleCommand::SetPassword {
            config,
            user,
            password_env,
        } => set_password(config, user, password_env.as_deref()),
        ConsoleCommand::HashPassword { password_env } => {
            let hash = hash_password(&read_password(password_env.as_deref())?)?;
            println!("{hash}");
            Ok(())
        }
    }
}

fn set_password(
    config: Option<PathBuf>,
    user: Option<String>,
    password_env: Option<&str>,
) -> anyhow::Result<()> {
    let config = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let console = &config.console;
    let user = user.unwrap_or_else(|| console.admin_user.clone());
    let hash = hash_password(&read_password(password_env)?)?;
    let (db, place) = match (&config.store.backend, &config.store.url) {
        (portcullis_config::StoreBackend::Postgres, Some(url)) => {
            let pool = portcullis_store::PgPool::new(&portcullis_store::PgConfig::new(url.clone()))
                .context("invalid [store] url")?;
            let db = ConsoleDb::open_postgres(pool).context("cannot open the console tables")?;
            (db, "PostgreSQL".to_owned())
        }
        _ => {
            let db = ConsoleDb::open(&console.path)
                .with_context(|| format!("cannot open {}", console.path.display()))?;
            (db, console.path.display().to_string())
        }
    };
    db.set_password(&user, &hash)?;
    db.audit(&NewAudit {
        actor: "cli",
        action: "password.set",
        target: &user,
        summary: "password set with `portcullis console set-password`",
        ..NewAudit::default()
    })?;
    eprintln!("password of {user:?} set in {place}; its sessions have ended");
    Ok(())
}

/// The password from the named environment variable, or standard input.
fn read_password(env: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = env {
        return std::env::var(name).with_context(|| format!("{name} is not set"));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("password (it is shown as you type; pipe it in to avoid that):");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password given on standard input");
    Ok(password)
}
