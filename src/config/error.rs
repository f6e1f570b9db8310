//! The configuration error: what went wrong, always naming the key it is about.

use std::path::PathBuf;

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    /// The YAML or an override did not fit the schema.
    #[error("{0}")]
    Schema(String),
    /// A value parsed but is not acceptable.
    #[error("key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl Error {
    /// A value at `key` that is not acceptable, and why.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
