//! Configuring the container interface inside the sandbox (reference
//! `ConfigureIface` plus the DAD sysctls of `cmdAdd`).
//!
//! DAD: with `enabledad` false (the default) `accept_dad=0` is written before
//! any address exists, so IPv6 addresses are usable at once and ADD does not
//! poll for ~2 s (plugins#680). Only with `enabledad` do we wait, bounded,
//! for the addresses to leave the tentative state.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use cni::error::{CniError, Result};
use cni::netlink::{Link, Netlink, OperState, RouteSpec};
use cni::netns::NetNs;
use cni::spec::CniResult;
use cni::sysctl;

use crate::announce::Announcement;
use crate::gateway::CONTAINER_IFACE;

/// How long `enabledad` may wait for DAD (the reference's 5 s).
const DAD_TIMEOUT: Duration = Duration::from_secs(5);
const DAD_POLL: Duration = Duration::from_millis(50);

/// Looks up the container interface.
pub fn link(nl: &mut Netlink, ifname: &str) -> Result<Link> {
    nl.link_by_name(ifname)?
        .ok_or_else(|| CniError::internal(format!("failed to lookup {ifname:?} in the container")))
}

/// Fails if `ifname` already exists in the container (before anything is
/// created, so the IPAM plugin is not even started).
pub fn ensure_absent(nl: &mut Netlink, ifname: &str, netns: &NetNs) -> Result<()> {
    match nl.link_by_name(ifname)? {
        Some(_) => Err(CniError::internal(format!(
            "container veth name {ifname:?} already exists in {}",
            netns.path().display()
        ))),
        None => Ok(()),
    }
}

/// Per-interface knobs, written from a thread inside the container netns.
/// Best effort like the reference (plugins#102) except the IPv6 enablement,
/// which addresses depend on.
fn write_sysctls(ifname: &str, enable_dad: bool, has_v6: bool) -> Result<()> {
    let v6 = |key: &str| format!("net/ipv6/conf/{ifname}/{key}");
    if enable_dad {
        let _ = sysctl::set_if_present(&v6("enhanced_dad"), "1");
        let _ = sysctl::set_if_present(&v6("accept_dad"), "1");
    } else {
        let _ = sysctl::set_if_present(&v6("accept_dad"), "0");
    }
    if has_v6 {
        for dev in ["lo", ifname] {
            let key = format!("net/ipv6/conf/{dev}/disable_ipv6");
            sysctl::set_if_present(&key, "0").map_err(|e| {
                CniError::internal(format!(
                    "failed to enable IPv6 for interface {dev:?} ({key}): {e}"
                ))
            })?;
        }
        // Keep addresses when the link goes down (reference v1.7+).
        sysctl::set_if_present(&v6("keep_addr_on_down"), "1").map_err(|e| {
            CniError::internal(format!(
                "failed to enable keep_addr_on_down for interface {ifname:?}: {e}"
            ))
        })?;
    }
    Ok(())
}

/// Applies the result's addresses and routes to the container interface
/// `iface` and brings it up; returns what the pod has to announce.
///
/// `arp_notify` is set after the link is up, not before as the reference
/// does: the up then sends no gratuitous ARP under RTNL, and the caller
/// has a helper send it once the bridge port forwards (`announce`).
pub fn configure_l3(
    nl: &mut Netlink,
    netns: &NetNs,
    iface: &Link,
    result: &CniResult,
    enable_dad: bool,
) -> Result<Announcement> {
    let ifname = iface.name.as_str();
    let has_v6 = result.ips.iter().any(|ip| ip.address.addr().is_ipv6());
    netns.run(|| write_sysctls(ifname, enable_dad, has_v6))??;
    let (mut v4gw, mut v6gw) = (None, None);
    for ip in &result.ips {
        if ip.interface != Some(CONTAINER_IFACE) {
            continue;
        }
        nl.add_address(iface.index, ip.address).map_err(|e| {
            CniError::from(e).context(format!(
                "failed to add IP addr {} to {ifname:?}",
                ip.address
            ))
        })?;
        match ip.gateway {
            Some(gw @ IpAddr::V4(_)) if v4gw.is_none() => v4gw = Some(gw),
            Some(gw @ IpAddr::V6(_)) if v6gw.is_none() => v6gw = Some(gw),
            _ => {}
        }
    }
    nl.set_up(iface.index)
        .map_err(|e| CniError::from(e).context(format!("failed to set {ifname:?} UP")))?;
    // Best effort, like the reference's sysctl write.
    let _ = nl.set_arp_notify(iface.index);
    if enable_dad && v6gw.is_some() {
        settle_addresses(nl, iface)?;
    }
    for r in &result.routes {
        let family_gw = if r.dst.addr().is_ipv6() { v6gw } else { v4gw };
        let spec = RouteSpec {
            dst: Some(r.dst),
            gw: r.gw.or(family_gw),
            oif: Some(iface.index),
            table: r.table,
            scope: r.scope.and_then(|s| u8::try_from(s).ok()),
            priority: r.priority,
            mtu: r.mtu,
            advmss: r.advmss,
        };
        nl.add_route(&spec).map_err(|e| {
            CniError::from(e).context(format!(
                "failed to add route {} via {:?} dev {ifname}",
                r.dst, spec.gw
            ))
        })?;
    }
    Ok(announcement(iface, result))
}

/// The container interface's IPv4 addresses with its MAC (none when the
/// MAC is not an Ethernet one: nothing to announce).
fn announcement(iface: &Link, result: &CniResult) -> Announcement {
    let mac = iface
        .mac
        .as_deref()
        .and_then(|m| <[u8; 6]>::try_from(m).ok());
    let addrs = result
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(CONTAINER_IFACE))
        .filter_map(|ip| match ip.address.addr() {
            IpAddr::V4(v4) if mac.is_some() => Some(v4),
            _ => None,
        })
        .collect();
    Announcement {
        index: iface.index,
        mac: mac.unwrap_or_default(),
        addrs,
    }
}

/// L2-only: the container interface just goes up. `lo` is the `loopback`
/// plugin's job, which runtimes call for every pod; like the reference
/// bridge, we never touch it.
pub fn up_l2(nl: &mut Netlink, iface: &Link) -> Result<()> {
    nl.set_up(iface.index)
        .map_err(|e| CniError::from(e).context(format!("failed to set {:?} up", iface.name)))
}

/// Waits (bounded) for IPv6 DAD to finish when `enabledad` asked for it.
fn settle_addresses(nl: &mut Netlink, iface: &Link) -> Result<()> {
    let deadline = Instant::now() + DAD_TIMEOUT;
    loop {
        let addrs = nl.addresses(Some(iface.index), Some(true))?;
        if let Some(bad) = addrs.iter().find(|a| a.dad_failed) {
            return Err(CniError::internal(format!(
                "link {} has address {} in DADFAILED state",
                iface.name, bad.net
            )));
        }
        if !addrs.iter().any(|a| a.tentative) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            // A link that is not oper-up never finishes DAD: not an error.
            let up = nl
                .link_by_index(iface.index)?
                .is_some_and(|l| l.oper_state == OperState::Up);
            if up {
                return Err(CniError::internal(format!(
                    "link {} still has tentative addresses after {} seconds",
                    iface.name,
                    DAD_TIMEOUT.as_secs()
                )));
            }
            return Ok(());
        }
        std::thread::sleep(DAD_POLL);
    }
}
