//! Replays the benchmark corpora against a running gateway (or any WAF),
//! prints the report beside the previous run with the same label, and saves
//! it with the misclassified samples. `bench/modsec/run.sh` uses it to
//! score nginx + ModSecurity without building the gateway.
//!
//! `cargo run --release -p portcullis-corpus --example replay -- \
//!     --target http://127.0.0.1:8080 --label L [--mgm DIR] [--limit N]`
//!
//! Takes the same arguments as `portcullis bench corpus`.

use std::process::ExitCode;

use clap::Parser;
use portcullis_corpus::{BenchOptions, BenchReport, run_bench};

#[derive(Parser)]
#[command(about = "Replay the benchmark corpora against a gateway")]
struct Cli {
    #[command(flatten)]
    opts: BenchOptions,
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = Cli::parse().opts;
    let (report_path, misclassified_path) = (opts.report_path(), opts.misclassified_path());
    let previous = match BenchReport::load_if_exists(&report_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: ignoring previous report: {e}");
            None
        }
    };
    let report = match run_bench(&opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render(previous.as_ref()));
    if let Err(e) = report.save(&report_path, &misclassified_path) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "report saved to {} (misclassified samples: {})",
        report_path.display(),
        misclassified_path.display()
    );
    ExitCode::SUCCESS
}
