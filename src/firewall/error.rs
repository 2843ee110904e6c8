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

    /// Writing rules over nf_tables netlink failed (the ipMasq fast path;
    /// its callers fall back to `iptables-restore`).
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),

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

impl From<FirewallError> for crate::error::CniError {
    /// Bad config values (backend name, MAC, interface name) are code 7;
    /// xtables lock contention is transient (11); anything else is 999.
    fn from(e: FirewallError) -> Self {
        use crate::error::codes;
        let code = match &e {
            FirewallError::UnknownBackend(_) | FirewallError::InvalidInput { .. } => {
                codes::INVALID_CONFIG
            }
            FirewallError::Command { stderr, .. } if is_lock_contention(stderr) => {
                codes::TRY_AGAIN_LATER
            }
            _ => codes::INTERNAL,
        };
        crate::error::CniError::new(code, e.to_string())
    }
}

/// iptables gave up waiting for the xtables lock (another writer held it).
fn is_lock_contention(stderr: &str) -> bool {
    stderr.contains("xtables lock") || stderr.contains("Resource temporarily unavailable")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CniError;

    #[test]
    fn cni_codes() {
        let e: CniError = FirewallError::UnknownBackend("ebtables".into()).into();
        assert_eq!(e.code(), 7);
        assert!(e.msg().contains("\"ebtables\""), "{}", e.msg());
        let e: CniError = FirewallError::invalid("MAC address", "zz", "bad").into();
        assert_eq!(e.code(), 7);
        let cmd = |stderr: &str| FirewallError::Command {
            cmd: "iptables-restore --noflush -w".into(),
            status: "exit status: 4".into(),
            stderr: stderr.into(),
        };
        let e: CniError = cmd("Another app is currently holding the xtables lock.").into();
        assert_eq!(e.code(), 11);
        let e: CniError = cmd("iptables-restore: line 2 failed").into();
        assert_eq!(e.code(), 999);
        assert!(
            e.msg().contains("iptables-restore --noflush -w"),
            "{}",
            e.msg()
        );
        assert!(e.msg().contains("exit status: 4"), "{}", e.msg());
        assert!(e.msg().contains("line 2 failed"), "{}", e.msg());
    }
}
