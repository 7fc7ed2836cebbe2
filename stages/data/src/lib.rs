//! # genrelab-data: the data stages
//!
//! From a collection to the feature store, each stage a function unaware of the engine that
//! decides when to call it:
//!
//! - [`download`]: make the raw clips available (GTZAN or a Parquet dataset from the Hugging Face
//!   hub, a local tarball, a folder of class sub-folders ([`layout`]), a CSV / TSV / Parquet
//!   [`manifest`], or the built-in [`synthetic`] set) and list them with their checksums and
//!   labels in a [`source`] manifest;
//! - [`features`]: decode every clip and write its log-mel rows (genrelab-audio) into the store,
//!   incrementally per clip; [`descriptors`]: the same for the hand-crafted statistics;
//! - [`split`]: the train / valid / test parts or folds, keeping groups whole, as a table;
//! - [`error`]: why a stage fails ([`StageError`]; bad clips are rejects, not errors).
//!
//! Training, evaluation and prediction on these tables are in genrelab-runs.

pub mod descriptors;
pub mod download;
pub mod error;
pub mod features;
pub mod layout;
pub mod manifest;
pub mod progress;
pub mod source;
pub mod split;
pub mod synthetic;

// The audio front end, under the names these modules use.
pub use genrelab_audio::{FeatureConfig, LogMel, audio, logmel};

pub use error::{ClipError, StageError};
