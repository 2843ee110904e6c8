//! Errors of the benchmark tool. A failed plugin call aborts only its
//! scenario; the report still shows every other scenario.

use std::path::PathBuf;

/// Everything that can go wrong while benchmarking.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network namespace: {0}")]
    Netns(String),
    #[error("{side} {what} failed (exit {code}): {stdout}{stderr}")]
    Plugin {
        side: String,
        what: String,
        code: i32,
        stdout: String,
        stderr: String,
    },
    #[error("{side} {what}: unexpected output: {detail}")]
    Output {
        side: String,
        what: String,
        detail: String,
    },
    #[error("spawn {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Other(String),
}

impl BenchError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
