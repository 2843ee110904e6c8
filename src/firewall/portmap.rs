//! Host-port mappings of the `portmap` chained plugin: DNAT from a host
//! port to a pod's port, plus the masquerade marks that make hairpin and
//! `127.0.0.1` traffic return through the host. Two backends with the
//! reference's exact names (iptables: `CNI-HOSTPORT-*` and `CNI-DN-<hash>`;
//! nftables: tables `ip`/`ip6` `cni_hostport`), so either implementation
//! removes the other's rules.
//!
//! Beyond the reference: a mapping whose (protocol, host address, port) is
//! already mapped by another attachment is refused instead of silently
//! shadowed, and a failed setup leaves no rule behind.

mod iptables;
mod live;
mod nftables;

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::error::FirewallError;

pub use live::{flush_udp_conntrack, LiveMapping};

/// Transport protocol of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// Parses `tcp`/`udp`/`sctp` in any case (the reference passes the
    /// string to iptables, which is case-insensitive).
    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The name iptables and nft use.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One validated `runtimeConfig.portMappings` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Proto,
    /// `hostIP`; `None` when absent.
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    /// Whether the mapping applies to a pod address of this family: a
    /// `hostIP` of the other family skips it (as the reference does).
    pub fn applies_to(&self, v6: bool) -> bool {
        self.host_ip.is_none_or(|h| h.is_ipv6() == v6)
    }

    /// The destination match: `hostIP` unless absent or unspecified
    /// (`0.0.0.0`/`::` mean every address, as in the reference).
    pub fn dest(&self) -> Option<IpAddr> {
        self.host_ip.filter(|h| !h.is_unspecified())
    }
}

/// How mapped traffic is masqueraded (`snat`, `markMasqBit`,
/// `externalSetMarkChain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Masq {
    /// `snat: false`: DNAT only.
    Off,
    /// Mark with this bit (0..=31) in `CNI-HOSTPORT-SETMARK`.
    MarkBit(u8),
    /// Jump to an existing chain that marks (e.g. `KUBE-MARK-MASQ`).
    External(String),
}

/// Whose mappings: the identifiers that name chains and comments.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    /// Network name (`name`).
    pub network: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
}

/// Everything one ADD (or CHECK) programs.
#[derive(Debug, Clone)]
pub struct PortMapSpec<'a> {
    pub attachment: Attachment<'a>,
    pub mappings: &'a [PortMapping],
    pub masq: Masq,
    /// Extra match arguments (iptables) or tokens (nftables), per family.
    pub conditions_v4: &'a [String],
    pub conditions_v6: &'a [String],
    /// The pod's first IPv4 and first IPv6 address, with prefix.
    pub pod_v4: Option<IpNet>,
    pub pod_v6: Option<IpNet>,
}

impl PortMapSpec<'_> {
    /// The pod addresses to map, IPv4 first.
    pub fn pod_ips(&self) -> Vec<IpNet> {
        self.pod_v4.into_iter().chain(self.pod_v6).collect()
    }
    fn conditions(&self, v6: bool) -> &[String] {
        if v6 {
            self.conditions_v6
        } else {
            self.conditions_v4
        }
    }
}

/// Which rule set programs the mappings (`backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

