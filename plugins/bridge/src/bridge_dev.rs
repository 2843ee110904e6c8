//! The host bridge: create-or-verify, MAC pinning, gateway addresses,
//! forwarding, and the VLAN gateway device (reference `ensureBridge`,
//! `ensureAddr`, `ensureVlanInterface`, `enableIPForward`).

use cni::error::{codes, CniError, Result};
use cni::lock::LockMode;
use cni::netlink::{InfoKind, Link, Netlink, VethSpec};
use cni::netns::NetNs;
use cni::spec::Interface;
use cni::sysctl;
use ipnet::IpNet;

use crate::conf::BridgeConf;
use crate::gateway::Gateways;
use crate::locks;
use crate::names;
use crate::port;

/// Creates the bridge if missing (EEXIST from a parallel ADD is fine),
/// checks that the name really is a bridge, applies promisc and brings it up.
/// An existing bridge keeps its MTU, vlan_filtering and addresses.
/// Returns the bridge and whether this call created it.
pub fn ensure_bridge(nl: &mut Netlink, conf: &BridgeConf) -> Result<(Link, bool)> {
    let name = &conf.bridge;
    let created = nl
        .create_bridge(name, conf.mtu, conf.vlan_filtering())
        .map_err(|e| CniError::from(e).context(format!("failed to create bridge {name:?}")))?;
    let link = nl
        .link_by_name(name)?
        .ok_or_else(|| CniError::internal(format!("bridge {name:?} vanished after creation")))?;
    if link.kind != Some(InfoKind::Bridge) {
        return Err(CniError::new(
            codes::INVALID_CONFIG,
            format!("{name:?} already exists but is not a bridge"),
        ));
    }
    if conf.promisc && !link.is_promisc() {
        nl.set_promisc(link.index, true).map_err(|e| {
            CniError::from(e).context(format!("could not set promiscuous mode on {name:?}"))
        })?;
    }
    // We own the routes on this interface. Failure is harmless (no IPv6).
    let _ = sysctl::set_if_present(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
    if !link.is_up() {
        nl.set_up(link.index)?;
    }
    Ok((link, created))
}

/// Undo for an ADD that created the bridge (ifindex `created`) and then
/// failed: removes it if it is still that bridge and has no port. Under the
/// exclusive bridge lock no ADD is between finding the bridge and attaching
/// its veth, so "no port" really means "used by nobody" (see `locks`).
/// The reference never removes a bridge; a failed first ADD here leaves the
/// node as it found it.
pub fn delete_if_unused(name: &str, created: u32) -> Result<()> {
    let lock = locks::bridge(name, LockMode::Exclusive)?;
    let mut nl = Netlink::open()?;
    let bridge = match nl.link_by_name(name)? {
        Some(b) if b.index == created => b,
        // Gone, or a bridge another call created since: not ours to judge.
        Some(_) => return Ok(()),
        None => {
            lock.remove();
            return Ok(());
        }
    };
    let has_ports = nl.links()?.iter().any(|l| l.master == Some(bridge.index));
    if !has_ports {
        nl.del_link(bridge.index)?;
        lock.remove();
    }
    Ok(())
}

/// Sets the bridge MAC to its current value so it stops following the
/// lowest port MAC as ports come and go (cni#285, plugins#60). Skipped
/// while the MAC is all-zero (no port yet: plugins#620).
pub fn pin_mac(nl: &mut Netlink, index: u32) -> Result<()> {
    let Some(link) = nl.link_by_index(index)? else {
        return Ok(());
    };
    match link.mac {
        Some(mac) if mac.iter().any(|b| *b != 0) => nl
            .set_mac(index, &mac)
            .map_err(|e| CniError::from(e).context("could not set bridge's mac")),
        _ => Ok(()),
    }
}

/// Puts `gw` on `link` (reference `ensureAddr`): an identical address is
/// fine; another IPv4 address, or an overlapping IPv6 one, is replaced when
/// `force` and an error otherwise. EEXIST from parallel ADDs is tolerated.
pub fn ensure_addr(nl: &mut Netlink, link: &Link, gw: IpNet, force: bool) -> Result<()> {
    let v6 = gw.addr().is_ipv6();
    for existing in nl.addresses(Some(link.index), Some(v6))? {
        let a = existing.net;
        if a == gw {
            return Ok(());
        }
        // Link-local IPv6 addresses never overlap a pod subnet.
        let conflicts = !v6 || a.contains(&gw.addr()) || gw.contains(&a.addr());
        if !conflicts {
            continue;
        }
        if !force {
            return Err(CniError::internal(format!(
                "{:?} already has an IP address different from {gw}",
                link.name
            )));
        }
        nl.del_address(link.index, a).map_err(|e| {
            CniError::from(e).context(format!("could not remove IP address from {:?}", link.name))
        })?;
    }
    nl.add_address(link.index, gw).map_err(|e| {
        CniError::from(e).context(format!("could not add IP address {gw} to {:?}", link.name))
    })?;
    Ok(())
}

/// Turns on IPv4 or IPv6 forwarding in the host namespace (read first).
pub fn enable_forwarding(v6: bool) -> Result<()> {
    let key = if v6 {
        "net/ipv6/conf/all/forwarding"
    } else {
        "net/ipv4/ip_forward"
    };
    sysctl::set(key, "1")
        .map(drop)
        .map_err(|e| CniError::internal(format!("failed to enable forwarding ({key}): {e}")))
}

/// `isGateway`: gateway addresses go on the bridge (or on the VLAN gateway
/// device `<bridge>.<vid>`, which is then appended to the result), the
/// bridge MAC is pinned and forwarding is enabled for each family used.
pub fn apply_gateways(
    nl: &mut Netlink,
    conf: &BridgeConf,
    bridge: &Link,
    gws: &Gateways,
    interfaces: &mut Vec<Interface>,
) -> Result<()> {
    let target = if conf.vlan != 0 && !(gws.v4.is_empty() && gws.v6.is_empty()) {
        let dev = ensure_vlan_gateway(nl, conf, bridge)?;
        interfaces.push(Interface {
            name: dev.name.clone(),
            mac: Some(dev.mac_string()),
            ..Interface::default()
        });
        dev
    } else {
        bridge.clone()
    };
    for (v6, list) in [(false, &gws.v4), (true, &gws.v6)] {
        for gw in list {
            ensure_addr(nl, &target, *gw, conf.force_address)
                .map_err(|e| e.context("failed to set bridge addr"))?;
            // The bridge itself was pinned right after its port was added.
            if target.index != bridge.index {
                pin_mac(nl, target.index)?;
            }
        }
        if !list.is_empty() {
            enable_forwarding(v6)?;
        }
    }
    Ok(())
}

/// The VLAN gateway device `<bridge>.<vid>`: a veth whose peer is a bridge
/// port with `vid` as PVID, so the host can route for an access VLAN.
fn ensure_vlan_gateway(nl: &mut Netlink, conf: &BridgeConf, bridge: &Link) -> Result<Link> {
    let name = format!("{}.{}", conf.bridge, conf.vlan);
    if let Some(existing) = nl.link_by_name(&name)? {
        return Ok(existing);
    }
    let host_ns = NetNs::current()?;
    let port_name = names::host_veth_name(&conf.bridge, &name, 0);
    nl.create_veth(&VethSpec {
        host_name: &port_name,
        peer_name: &name,
        peer_netns: &host_ns,
        mtu: bridge.mtu,
        peer_mac: None,
        master: Some(bridge.index),
        host_up: true,
    })
    .map_err(|e| CniError::from(e).context(format!("failed to create vlan gateway {name:?}")))?;
    let port_link = nl
        .link_by_name(&port_name)?
        .ok_or_else(|| CniError::internal(format!("vlan gateway port {port_name:?} vanished")))?;
    let vlan_only = BridgeConf {
        hairpin: false,
        port_isolation: false,
        vlan_trunk: Vec::new(),
        ..conf.clone()
    };
    port::configure_port(nl, &port_link, &vlan_only)?;
    let dev = nl
        .link_by_name(&name)?
        .ok_or_else(|| CniError::internal(format!("vlan gateway {name:?} vanished")))?;
    nl.set_up(dev.index)?;
    Ok(dev)
}
