//! # genrelab-runs: training and what uses trained models
//!
//! - [`train`]: the train stage: run plans (models x seeds x folds), data loading for each input
//!   kind, checkpoints, worker processes;
//! - [`tune`]: a search over training settings, scored on validation parts only;
//! - [`evaluate`]: every run scored on its test part, summaries, ensembles, the report;
//! - [`predict`]: genres of any audio file with the trained models.
//!
//! Reads the tables genrelab-data writes; trains with genrelab-models (libtorch).

pub mod evaluate;
pub mod predict;
pub mod train;
pub mod tune;

// The modules of genrelab-data, genrelab-audio and genrelab-report these use, under their names.
pub use genrelab_audio::{FeatureConfig, LogMel, audio, logmel};
pub use genrelab_data::{StageError, descriptors, features, progress, split, synthetic};
pub use genrelab_report::{metrics, plots};
