//! CNI wire types: versions, network config, results, and Go-compatible
//! JSON key matching.
//!
//! The internal result model is the 1.1.0 shape ([`CniResult`]); it is
//! printed in, and parsed from, any supported version.

mod casefold;
mod netconf;
mod result;
mod version;

pub use casefold::casefold_from_value;
pub(crate) use netconf::is_valid_id;
pub use netconf::{json_kind, lookup_ci, validate_network_name, NetConf};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{
    check_version, highest_supported, parse_version, version_at_least, version_reply,
    CURRENT_VERSION, DEFAULT_CONFIG_VERSION, SUPPORTED_VERSIONS,
};

/// Longest interface name Linux accepts: `IFNAMSIZ` (16) minus the
/// terminating NUL. Binds `CNI_IFNAME` and every name a plugin creates.
pub const MAX_IFNAME: usize = 15;
