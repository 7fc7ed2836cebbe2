//! # genrelab-pipeline: the incremental engine and genrelab's stage graph
//!
//! - [`config`]: the one TOML configuration and the work folder's layout;
//! - [`fingerprint`]: content hashes with a (path, size, mtime) cache;
//! - [`engine`]: stages, fingerprints, stamps, `status` and `run`;
//! - [`lock`]: one writer per work folder;
//! - [`graph`]: genrelab's stages (download -> features -> split -> train -> evaluate) wired
//!   into the engine.

pub mod config;
pub mod engine;
pub mod fingerprint;
pub mod graph;
pub mod lock;

use std::path::PathBuf;

pub use config::{Config, Paths};
pub use engine::{Engine, Stage, StageOutcome, StageStatus};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("unknown stage `{name}` (stages: {known})")]
    UnknownStage { name: String, known: String },
    #[error("stage `{stage}` failed: {source}")]
    StageFailed {
        stage: String,
        #[source]
        source: Box<PipelineError>,
    },
    #[error(transparent)]
    Stage(#[from] genrelab_stages::StageError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

impl PipelineError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PipelineError::Io { path: path.into(), source }
    }
}
