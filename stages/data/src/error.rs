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

/// Why one clip is skipped: a row of the `rejects` table (its reason is this error's text), never
/// a failure of the stage.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// A file of a folder or manifest that cannot be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A member of an archive that cannot be read.
    #[error("{0}")]
    Member(#[source] std::io::Error),
    #[error("no audio bytes in the row")]
    NoAudioBytes,
    #[error("changed since the download stage listed it (blake3 {found}, listed {listed}); run the download stage again")]
    Changed { found: String, listed: String },
    #[error(transparent)]
    Audio(#[from] genrelab_audio::audio::AudioError),
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
