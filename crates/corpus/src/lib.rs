//! The GoTestWAF corpus, owned by Portcullis' benchmark tooling.
//!
//! This crate owns everything about the GoTestWAF test-case data
//! (`shared/bench/gotestwaf/testcases`): loading the YAML files
//! ([`load`]), expanding them into payload x encoder x placeholder cases
//! ([`cases`]), building the HTTP request GoTestWAF would send for each case
//! ([`build`]), and scoring a WAF with them, either over the network against
//! a running gateway ([`replay`]) or in-process against a detection function
//! ([`evaluate`]). Results are a [`Report`] that renders as a table beside the
//! previous run and round-trips through JSON.

mod build;
mod encode;
mod load;
mod replay;
mod report;

pub use build::{GO_USER_AGENT, RawRequest, build, go_request_target};
pub use encode::encode;
pub use load::{
    Case, Encoder, FALSE_POSITIVE_SET, Placeholder, RawRequestConfig, TestFile, cases, load,
    load_file,
};
pub use replay::{ReplayOptions, replay};
pub use report::{Miss, Outcome, Report, Row, evaluate};

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
    /// A test-case file is not valid YAML or not in GoTestWAF's shape.
    #[error("{path}: invalid test case: {message}")]
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