/// Errors of the port-mapping layer.
#[derive(Debug, thiserror::Error)]
pub enum PortMapError {
    /// A tool or netlink call failed.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// Another attachment maps the same host port (Docker's "port is
    /// already allocated").
    #[error("host port {wanted} is already allocated: {owner} maps {existing}")]
    Conflict {
        /// The mapping asked for, e.g. `tcp 0.0.0.0:8080`.
        wanted: String,
        /// The other attachment.
        owner: String,
        /// Its mapping.
        existing: String,
    },
    /// A condition token cannot be put into a rule safely.
    #[error("invalid condition {0:?}: {1}")]
    BadCondition(String, &'static str),
}

impl From<PortMapError> for crate::error::CniError {
    fn from(e: PortMapError) -> Self {
        match e {
            PortMapError::Firewall(f) => f.into(),
            PortMapError::BadCondition(..) => {
                crate::error::CniError::new(crate::error::codes::INVALID_CONFIG, e.to_string())
            }
            PortMapError::Conflict { .. } => crate::error::CniError::internal(e.to_string()),
        }
    }
}

/// Rejects condition tokens that could end the rule or the transaction
/// (newlines, `;`, `#`, NUL, other control characters): conditions come
/// from the network config and are spliced into `*tables-restore` and
/// `nft -f` scripts.
pub fn validate_conditions(conds: &[String]) -> Result<(), PortMapError> {
    for c in conds {
        if c.chars().any(|ch| ch.is_control()) {
            return Err(PortMapError::BadCondition(c.clone(), "control character"));
        }
        if c.contains([';', '#']) {
            return Err(PortMapError::BadCondition(c.clone(), "';' or '#'"));
        }
        if c.is_empty() {
            return Err(PortMapError::BadCondition(c.clone(), "empty token"));
        }
    }
    Ok(())
}

/// Programs the mappings of `spec` with `backend`, after checking that no
/// other attachment maps the same host ports (in either backend). Replaces
/// earlier rules of the same attachment; on failure nothing of this
/// attachment is left. Callers serialise setups node-wide, or two ADDs
/// could both pass the conflict check.
pub fn setup(backend: Backend, spec: &PortMapSpec<'_>) -> Result<(), PortMapError> {
    validate_conditions(spec.conditions_v4)?;
    validate_conditions(spec.conditions_v6)?;
    live::refuse_conflicts(spec)?;
    let done = match backend {
        Backend::Iptables => iptables::setup(spec),
        Backend::Nftables => nftables::setup(spec),
    };
    let done = done
        .map_err(PortMapError::from)
        .and_then(|()| match (&spec.masq, spec.pod_v4) {
            (Masq::MarkBit(_) | Masq::External(_), Some(v4)) => {
                Ok(live::enable_route_localnet(v4.addr())?)
            }
            _ => Ok(()),
        });
    if let Err(e) = done {
        let _ = teardown(&spec.attachment);
        return Err(e);
    }
    Ok(())
}

/// Removes the attachment's rules from both backends, without needing its
/// addresses or mappings (DEL with an empty netns and no `prevResult`).
/// Missing rules are success.
pub fn teardown(a: &Attachment<'_>) -> Result<(), PortMapError> {
    let (ipt, nft) = std::thread::scope(|s| {
        let nft = s.spawn(|| nftables::teardown(a));
        (iptables::teardown(a), nft.join())
    });
    let nft = nft.unwrap_or_else(|_| Err(FirewallError::Missing("nft teardown panicked".into())));
    let mut errs = Vec::new();
    if let Err(e) = ipt {
        if super::supports_iptables() {
            errs.push(e);
        }
    }
    if let Err(e) = nft {
        if super::supports_nftables() {
            errs.push(e);
        }
    }
    Ok(FirewallError::collect(errs)?)
}

/// Verifies the attachment's rules in `backend`.
pub fn check(backend: Backend, spec: &PortMapSpec<'_>) -> Result<(), PortMapError> {
    Ok(match backend {
        Backend::Iptables => iptables::check(spec),
        Backend::Nftables => nftables::check(spec),
    }?)
}

/// Removes the iptables rules of `network`'s attachments whose container
/// id is not in `valid_ids`. nftables rules carry only a container id (no
/// network), so they cannot be attributed to a network and are left.
pub fn gc(network: &str, valid_ids: &BTreeSet<&str>) -> Result<(), PortMapError> {
    Ok(iptables::gc(network, valid_ids)?)
}

/// Every mapping programmed on this node, in both backends.
pub fn live_mappings() -> Result<Vec<LiveMapping>, PortMapError> {
    live::all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!(Proto::parse("TCP"), Some(Proto::Tcp));
        assert_eq!(Proto::parse("sctp"), Some(Proto::Sctp));
        assert_eq!(Proto::parse(""), None);
        assert_eq!(Proto::parse("icmp"), None);
    }

    #[test]
    fn mapping_family_and_dest() {
        let m = PortMapping {
            host_port: 80,
            container_port: 8080,
            protocol: Proto::Tcp,
            host_ip: Some("0.0.0.0".parse().unwrap()),
        };
        assert!(m.applies_to(false) && !m.applies_to(true));
        assert_eq!(m.dest(), None);
        let any = PortMapping { host_ip: None, ..m };
        assert!(any.applies_to(false) && any.applies_to(true));
    }

    #[test]
    fn conditions_that_could_inject_are_refused() {
        let ok: Vec<String> = ["!", "-s", "192.0.2.0/24"].map(String::from).to_vec();
        validate_conditions(&ok).unwrap();
        for bad in [
            "-s 1.2.3.4\n-A INPUT -j DROP",
            "ip saddr 1.2.3.4; flush ruleset",
            "a#b",
            "",
        ] {
            assert!(validate_conditions(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }
}
