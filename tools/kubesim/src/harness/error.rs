//! Errors of the kubelet-like harness.

use std::path::PathBuf;

use cni::netns::NetnsError;
use cni::runtime::RuntimeError;

/// Everything the harness can report to the user.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A CNI operation failed.
    #[error("{context}: {source}")]
    Cni {
        /// What the harness was doing.
        context: String,
        /// The runtime's error (plugin code/msg/details inside).
        source: Box<RuntimeError>,
    },
    /// Filesystem or process I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Opening or entering a network namespace failed (the path is named).
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A netlink request (link, address or route) failed in a harness netns.
    #[error("{context}: {source}")]
    Netlink {
        /// What the harness was doing (the `ip` command it stands for).
        context: String,
        /// The kernel's answer or the decoding error.
        source: rtnetlink::Error,
    },
    /// An external command (`iptables`, `nft`, …) failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Its stderr.
        stderr: String,
    },
    /// A helper process (pause, container) did not start properly.
    #[error("{what} did not start: {reason}")]
    Start {
        /// Which helper.
        what: String,
        /// Why.
        reason: String,
    },
    /// The state dir is missing, corrupt or in the wrong shape.
    #[error("state {}: {reason}", .path.display())]
    State {
        /// The state file or dir.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The user asked for something impossible (unknown pod, name reused, …).
    #[error("{0}")]
    Usage(String),
    /// A safety check refused to act (e.g. a netns that is the machine's own).
    #[error("refusing to continue: {0}")]
    Safety(String),
}

impl HarnessError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }

    /// Wraps a netlink error with context.
    pub fn netlink(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Netlink { context, source }
    }

    /// Wraps a runtime error with context.
    pub fn cni(context: impl Into<String>) -> impl FnOnce(RuntimeError) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Cni {
            context,
            source: Box::new(source),
        }
    }
}

/// Result alias for the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
