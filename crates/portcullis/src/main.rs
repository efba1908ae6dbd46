//! The `portcullis` command: run the gateway, check a configuration, and
//! replay attack corpora against a running gateway.

mod console_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use portcullis_config::Config;
use portcullis_gateway::{ConfigSource, Overrides};

/// A request allocates and frees small buffers on every core at once;
/// glibc's allocator spent about a tenth of the gateway's user CPU
/// consolidating and unlinking them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "A self-hosted security gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway in front of an origin.
    Run {
        /// Configuration file (TOML); reloaded when it changes and on SIGHUP.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data listener address, e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Origin to protect, e.g. http://127.0.0.1:3000. Without it and
        /// without a config, a demo origin inside the binary is used.
        #[arg(long)]
        upstream: Option<String>,
        /// Admin listener address (metrics, health, console).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Validate a configuration file; prints every error, exits non-zero on error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Benchmarks against a running gateway.
    #[command(subcommand)]
    Bench(Bench),
    /// The console's users: first-run password setup.
    #[command(subcommand)]
    Console(console_cmd::ConsoleCommand),
    /// Drive a gateway with labelled populations (phone users, farms,
    /// scripts, the review scanner) and report the ranks each one got.
    Simulate(portcullis_simulator::SimOptions),
}

#[derive(Subcommand)]
enum Bench {
    /// Replay the benchmark corpora (normal traffic, HttpParamsDataset, mgm,
    /// GoTestWAF) through a gateway: attacks stopped, normal requests
    /// flagged, by category, status and signal.
    Corpus(portcullis_corpus::BenchOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run {
            config,
            listen,
            upstream,
            admin,
        } => run(
            config,
            Overrides {
                listen,
                admin,
                upstream,
            },
        ),
        Command::Check { config } => return check(&config),
        Command::Console(command) => console_cmd::run(command),
        Command::Bench(Bench::Corpus(options)) => bench_corpus(options),
        Command::Simulate(options) => simulate(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(config: Option<PathBuf>, mut overrides: Overrides) -> anyhow::Result<()> {
    let source = match &config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Fixed(Box::default()),
    };
    let initial = source.load(&overrides)?;
    // The data path runs on its own worker threads; this runtime only serves
    // the admin listener, reloads and signals.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if initial.upstreams.is_empty() && config.is_none() {
            let demo =
                portcullis_gateway::demo::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
            overrides.upstream = Some(format!("http://{demo}"));
            eprintln!("no origin given: protecting the built-in demo origin at http://{demo}");
        }
        let services = portcullis_gateway::Services::open(&initial)?;
        let running = portcullis_gateway::start_with(source, overrides, services).await?;
        eprintln!(
            "portcullis listening on http://{} (admin: {})",
            running.listen,
            running
                .admin
                .map_or("off".to_string(), |a| format!("http://{a}"))
        );
        stop_signal().await?;
        eprintln!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

/// Ctrl-C, or SIGTERM as service managers and deployments send it.
async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("waiting for ctrl-c"),
        _ = terminate.recv() => Ok(()),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "{}: ok ({} origin(s), listening on {})",
                path.display(),
                config.upstreams.len(),
                config.server.listen
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for error in e.field_errors() {
                eprintln!("{}: {error}", path.display());
            }
            ExitCode::FAILURE
        }
    }
}

fn bench_corpus(options: portcullis_corpus::BenchOptions) -> anyhow::Result<()> {
    use portcullis_corpus::BenchReport;
    let (report_path, misclassified_path) = (options.report_path(), options.misclassified_path());
    let previous = BenchReport::load_if_exists(&report_path)?;
    let report = tokio_runtime()?.block_on(portcullis_corpus::run_bench(&options))?;
    println!("{}", report.render(previous.as_ref()));
    report.save(&report_path, &misclassified_path)?;
    eprintln!(
        "saved to {} (misclassified samples: {})",
        report_path.display(),
        misclassified_path.display()
    );
    Ok(())
}

fn simulate(options: &portcullis_simulator::SimOptions) -> anyhow::Result<()> {
    let report = tokio_runtime()?.block_on(portcullis_simulator::run(options))?;
    println!("{report}");
    if let Some(path) = &options.json {
        report
            .save(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("saved to {}", path.display());
    }
    Ok(())
}
