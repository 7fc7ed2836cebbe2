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

impl StageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io { path: path.into(), source }
    }
}

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
