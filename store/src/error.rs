use std::path::PathBuf;

/// What went wrong in the store, always with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: Parquet error: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: Arrow error: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("query failed: {0}")]
    Query(String),
    #[error("store folder {0} has no tables yet: run the pipeline first (`make all` or `genrelab run`)")]
    EmptyStore(PathBuf),
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), source }
    }
    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        StoreError::Invalid { path: path.into(), message: message.into() }
    }
}
