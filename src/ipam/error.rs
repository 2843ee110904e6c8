//! Errors of the host-local IPAM layer.
//!
//! Each variant says *why* something failed, which decides the CNI error code
//! the plugin reports (see [`IpamError::code`]). Message texts reuse the
//! reference plugin's wording where callers are known to match on them
//! ("no IP addresses available in range set", "duplicate allocation is not
//! allowed", "Failed to find address added by container").

use std::path::Path;

use crate::error::{codes as code, CniError};

/// Everything that can go wrong while configuring, allocating or storing leases.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The config is not the expected JSON shape (a field has the wrong type).
    #[error("{0}")]
    Decode(String),
    /// The config parses but is semantically invalid (bad CIDR, overlap, ...).
    #[error("{0}")]
    Config(String),
    /// `CNI_ARGS` carried an unusable `IP=` value.
    #[error("{0}")]
    Args(String),
    /// A requested address is unusable (gateway, outside every range set).
    #[error("{0}")]
    Request(String),
    /// No free address, or a requested address is held by someone else.
    /// Transient: leases come back as containers are deleted or garbage collected.
    #[error("{0}")]
    Exhausted(String),
    /// The same (container id, ifname) already holds a lease in this network.
    #[error("{0}")]
    Duplicate(String),
    /// CHECK found no lease for the attachment.
    #[error("{0}")]
    NotFound(String),
    /// STATUS: ADD could not be serviced right now (a range set is full).
    #[error("{0}")]
    Unavailable(String),
    /// A store operation failed at the filesystem level.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl IpamError {
    /// The CNI error code for this failure.
    ///
    /// Exhaustion and "requested IP taken" are 11 (try again later): they clear
    /// up when leases are released, and a runtime can act on that. Duplicate
    /// ADD and a failed CHECK keep the reference's generic 999: no spec code
    /// fits, and retrying without a DEL cannot help.
    pub fn code(&self) -> u32 {
        match self {
            IpamError::Decode(_) => code::DECODE,
            IpamError::Config(_) | IpamError::Request(_) => code::INVALID_CONFIG,
            IpamError::Args(_) => code::INVALID_ENV,
            IpamError::Exhausted(_) => code::TRY_AGAIN_LATER,
            IpamError::Duplicate(_) | IpamError::NotFound(_) => code::INTERNAL,
            IpamError::Unavailable(_) => code::NOT_AVAILABLE,
            IpamError::Io { .. } => code::IO,
        }
    }

    /// Wraps an I/O error with what we were doing and on which path.
    pub fn io(what: &str, path: &Path, source: std::io::Error) -> Self {
        IpamError::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }

    /// Prefixes the message (keeps the variant, hence the code).
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        match self {
            IpamError::Decode(m) => IpamError::Decode(format!("{prefix}: {m}")),
            IpamError::Config(m) => IpamError::Config(format!("{prefix}: {m}")),
            IpamError::Args(m) => IpamError::Args(format!("{prefix}: {m}")),
            IpamError::Request(m) => IpamError::Request(format!("{prefix}: {m}")),
            IpamError::Exhausted(m) => IpamError::Exhausted(format!("{prefix}: {m}")),
            IpamError::Duplicate(m) => IpamError::Duplicate(format!("{prefix}: {m}")),
            IpamError::NotFound(m) => IpamError::NotFound(format!("{prefix}: {m}")),
            IpamError::Unavailable(m) => IpamError::Unavailable(format!("{prefix}: {m}")),
            IpamError::Io { context, source } => IpamError::Io {
                context: format!("{prefix}: {context}"),
                source,
            },
        }
    }
}

impl From<IpamError> for CniError {
    fn from(e: IpamError) -> Self {
        let code = e.code();
        match e {
            IpamError::Io { context, source } => {
                CniError::new(code, format!("{context}: {source}"))
            }
            other => CniError::new(code, other.to_string()),
        }
    }
}
