//! Errors of the containerd node layer.

use std::path::PathBuf;

use crate::cri::CriError;

/// What can go wrong running containerd nodes and driving them over CRI.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Filesystem or process I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An external command (`ctr`, `tar`) failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// The command.
        command: String,
        /// Its stderr.
        detail: String,
    },
    /// A tool or file the containerd runtime needs is not installed.
    #[error("--runtime containerd needs {0}")]
    Missing(String),
    /// The daemon did not come up.
    #[error("containerd of {node} did not start: {reason} (log: {})", .log.display())]
    Start {
        /// The node.
        node: String,
        /// Why.
        reason: String,
        /// Its log file.
        log: PathBuf,
    },
    /// A CRI call failed.
    #[error("{context}: {source}")]
    Cri {
        /// What the kubelet was doing.
        context: String,
        /// The CRI error.
        source: CriError,
    },
    /// The runtime answered something a kubelet cannot use.
    #[error("{0}")]
    Protocol(String),
    /// A safety check refused to act.
    #[error("refusing to continue: {0}")]
    Safety(String),
    /// A step of the shared harness (netns, state dir) failed.
    #[error(transparent)]
    Harness(Box<crate::harness::HarnessError>),
}

impl From<crate::harness::HarnessError> for NodeError {
    fn from(e: crate::harness::HarnessError) -> Self {
        NodeError::Harness(Box::new(e))
    }
}

/// Wraps an I/O error with context.
pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let context = context.into();
    move |source| NodeError::Io { context, source }
}

/// Wraps a CRI error with context.
pub fn cri(context: impl Into<String>) -> impl FnOnce(CriError) -> NodeError {
    let context = context.into();
    move |source| NodeError::Cri { context, source }
}

/// Result alias for the containerd layer.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

impl From<NodeError> for crate::harness::HarnessError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Io { context, source } => {
                crate::harness::HarnessError::Io { context, source }
            }
            NodeError::Safety(s) => crate::harness::HarnessError::Safety(s),
            NodeError::Harness(h) => *h,
            other => crate::harness::HarnessError::Usage(other.to_string()),
        }
    }
}
