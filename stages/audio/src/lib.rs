//! # genrelab-audio: from audio bytes to numbers
//!
//! Pure DSP, no files, tables or training: what the features stage, the descriptors stage and
//! `predict` all call, so training and prediction see the same numbers.
//!
//! - [`audio`]: decoding WAV (hound) and FLAC, MP3, Ogg, M4A (symphonia) to mono samples at the
//!   feature rate, within [`audio::Limits`]; damaged input is an error, never a panic;
//! - [`logmel`]: the study's log-mel spectrogram, excerpts and windows, resizing (checked against
//!   librosa by `tests/parity.rs`);
//! - [`describe`]: the classical baseline's hand-crafted statistics (MFCC, spectral shape, ZCR,
//!   RMS, onset, chroma, tempo).

pub mod audio;
pub mod describe;
pub mod logmel;

pub use logmel::{FeatureConfig, LogMel};

/// A feature or limits setting genrelab cannot use; the message names the setting and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

/// A message from a parser that may quote the bytes it choked on (the tar crate does), cut where
/// the bytes begin: control characters and undecodable bytes never reach a terminal.
pub fn printable(message: &str) -> String {
    let message = message.replace('\t', " ");
    match message.find(|c: char| c.is_control() || c == char::REPLACEMENT_CHARACTER) {
        None => message,
        Some(at) => format!("{}(binary data)", &message[..at]),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn binary_in_messages_is_cut() {
        assert_eq!(super::printable("bad field: 12 ok"), "bad field: 12 ok");
        assert_eq!(
            super::printable("numeric field did not have utf-8 text: \u{fffd}\u{1}x when getting"),
            "numeric field did not have utf-8 text: (binary data)"
        );
    }
}
