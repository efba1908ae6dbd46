//! Replays the GoTestWAF corpus against a running gateway, prints the score
//! table beside the previous run with the same label, and saves the report.
//!
//! `cargo run --release -p portcullis-corpus --example replay -- \
//!     --gotestwaf ../shared/bench/gotestwaf/testcases --target http://127.0.0.1:8080 --label L`
//!
//! Takes the same arguments as `portcullis bench corpus`, plus `--out PATH`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use portcullis_corpus::{ReplayOptions, Report, replay};

#[derive(Parser)]
#[command(about = "Replay the GoTestWAF corpus against a gateway")]
struct Cli {
    #[command(flatten)]
    opts: ReplayOptions,
    /// Report path (default bench/results/corpus-<label>.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli.out.clone().unwrap_or_else(|| cli.opts.results_path());
    let previous = match Report::load_if_exists(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: ignoring previous report: {e}");
            None
        }
    };
    let report = match replay(cli.opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render(previous.as_ref()));
    if let Err(e) = report.save(&path) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("report saved to {}", path.display());
    ExitCode::SUCCESS
}
