//! DEL: best effort and idempotent (cni-reference.md §2.5, SPEC "DEL").
//!
//! Unlike the reference, the IPAM lease, the masquerade rules and the
//! spoof-check rules are released also when `CNI_NETNS` is empty or the
//! netns is gone (plugins#810): masquerade teardown works by the
//! deterministic chain/comment names and takes the IPs from the link (when
//! it still exists) and from `prevResult`.

use cni::delegate;
use cni::error::{CniError, Result};
use cni::firewall::{self, spoofcheck};
use cni::netlink::Netlink;
use cni::netns::{NetNs, NetnsError};
use cni::skel::CmdArgs;
use ipnet::IpNet;

use crate::add::masq_target;
use crate::conf::BridgeConf;
use crate::fw;

/// Removes the container interface and returns its global unicast addresses;
/// a missing netns or link means there is nothing to remove.
fn remove_container_iface(a: &CmdArgs) -> Result<Vec<IpNet>> {
    let Some(path) = &a.netns else {
        return Ok(Vec::new());
    };
    let netns = match NetNs::open(path) {
        Ok(ns) => ns,
        Err(NetnsError::NotExist { .. }) => return Ok(Vec::new()),
        // Not (or no longer) a netns, e.g. a leftover bind-mount target:
        // nothing of ours can be inside (cilium#40843).
        Err(e @ NetnsError::NotNs { .. }) => {
            eprintln!("bridge: DEL: {e}; skipping interface removal");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    let mut nl = Netlink::open_in(&netns)?;
    let Some(link) = nl.link_by_name(&a.ifname)? else {
        return Ok(Vec::new());
    };
    let ips = nl
        .addresses(Some(link.index), None)?
        .into_iter()
        .map(|addr| addr.net)
        .filter(is_global_unicast)
        .collect();
    nl.del_link(link.index)
        .map_err(|e| CniError::from(e).context(format!("failed to delete {:?}", a.ifname)))?;
    Ok(ips)
}

/// Go's `IP.IsGlobalUnicast`: not unspecified, loopback, multicast or link-local.
fn is_global_unicast(net: &IpNet) -> bool {
    match net.addr() {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        std::net::IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

/// IPs the previous ADD reported (a DEL may carry `prevResult`).
fn prev_result_ips(a: &CmdArgs) -> Vec<IpNet> {
    match a.conf.prev_result() {
        Ok(Some(r)) => r.ips.iter().map(|i| i.address).collect(),
        _ => Vec::new(),
    }
}

/// The bridge DEL. Every cleanup runs; the first error is reported.
pub fn del(a: &CmdArgs) -> Result<()> {
    let conf = BridgeConf::load(&a.conf, &a.args)?;
    let mut first_err: Option<CniError> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            eprintln!("bridge: DEL: {e}");
            first_err.get_or_insert(e);
        }
    };
    let mut ips = match remove_container_iface(a) {
        Ok(ips) => ips,
        Err(e) => {
            note(Err(e));
            Vec::new()
        }
    };
    for ip in prev_result_ips(a) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if let Some(ipam) = &conf.ipam_type {
        note(delegate::del(ipam, a));
    }
    if conf.macspoofchk {
        // The reference only logs spoof-check teardown failures.
        if let Err(e) = spoofcheck::teardown(&a.container_id, &a.ifname) {
            eprintln!("bridge: DEL: spoofcheck teardown: {e}");
        }
    }
    if conf.is_layer3() && conf.ip_masq {
        note(fw(firewall::teardown_ipmasq(&masq_target(&conf, a), &ips)));
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_unicast_like_go() {
        for (cidr, want) in [
            ("10.88.0.2/24", true),
            ("fd10::2/64", true),
            ("fe80::1/64", false),
            ("127.0.0.1/8", false),
            ("169.254.1.1/16", false),
            ("::1/128", false),
            ("224.0.0.1/4", false),
        ] {
            assert_eq!(is_global_unicast(&cidr.parse().unwrap()), want, "{cidr}");
        }
    }
}
