//! `portcullis-simulator` owns the labelled traffic simulator (issue 5):
//! populations of clients — ordinary phone users with the SDK, a coupon
//! farming script, a device farm, emulators, credential stuffing, a slow
//! scraper and the review scanner — driving a running gateway in front of
//! the simulator's own origin, which echoes the risk headers it receives.
//! The report gives, per population, what the gateway did and the rank
//! distribution, and the confusion of abusive vs ordinary by rank >= 3.
//!
//! Pure parts (identities, classification of answers, counting, the
//! report) are separate from the I/O (the origin, the HTTP client, the
//! gateway child process).

mod gateway;
mod http;
mod identity;
mod origin;
mod population;
mod report;
mod sdk;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use portcullis_config::Config;
use tokio::task::JoinSet;

pub use origin::OriginCount;
pub use population::Population;
pub use report::{
    Bands, ClearanceCounts, Confusion, ConfusionRow, HIGH_RANK, PopulationReport, SimReport,
};

use population::Scene;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read the config template {}: {source}", path.display())]
    Template {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the simulation's gateway config is not valid:\n{0}")]
    Config(String),
    #[error("cannot start the origin on {addr}: {source}")]
    Origin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("{0}")]
    Options(String),
}

/// Options of a simulation; embeddable in a CLI as `simulate [...]`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimOptions {
    /// Gateway config template (TOML). For a gateway the simulator starts,
    /// `[[upstreams]]` and `client_ip.trusted_proxies` are filled in.
    #[arg(long, value_name = "FILE", default_value = "bench/simulate.toml")]
    pub config: PathBuf,
    /// Drive an already running gateway (http://HOST:PORT) instead of
    /// starting one; it must trust 127.0.0.1 as a proxy and forward to
    /// --origin-listen.
    #[arg(long, value_name = "URL", requires = "origin_listen")]
    pub target: Option<String>,
    /// Where the simulator's origin listens (default: an ephemeral port).
    #[arg(long, value_name = "ADDR")]
    pub origin_listen: Option<SocketAddr>,
    /// The portcullis binary to start (default: this executable).
    #[arg(long, value_name = "FILE")]
    pub gateway_bin: Option<PathBuf>,
    /// How long the populations send, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub duration_s: f64,
    /// Restart the gateway the simulator started this many seconds into
    /// the run (default: half way; 0: never), with SIGTERM as a deployment
    /// does: it saves its state snapshot and loads it back, and its
    /// challenge secret is kept (as a deployment would configure it).
    #[arg(long, value_name = "SECS")]
    pub restart_at_s: Option<f64>,
    /// Seed of every random choice (identities, request mix, pacing).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Multiplies the number of clients of every population (at least one each).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Only these populations (comma separated; default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub populations: Vec<Population>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// A request without an answer by then counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a simulation and returns its report.
pub async fn run(options: &SimOptions) -> Result<SimReport, SimError> {
    if !(options.duration_s > 0.0 && options.duration_s.is_finite()) {
        return Err(SimError::Options("--duration-s must be positive".into()));
    }
    if !(options.scale > 0.0 && options.scale.is_finite()) {
        return Err(SimError::Options("--scale must be positive".into()));
    }
    let template =
        std::fs::read_to_string(&options.config).map_err(|source| SimError::Template {
            path: options.config.clone(),
            source,
        })?;
    let template_config = Config::parse(&template).map_err(|e| SimError::Config(e.to_string()))?;
    let settings = gateway::Settings::from_config(&template_config);

    let origin_addr = options
        .origin_listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let origin = origin::start(origin_addr, settings.echo_headers.clone())
        .await
        .map_err(|source| SimError::Origin {
            addr: origin_addr,
            source,
        })?;
    let duration = Duration::from_secs_f64(options.duration_s);
    let (target, mut restart) = match &options.target {
        Some(url) => (url.clone(), None),
        None => {
            let snapshot = gateway::TempFile::named("-state.bin");
            let text = gateway::render(&template, origin.addr, &snapshot.0)?;
            Config::parse(&text).map_err(|e| SimError::Config(e.to_string()))?;
            let bin = match &options.gateway_bin {
                Some(bin) => bin.clone(),
                None => std::env::current_exe()
                    .map_err(|e| SimError::Gateway(format!("cannot find this executable: {e}")))?,
            };
            let secret: [u8; 32] = rand::random();
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            let child = Child {
                bin,
                config: gateway::TempFile::write(&text)?,
                _snapshot: snapshot,
                listen: gateway::free_port()?,
                env: vec![(template_config.challenge.secret_env.clone(), hex)],
            };
            let spawned = child.start().await?;
            let at = options
                .restart_at_s
                .unwrap_or(options.duration_s / 2.0)
                .max(0.0);
            (spawned.url.clone(), Some((child, spawned, at)))
        }
    };
    tracing::info!(%target, origin = %origin.addr, "simulation starting");

    let mut not_residential = template_config.risk.ip_types.datacenter.clone();
    not_residential.extend(template_config.risk.ip_types.proxy.iter().copied());
    not_residential.extend(template_config.traffic.scanner.ips.iter().copied());
    let scene = Arc::new(Scene {
        gateway: http::Gateway::new(&target, REQUEST_TIMEOUT),
        deadline: Instant::now() + duration,
        start_spread: (duration / 4).min(Duration::from_secs(3)),
        bands: settings.bands,
        risk_headers: settings.risk_headers.clone(),
        datacenter: settings.datacenter,
        not_residential,
        scanner_ips: settings.scanner_ips.clone(),
        scanner_user_agent: settings.scanner_user_agent.clone(),
        account_header: settings.account_header.clone(),
        seed: options.seed,
        captured: std::sync::Mutex::new(Vec::new()),
    });
    let populations = chosen(&options.populations);
    let mut tasks = JoinSet::new();
    for &population in &populations {
        for index in 0..population.clients(options.scale) {
            let scene = Arc::clone(&scene);
            let seed = options.seed;
            tasks.spawn(async move {
                let report = population::run_client(&scene, population, index, seed).await;
                (population, report)
            });
        }
    }
    let mut restarts = 0;
    if let Some((child, spawned, at)) = restart.take()
        && at > 0.0
        && at < options.duration_s
    {
        tokio::time::sleep(Duration::from_secs_f64(at)).await;
        spawned.stop().await;
        let respawned = child.start().await?;
        restarts += 1;
        restart = Some((child, respawned, 0.0));
    } else {
        restart = restart.take();
    }
    let mut merged: BTreeMap<Population, PopulationReport> = populations
        .iter()
        .map(|p| (*p, PopulationReport::new(p.name(), p.abusive())))
        .collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((population, report)) => {
                if let Some(total) = merged.get_mut(&population) {
                    total.merge(&report);
                }
            }
            Err(e) => tracing::warn!(error = %e, "a simulated client failed"),
        }
    }
    let origin_counts = origin
        .counts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut reports: Vec<PopulationReport> = merged.into_values().collect();
    for report in &mut reports {
        if let Some(count) = origin_counts.get(report.name.as_str()) {
            report.origin = count.clone();
        }
    }
    drop(restart);
    let mut notes = notes(&settings, &reports);
    if restarts > 0 {
        notes.push(format!(
            "the gateway was restarted {restarts} time(s) during the run (SIGTERM; its state kept in its snapshot, as a deployment keeps it)"
        ));
    }
    Ok(SimReport::new(
        target,
        options.seed,
        options.duration_s,
        settings.bands,
        reports,
        notes,
    ))
}

