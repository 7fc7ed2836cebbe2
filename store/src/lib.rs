//! # genrelab-store: the feature store
//!
//! Everything genrelab keeps between stages is a Parquet file in one folder, the *store*:
//!
//! | table           | one row per     | written by | what it holds |
//! |-----------------|-----------------|------------|---------------|
//! | `features`      | decoded clip    | features   | the study's 64 x 100 log-mel (dB), plus clip facts |
//! | `features_full` | decoded clip    | features   | the 128 x 1,291 log-mel before resizing |
//! | `descriptors`   | decoded clip    | descriptors | hand-crafted statistics (MFCC, spectral shape, ZCR, chroma, tempo) |
//! | `rejects`       | undecodable clip| features   | the clip and the reason it was skipped |
//! | `split`         | clip            | split      | its part (`train` / `valid` / `test`) and/or fold |
//!
//! Each file carries its own description in the Parquet key-value metadata (`genrelab.*` keys):
//! the table kind, the schema version and, for feature tables, the feature configuration as JSON
//! with its hash, so a reader never has to guess how the numbers were made.
//!
//! This crate owns the schemas ([`tables`]), writing files atomically ([`atomic`]), files' content
//! hashes ([`content`], what stage fingerprints and source listings name a file by) and reading
//! them back (arrow and parquet only: the polars SQL view over the store, `genrelab query`, is the
//! command line's, so only the binary links polars). Stages call it; they never write files of
//! their own.

pub mod atomic;
mod column;
pub mod content;
pub mod error;
pub mod foreign;
pub mod tables;

pub use atomic::AtomicFile;
pub use error::StoreError;
pub use tables::{
    FeatureMatrix, FeatureRow, FeatureRowReader, FeatureTableWriter, FloatTable, RejectRow, SplitRow, TableMeta, read_features,
    read_float_table, read_rejects, read_split, read_table_meta, write_rejects, write_rejects_staged, write_split,
};

/// File names of the store's tables, in one place.
pub mod names {
    pub const FEATURES: &str = "features.parquet";
    pub const FEATURES_FULL: &str = "features_full.parquet";
    pub const DESCRIPTORS: &str = "descriptors.parquet";
    pub const REJECTS: &str = "rejects.parquet";
    pub const SPLIT: &str = "split.parquet";
    pub const HISTORY: &str = "history.parquet";
    pub const METRICS: &str = "metrics.parquet";
    pub const PER_GENRE: &str = "per_genre.parquet";
    pub const PREDICTIONS: &str = "predictions.parquet";
    pub const TUNE: &str = "tune.parquet";
}
