//! The veth pair and its bridge port (reference `setupVeth`, `makeVeth`,
//! `removeDefaultVlan` and the port-state wait).

use std::time::Duration;

use cni::error::{CniError, Result};
use cni::netlink::{BridgeVlan, Link, Netlink, OperState, VethSpec};
use cni::netns::NetNs;
use cni::sysctl;
use nix::errno::Errno;

use crate::conf::BridgeConf;
use crate::names;

/// Where the veth goes: the container side of the pair.
pub struct Container<'a> {
    /// The container netns.
    pub netns: &'a NetNs,
    /// A netlink connection inside it.
    pub nl: &'a mut Netlink,
    /// `CNI_CONTAINERID`.
    pub id: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
}

/// Creates the pair in one request: the container end `ifname` is born in
/// the container netns (with MTU and MAC), the host end (`veth` + 8 hex,
/// derived from container id and ifname) is enslaved to the bridge and up.
/// Returns the host end.
pub fn create_veth(
    nl: &mut Netlink,
    c: &mut Container,
    conf: &BridgeConf,
    bridge: u32,
) -> Result<Link> {
    for attempt in 0..names::ATTEMPTS {
        let host_name = names::host_veth_name(c.id, c.ifname, attempt);
        let spec = VethSpec {
            host_name: &host_name,
            peer_name: c.ifname,
            peer_netns: c.netns,
            mtu: conf.mtu,
            peer_mac: conf.mac,
            master: Some(bridge),
            host_up: true,
        };
        match nl.create_veth(&spec) {
            Ok(()) => {
                // We own the routes on this interface; no IPv6 is fine.
                let _ =
                    sysctl::set_if_present(&format!("net/ipv6/conf/{host_name}/accept_ra"), "0");
                return nl.link_by_name(&host_name)?.ok_or_else(|| {
                    CniError::internal(format!("host veth {host_name:?} vanished after creation"))
                });
            }
            Err(e) if e.is(Errno::EEXIST) => {
                crate::container::ensure_absent(c.nl, c.ifname, c.netns)?;
                // The host-side name is taken: try the next one.
            }
            Err(e) => return Err(CniError::from(e).context("failed to make veth pair")),
        }
    }
    Err(CniError::internal("failed to find a unique veth name"))
}

/// Hairpin, isolation and VLAN membership of the host port.
pub fn configure_port(nl: &mut Netlink, port: &Link, conf: &BridgeConf) -> Result<()> {
    let name = &port.name;
    if conf.hairpin || conf.port_isolation {
        nl.set_bridge_port(port.index, conf.hairpin, conf.port_isolation)
            .map_err(|e| {
                CniError::from(e).context(format!("failed to set port flags on {name:?}"))
            })?;
    }
    let wants_vlans = conf.vlan != 0 || !conf.vlan_trunk.is_empty();
    if wants_vlans && !conf.preserve_default_vlan {
        for v in nl.bridge_vlans(port.index)? {
            nl.bridge_vlan_del(port.index, v).map_err(|e| {
                CniError::from(e).context(format!(
                    "failed to remove default vlan on interface {name:?}"
                ))
            })?;
        }
    }
    let mut add = |vid: u16, native: bool, what: &str| {
        let vlan = BridgeVlan {
            vid,
            pvid: native,
            untagged: native,
        };
        nl.bridge_vlan_add(port.index, vlan).map_err(|e| {
            CniError::from(e).context(format!("failed to setup {what} on interface {name:?}"))
        })
    };
    if conf.vlan != 0 {
        add(conf.vlan, true, "vlan tag")?;
    }
    for vid in &conf.vlan_trunk {
        add(*vid, false, "vlan tag")?;
    }
    if conf.vlan == 0 && !conf.vlan_trunk.is_empty() {
        // A trunk without an access VLAN keeps VID 1 as native (reference).
        add(1, true, "default native vlan tag")?;
    }
    Ok(())
}

/// Back-off between port-state polls: quick at first (linkwatch reports the
/// carrier change within a millisecond or so), about 2.5 s in total like the
/// reference, so a broken port still fails in bounded time.
const PORT_WAIT: [u64; 11] = [0, 1, 2, 5, 10, 20, 50, 100, 300, 1000, 1000];

/// Waits until the host port is operationally up.
pub fn wait_port_up(nl: &mut Netlink, index: u32) -> Result<Link> {
    let mut state = OperState::Unknown;
    for ms in PORT_WAIT {
        std::thread::sleep(Duration::from_millis(ms));
        let link = nl
            .link_by_index(index)?
            .ok_or_else(|| CniError::internal("host veth vanished while waiting for it"))?;
        if link.oper_state == OperState::Up {
            return Ok(link);
        }
        state = link.oper_state;
    }
    Err(CniError::internal(format!(
        "bridge port in error state: {}",
        format!("{state:?}").to_lowercase()
    )))
}
