//! # genrelab-pipeline: an incremental engine for staged jobs
//!
//! It knows nothing of audio or of genrelab: an application gives it [`Stage`]s over its own
//! configuration type (anything with a work folder, [`engine::Workspace`]), and the engine runs
//! what is stale, skips what is current and says why (genrelab's configuration and stage graph
//! are in the `genrelab` binary: `src/config.rs`, `src/graph.rs`).
//!
//! - [`engine`]: stages, canonical fingerprints, stamps, typed stale reasons, `status` and `run`;
//! - [`fingerprint`]: content hashes with a (path, size, mtime) cache;
//! - [`lock`]: one writer per work folder.

pub mod engine;
pub mod fingerprint;
pub mod lock;

use std::path::PathBuf;

pub use engine::{Engine, Paths, Stage, StageOutcome, StageStatus, Workspace};

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
    /// A stage's own error (the application's type).
    #[error("{0}")]
    Stage(engine::StageFailure),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] genrelab_store::StoreError),
    #[error("{0}")]
    Failed(String),
}

impl PipelineError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PipelineError::Io { path: path.into(), source }
    }
}
