//! Errors of the firewall layer (masquerade and MAC spoof-check rules).

use std::io;

/// What can go wrong while programming iptables / nftables.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `ipMasqBackend` named something other than `iptables` / `nftables`.
    #[error("unknown ipmasq backend {0:?} (expected \"iptables\" or \"nftables\")")]
    UnknownBackend(String),

    /// An argument (MAC address, interface name, ...) cannot be put into a rule.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// A firewall tool could not be started (usually: not installed).
    #[error("failed to run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A firewall tool ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Exit status as printed by std (e.g. "exit status: 1").
        status: String,
        /// Trimmed stderr of the tool.
        stderr: String,
    },

    /// A tool printed something we could not understand.
    #[error("cannot parse output of `{cmd}`: {reason}")]
    Parse {
        /// The command line whose output was parsed.
        cmd: String,
        /// What was wrong.
        reason: String,
    },

    /// CHECK found the kernel state different from what setup creates.
    #[error("masquerade/spoof-check state mismatch: {0}")]
    Missing(String),

    /// Several independent steps failed (e.g. teardown of both backends).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Multiple(Vec<FirewallError>),
}

impl FirewallError {
    /// Builds an [`FirewallError::InvalidInput`].
    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        FirewallError::InvalidInput {
            what,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Folds a list of errors into `Ok` (empty), the single error, or `Multiple`.
    pub(crate) fn collect(mut errs: Vec<FirewallError>) -> Result<(), FirewallError> {
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(FirewallError::Multiple(errs)),
        }
    }
}
