//! # genrelab: the application
//!
//! genrelab's configuration file and its stage graph, on the generic engine of
//! `genrelab-pipeline`; the command line (`src/main.rs`) reads the one and runs the other.
//!
//! - [`config`]: the one TOML configuration (every parameter with its default) and genrelab's
//!   folders inside the work folder;
//! - [`graph`]: the stages (download -> features -> split -> train -> evaluate, descriptors
//!   beside) as engine stages: what each reads, which parameters, what it writes.

pub mod config;
pub mod graph;

pub use config::{Config, Folders};