/// How to (re)start the gateway under test.
struct Child {
    bin: PathBuf,
    config: gateway::TempFile,
    /// Where the gateway keeps its state across the restart; held so that
    /// the file goes when the run ends.
    _snapshot: gateway::TempFile,
    listen: SocketAddr,
    env: Vec<(String, String)>,
}

impl Child {
    async fn start(&self) -> Result<gateway::Spawned, SimError> {
        // A killed gateway's port can take a moment to come free.
        let mut last = None;
        for _ in 0..20 {
            match gateway::spawn(&self.bin, &self.config.0, self.listen, &self.env).await {
                Ok(spawned) => return Ok(spawned),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| SimError::Gateway("cannot start".into())))
    }
}

/// The populations asked for, in the fixed order, each once.
fn chosen(asked: &[Population]) -> Vec<Population> {
    Population::ALL
        .into_iter()
        .filter(|p| asked.is_empty() || asked.contains(p))
        .collect()
}

/// What a reader of the report should know about this run.
fn notes(settings: &gateway::Settings, reports: &[PopulationReport]) -> Vec<String> {
    let mut notes = Vec::new();
    if !settings.datacenter_configured {
        notes.push(format!(
            "risk.ip_types.datacenter names no IPv4 range: the coupon script ran from {}, which the gateway does not know as a datacenter",
            settings.datacenter
        ));
    }
    if settings.bands.challenge_at.is_none() && settings.bands.intercept_at.is_none() {
        notes.push(
            "the /api/ policy neither challenges nor intercepts: only echoed ranks count".into(),
        );
    }
    let clearances = reports
        .iter()
        .fold(ClearanceCounts::default(), |mut all, r| {
            all.obtained += r.clearances.obtained;
            all.unavailable += r.clearances.unavailable;
            all
        });
    if clearances.obtained == 0 && clearances.unavailable > 0 {
        notes.push(
            "no challenge service answered under /.portcullis/: the SDK clients ran without clearances"
                .into(),
        );
    }
    let ranked: u64 = reports.iter().map(|r| r.ranks.iter().sum::<u64>()).sum();
    let passed: u64 = reports.iter().map(|r| r.passed).sum();
    if passed > 0 && ranked == 0 {
        notes.push(
            "no request reached the origin with a risk rank header: the gateway does not write risk headers on /api/ (yet)"
                .into(),
        );
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populations_are_chosen_in_order_once() {
        assert_eq!(chosen(&[]).len(), Population::ALL.len());
        assert_eq!(
            chosen(&[
                Population::ReviewScanner,
                Population::Ordinary,
                Population::Ordinary
            ]),
            [Population::Ordinary, Population::ReviewScanner]
        );
    }

    #[test]
    fn options_parse_from_a_command_line() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            options: SimOptions,
        }
        let cli = Cli::parse_from([
            "x",
            "--duration-s",
            "5",
            "--populations",
            "ordinary,coupon-farm",
            "--scale",
            "0.5",
        ]);
        assert_eq!(cli.options.duration_s, 5.0);
        assert_eq!(
            cli.options.populations,
            [Population::Ordinary, Population::CouponFarm]
        );
        assert!(Cli::try_parse_from(["x", "--target", "http://127.0.0.1:1"]).is_err());
    }
}
