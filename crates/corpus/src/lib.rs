//! The benchmark corpora of Portcullis (`bench/corpora/`) and the replay
//! behind `portcullis bench corpus`.
//!
//! - GoTestWAF test cases: loading the YAML files ([`load`]), expanding them
//!   into payload x encoder x placeholder cases ([`cases`]) and building the
//!   HTTP request GoTestWAF would send for each ([`build`]); scored
//!   in-process against a detection function by [`evaluate`] into a [`Report`].
//! - The normal-traffic corpus, HttpParamsDataset and the mgm payload
//!   collection, read into labelled [`Sample`]s ([`load_normal`],
//!   [`load_httpparams`], [`load_mgm`], [`load_gotestwaf`]).
//! - [`run_bench`]: every corpus through a running gateway, scored per corpus,
//!   category, status and signal into a [`BenchReport`].

mod bench;
mod bench_report;
mod build;
mod encode;
mod load;
mod report;
mod samples;

pub use bench::{BenchOptions, CORPORA, run as run_bench};
pub use bench_report::{Answer, BenchReport, CategoryRow, CorpusRow, Counts, Misclassified};
pub use build::{GO_USER_AGENT, RawRequest, build, go_request_target};
pub use encode::encode;
pub use load::{
    Case, Encoder, FALSE_POSITIVE_SET, Placeholder, RawRequestConfig, TestFile, cases, load,
    load_file,
};
pub use report::{Miss, Outcome, Report, Row, evaluate};
pub use samples::{
    Loaded, PAYLOAD_PARAM, Sample, load_gotestwaf, load_httpparams, load_mgm, load_normal,
    mgm_quote, spread,
};

use std::path::PathBuf;

/// Errors of the corpus crate.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A corpus file is not in its expected shape.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The testcases directory holds no test-case file.
    #[error("{0}: no GoTestWAF test-case (.yml/.yaml) files found")]
    Empty(PathBuf),
    /// The replay target is not a usable `http://host:port` URL.
    #[error("invalid target {target:?}: {message}")]
    Target { target: String, message: String },
    /// A report could not be (de)serialized.
    #[error("report {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
