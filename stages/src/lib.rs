//! # genrelab-stages: what each pipeline stage does
//!
//! Each stage is a function from inputs to outputs, unaware of the incremental engine that
//! decides when to call it (`genrelab-pipeline`):
//!
//! - [`download`]: make the raw clips available (GTZAN or a Parquet dataset from the Hugging Face
//!   hub, a local tarball, a folder of class sub-folders ([`layout`]), a CSV / TSV / Parquet
//!   [`manifest`], or the built-in [`synthetic`] set) and list them with their checksums and
//!   labels in a [`source`] manifest;
//! - [`features`]: decode ([`audio`]) and turn every clip into the study's log-mel ([`logmel`]),
//!   into the feature store;
//! - [`split`]: the train / valid / test parts or folds, as a table in the store.

pub mod audio;
pub mod descriptors;
pub mod download;
pub mod error;
pub mod evaluate;
pub mod features;
pub mod layout;
pub mod logmel;
pub mod manifest;
pub mod metrics;
pub mod plots;
pub mod predict;
mod progress;
pub mod source;
pub mod split;
pub mod synthetic;
pub mod train;
pub mod tune;

pub use error::StageError;
pub use logmel::{FeatureConfig, LogMel};
