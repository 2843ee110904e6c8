//! DEL: best effort and idempotent (docs/cni-reference.md §2.5, SPEC "DEL").
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
use crate::detached_del;
use crate::fw;
use crate::locks;

/// The container interface found for deletion: its netns, the connection
/// inside it, its index, its peer's index (the host end) and its global
/// unicast addresses.
struct ContainerIface {
    netns: NetNs,
    nl: Netlink,
    index: u32,
    peer: Option<u32>,
    ips: Vec<IpNet>,
}

/// Finds the container interface; a missing netns or link means there is
/// nothing to remove (`Ok(None)`).
fn find_container_iface(a: &CmdArgs) -> Result<Option<ContainerIface>> {
    let Some(path) = &a.netns else {
        return Ok(None);
    };
    let netns = match NetNs::open(path) {
        Ok(ns) => ns,
        Err(NetnsError::NotExist { .. }) => return Ok(None),
        // Not (or no longer) a netns, e.g. a leftover bind-mount target:
        // nothing of ours can be inside (cilium#40843).
        Err(e @ NetnsError::NotNs { .. }) => {
            eprintln!("bridge: DEL: {e}; skipping interface removal");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let mut nl = Netlink::open_in(&netns)?;
    let Some(link) = nl.link_by_name(&a.ifname)? else {
        return Ok(None);
    };
    let ips = nl
        .addresses(Some(link.index), None)?
        .into_iter()
        .map(|addr| addr.net)
        .filter(is_global_unicast)
        .collect();
    Ok(Some(ContainerIface {
        netns,
        nl,
        index: link.index,
        peer: link.peer_index,
        ips,
    }))
}

/// A container interface whose deletion has begun: handed to a helper
/// process when one could be forked, else deleted in-process.
struct Deleting {
    iface: ContainerIface,
    helper: Option<detached_del::Started>,
}

/// Starts deleting the container interface (the host end of the pair goes
/// with it). Called before any thread exists: the helper is forked.
fn start_delete(iface: ContainerIface) -> Deleting {
    let helper = detached_del::start(&iface.netns, iface.index).ok();
    Deleting { iface, helper }
}

/// Returns once callers can no longer observe the interface (both veth
/// ends unlisted) or the delete failed; a still-running helper's pid comes
/// back.
fn finish_delete(a: &CmdArgs, d: Deleting) -> Result<Option<detached_del::Detached>> {
    let Deleting { mut iface, helper } = d;
    let r = match helper {
        Some(h) => h.finish(&mut iface.nl, iface.peer),
        None => iface.nl.del_link(iface.index).map(|_| None),
    };
    r.map_err(|e| CniError::from(e).context(format!("failed to delete {:?}", a.ifname)))
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

/// The bridge DEL. Every cleanup runs; the first error is reported (in the
/// order: interface, IPAM, masquerade).
///
/// Why threads: the interface is gone from view 1–3 ms after the delete
/// (the kernel's remaining ≈ 20 ms are a detached helper's, see
/// `detached_del`), and the IPAM DEL is a child process. Neither depends on
/// the other (the reference releases the lease before deleting the link; we
/// do both at once), so the lease release and the firewall teardown run
/// while the interface vanishes. The interface is looked up and its delete
/// started first, while the process has one thread (the helper is forked).
pub fn del(a: &CmdArgs) -> Result<()> {
    let conf = BridgeConf::load(&a.conf, &a.args)?;
    let _attachment = locks::attachment(&conf.network, a)?;
    let masq = conf.is_layer3() && conf.ip_masq;
    if masq {
        // Released by the helper, see `detached_del`.
        cni::netlink::keep_netfilter_sockets();
    }
    let found = find_container_iface(a).map(|f| f.map(start_delete));
    let mut helper = None;
    let (iface_res, ipam_res, masq_res) = std::thread::scope(|s| {
        let ipam = conf
            .ipam_type
            .as_deref()
            .map(|ipam| s.spawn(move || delegate::del(ipam, a)));
        let (mut ips, deleting) = match found {
            Ok(Some(d)) => {
                let ips = d.iface.ips.clone();
                (ips, Ok(Some(s.spawn(move || finish_delete(a, d)))))
            }
            Ok(None) => (Vec::new(), Ok(None)),
            Err(e) => (Vec::new(), Err(e)),
        };
        for ip in prev_result_ips(a) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        if conf.macspoofchk {
            // The reference only logs spoof-check teardown failures.
            if let Err(e) = spoofcheck::teardown(&a.container_id, &a.ifname) {
                eprintln!("bridge: DEL: spoofcheck teardown: {e}");
            }
        }
        let masq_res = if masq {
            fw(firewall::teardown_ipmasq(&masq_target(&conf, a), &ips))
        } else {
            Ok(())
        };
        let iface_res = deleting.and_then(join).map(|pid| helper = pid);
        (iface_res, join(ipam).map(|_| ()), masq_res)
    });
    if let Some(h) = helper {
        h.hand_over(cni::netlink::take_netfilter_sockets());
    }
    let mut first_err: Option<CniError> = None;
    for r in [iface_res, ipam_res, masq_res] {
        if let Err(e) = r {
            eprintln!("bridge: DEL: {e}");
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Waits for a cleanup thread; no thread means nothing to do.
fn join<T: Default>(job: Option<std::thread::ScopedJoinHandle<'_, Result<T>>>) -> Result<T> {
    match job {
        Some(h) => h
            .join()
            .unwrap_or_else(|_| Err(CniError::internal("DEL cleanup thread panicked"))),
        None => Ok(T::default()),
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
