//! Errors of the log. Corruption carries the file and byte offset so an operator can look.

use std::path::PathBuf;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corrupt log record in {path} at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("log is poisoned after an earlier I/O failure: {0}")]
    Poisoned(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Payload(#[from] crate::payload::PayloadError),
    #[error("the log writer has stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
