//! # genrelab-report: what people read
//!
//! - [`metrics`]: accuracy, balanced accuracy, macro-F1, per-class figures, confusion matrices,
//!   Student-t intervals;
//! - [`plots`]: line charts and confusion matrices as self-contained SVG;
//! - [`html`]: the report page from its markdown (CommonMark tables, figures inlined).
//!
//! No files and no training: genrelab-runs' evaluation decides what the report says and writes it.

pub mod html;
pub mod metrics;
pub mod plots;
