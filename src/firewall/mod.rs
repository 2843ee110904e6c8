//! Host firewall rules of the bridge plugin: `ipMasq` (iptables or nftables
//! backend) and `macspoofchk`, with the reference plugins' exact names and
//! comments so either implementation removes what the other created.
//!
//! All changes are made by exec'ing `iptables-save`/`iptables-restore`
//! (and the ip6 variants) and `nft` in the calling thread's network namespace,
//! except on an iptables-nft host: a new pod's IPv4 masquerade chain is
//! written over nf_tables netlink in iptables-nft's encoding (`nft_direct`),
//! and a pod's chain is removed over netlink in both families
//! (`nft_teardown`) — both only for an iptables-nft version whose encoding
//! a test has checked (`iptables_version`), else the tools do it.

mod error;
mod exec;
mod iptables;
mod iptables_save;
pub mod iptables_version;
mod masq_rule;
pub mod naming;
mod nft;
mod nft_direct;
mod nft_teardown;
mod nftables;
pub mod portmap;
pub mod spoofcheck;

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::OnceLock;

use ipnet::IpNet;

pub use error::FirewallError;
pub use iptables::TeardownPath;

/// Which tool programs the masquerade rules (`ipMasqBackend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasqBackend {
    /// `iptables`/`ip6tables`, one `CNI-<hash>` chain per container.
    Iptables,
    /// `nft`, table `inet cni_plugins_masquerade`.
    Nftables,
}

impl FromStr for MasqBackend {
    type Err = FirewallError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iptables" => Ok(MasqBackend::Iptables),
            "nftables" => Ok(MasqBackend::Nftables),
            other => Err(FirewallError::UnknownBackend(other.to_string())),
        }
    }
}

impl MasqBackend {
    /// The backend for an optional `ipMasqBackend` value: parsed if present,
    /// [`default_backend`] otherwise.
    pub fn from_config(value: Option<&str>) -> Result<MasqBackend, FirewallError> {
        value.map_or_else(|| Ok(default_backend()), str::parse)
    }
}

/// iptables, unless only nftables is usable (as the reference decides).
/// Probes at most once per process (~2 ms per probe exec).
pub fn default_backend() -> MasqBackend {
    static BACKEND: OnceLock<MasqBackend> = OnceLock::new();
    *BACKEND.get_or_init(|| {
        if !supports_iptables() && supports_nftables() {
            MasqBackend::Nftables
        } else {
            MasqBackend::Iptables
        }
    })
}

/// True if `iptables` works here (reference `utils.SupportsIPTables`).
pub fn supports_iptables() -> bool {
    iptables::Family::V4.usable()
}

/// True if `nft` works here (reference `utils.SupportsNFTables`).
pub fn supports_nftables() -> bool {
    nft::usable()
}

