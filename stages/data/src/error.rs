use std::path::PathBuf;

use genrelab_store::StoreError;

/// Why a stage failed. Bad clips are not errors (they go to the rejects table); these are
/// problems with the whole input, the configuration or the disk.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Source(String),
    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Failed(String),
}

impl From<genrelab_audio::InvalidSetting> for StageError {
    fn from(e: genrelab_audio::InvalidSetting) -> Self {
        StageError::Config(e.0)
    }
}

impl StageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io { path: path.into(), source }
    }
}

pub use genrelab_audio::printable;