/// Whose masquerade rules: the identifiers that name chains and comments.
#[derive(Debug, Clone, Copy)]
pub struct MasqTarget<'a> {
    /// Network name from the config (`name`).
    pub network: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_IFNAME` (nftables comments only; iptables ignores it, as the reference).
    pub ifname: &'a str,
}

/// Masquerades traffic from each of `ips` (address with its prefix, as in
/// the CNI result) to anything outside its subnet except multicast.
/// Idempotent: rules already present are not added again.
pub fn setup_ipmasq(
    backend: MasqBackend,
    t: &MasqTarget<'_>,
    ips: &[IpNet],
) -> Result<(), FirewallError> {
    match backend {
        MasqBackend::Iptables if ips.is_empty() => Ok(()),
        MasqBackend::Iptables => iptables::setup(t.network, t.container_id, ips),
        MasqBackend::Nftables => nftables::setup(t, ips),
    }
}

/// [`setup_ipmasq`] with the reference's default backend (no
/// `ipMasqBackend` in the config), without a separate probe: iptables is
/// tried directly, since its `iptables-save` run is itself the probe, and
/// nftables is used only when iptables failed and is not usable at all.
/// Saves one `iptables` exec (~2 ms) per ADD in the common case.
pub fn setup_ipmasq_default(t: &MasqTarget<'_>, ips: &[IpNet]) -> Result<(), FirewallError> {
    match setup_ipmasq(MasqBackend::Iptables, t, ips) {
        Err(e) if !supports_iptables() => {
            if supports_nftables() {
                setup_ipmasq(MasqBackend::Nftables, t, ips)
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

/// Removes the container's masquerade rules from BOTH backends (the pod may
/// have been set up by another version or config). Works with `ips == []`
/// (DEL with an empty or vanished netns, plugins#810): iptables rules are
/// found by the deterministic chain name, nftables rules by comment hash.
/// Missing rules are success; errors count only for backends the host supports.
pub fn teardown_ipmasq(t: &MasqTarget<'_>, ips: &[IpNet]) -> Result<(), FirewallError> {
    // `ips` is not needed: every jump to the chain is removed, which covers
    // the bare-IP and legacy `-s ip/prefix` forms the reference deletes.
    let _ = ips;
    // nft runs on a scoped thread to overlap the execs; a new thread starts
    // in its creator's network namespace, so both act on the same netns.
    let (ipt, nft) = std::thread::scope(|s| {
        let nft = s.spawn(|| nftables::teardown(t));
        let ipt = iptables::teardown(t.network, t.container_id);
        (ipt, nft.join())
    });
    let nft =
        nft.unwrap_or_else(|_| Err(FirewallError::Missing("nftables teardown panicked".into())));
    supported_errors(ipt, nft)
}

/// The iptables half of [`teardown_ipmasq`], saying how each family's
/// chain (IPv4, IPv6) was removed; `netlink == false` allows only the
/// `*tables-save`/`*tables-restore` path. For tests and diagnostics.
#[doc(hidden)]
pub fn teardown_ipmasq_iptables(
    network: &str,
    container_id: &str,
    netlink: bool,
) -> Result<[TeardownPath; 2], FirewallError> {
    iptables::teardown_via(network, container_id, netlink)
}

/// Keeps errors only from backends that work on this host.
fn supported_errors(
    ipt: Result<(), FirewallError>,
    nft: Result<(), FirewallError>,
) -> Result<(), FirewallError> {
    let mut errs = Vec::new();
    if let Err(e) = ipt {
        if supports_iptables() {
            errs.push(e);
        }
    }
    if let Err(e) = nft {
        if supports_nftables() {
            errs.push(e);
        }
    }
    FirewallError::collect(errs)
}

/// Verifies the masquerade rules for `ips`: all present in the iptables
/// backend, or all present in the nftables backend.
pub fn check_ipmasq(t: &MasqTarget<'_>, ips: &[IpNet]) -> Result<(), FirewallError> {
    if ips.is_empty() {
        return Ok(());
    }
    match iptables::check(t.network, t.container_id, ips) {
        Ok(()) => Ok(()),
        Err(ipt) => nftables::check(t, ips).map_err(|nft| FirewallError::Multiple(vec![ipt, nft])),
    }
}

/// Removes masquerade rules of `network` whose attachment is not in `valid`
/// (`(container_id, ifname)` pairs), in both backends. iptables chains are
/// per container, so any ifname of a valid container keeps its chain.
pub fn gc_ipmasq(network: &str, valid: &[(String, String)]) -> Result<(), FirewallError> {
    let ids: BTreeSet<&str> = valid.iter().map(|(id, _)| id.as_str()).collect();
    let ipt = iptables::gc(network, &ids);
    let nft = nftables::gc(network, valid);
    supported_errors(ipt, nft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_parsing() {
        assert_eq!(
            "iptables".parse::<MasqBackend>().unwrap(),
            MasqBackend::Iptables
        );
        assert_eq!(
            "nftables".parse::<MasqBackend>().unwrap(),
            MasqBackend::Nftables
        );
        let err = "ebtables".parse::<MasqBackend>().unwrap_err();
        assert!(err.to_string().contains("\"ebtables\""), "{err}");
        assert_eq!(
            MasqBackend::from_config(Some("nftables")).unwrap(),
            MasqBackend::Nftables
        );
        assert!(MasqBackend::from_config(Some("")).is_err());
    }
}
