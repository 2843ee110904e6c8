//! ADD as a list of steps (cni-reference.md §2.2). Everything that can be
//! rejected (config, netns, IPAM plugin lookup) is checked before the first
//! kernel change; after that every side effect is undone on failure.

use cni::delegate;
use cni::error::{codes, CniError, Result};
use cni::firewall::{self, spoofcheck, MasqTarget};
use cni::netlink::Netlink;
use cni::netns::NetNs;
use cni::skel::CmdArgs;
use cni::spec::{version_at_least, CniResult, Interface};
use ipnet::IpNet;

use crate::bridge_dev;
use crate::conf::BridgeConf;
use crate::container;
use crate::fw;
use crate::gateway::calc_gateways;
use crate::port::{self, Container};
use crate::rollback::Rollback;

/// `CNI_NETNS` opened and checked (ADD and CHECK need it).
pub fn open_netns(a: &CmdArgs) -> Result<NetNs> {
    let path = a
        .netns
        .as_ref()
        .ok_or_else(|| CniError::new(codes::INVALID_ENV, "CNI_NETNS is required"))?;
    Ok(NetNs::open(path)?)
}

/// Deletes the host veth by name (the pair goes with it).
fn delete_veth(name: &str) -> Result<()> {
    let mut nl = Netlink::open()?;
    if let Some(link) = nl.link_by_name(name)? {
        nl.del_link(link.index)?;
    }
    Ok(())
}

/// The bridge ADD.
pub fn add(a: &CmdArgs) -> Result<CniResult> {
    let conf = BridgeConf::load(&a.conf, &a.args)?;
    if !conf.is_layer3() && !version_at_least(&conf.cni_version, "0.3.0") {
        // The 0.1/0.2 result has no interfaces list, only IPs: an L2-only
        // attachment cannot be reported. The reference finds out after
        // creating everything (plugins#997); refuse before touching anything.
        return Err(CniError::new(
            codes::INVALID_CONFIG,
            format!(
                "cniVersion {} cannot describe an L2-only (no ipam) attachment; use 0.3.0 or later",
                conf.cni_version
            ),
        ));
    }
    let netns = open_netns(a)?;
    if let Some(ipam) = &conf.ipam_type {
        delegate::find_plugin(ipam, &a.path)?;
    }
    let mut nl = Netlink::open()?;
    let mut cnl = Netlink::open_in(&netns)?;
    let bridge = bridge_dev::ensure_bridge(&mut nl, &conf)?;

    let mut undo = Rollback::default();
    let mut c = Container {
        netns: &netns,
        nl: &mut cnl,
        id: &a.container_id,
        ifname: &a.ifname,
    };
    let host = port::create_veth(&mut nl, &mut c, &conf, bridge.index)?;
    let host_name = host.name.clone();
    undo.push("delete veth", move || delete_veth(&host_name));
    port::configure_port(&mut nl, &host, &conf)?;
    bridge_dev::pin_mac(&mut nl, bridge.index)?;
    let cont = container::link(c.nl, &a.ifname)?;

    let mut result = CniResult {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![
            Interface {
                name: bridge.name.clone(),
                ..Interface::default()
            },
            Interface {
                name: host.name.clone(),
                ..Interface::default()
            },
            Interface {
                name: a.ifname.clone(),
                mac: Some(cont.mac_string()),
                sandbox: Some(netns.path().display().to_string()),
                ..Interface::default()
            },
        ],
        ips: Vec::new(),
        routes: Vec::new(),
        dns: Default::default(),
    };

    if conf.macspoofchk {
        fw(spoofcheck::setup(
            &a.container_id,
            &a.ifname,
            &host.name,
            &cont.mac_string(),
        ))?;
        undo.push("spoofcheck teardown", || {
            fw(spoofcheck::teardown(&a.container_id, &a.ifname))
        });
    }

    if let Some(ipam) = &conf.ipam_type {
        // Registered before the call: a failed IPAM ADD is cleaned up too (SPEC §4).
        undo.push("ipam del", move || delegate::del(ipam, a));
        let ipam_result = delegate::add(ipam, a)?;
        if ipam_result.ips.is_empty() {
            return Err(CniError::internal("IPAM plugin returned missing IP config"));
        }
        result.ips = ipam_result.ips;
        result.routes = ipam_result.routes;
        result.dns = ipam_result.dns;
        let gws = calc_gateways(&mut result, &conf);
        container::configure_l3(c.nl, &netns, &a.ifname, &result, conf.enable_dad)?;
        if conf.is_gateway {
            bridge_dev::apply_gateways(&mut nl, &conf, &bridge, &gws, &mut result.interfaces)?;
        }
        if conf.ip_masq {
            let ips: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
            let target = masq_target(&conf, a);
            let backend = conf
                .ip_masq_backend
                .unwrap_or_else(firewall::default_backend);
            fw(firewall::setup_ipmasq(backend, &target, &ips))?;
            let network = conf.network.clone();
            undo.push("ipmasq teardown", move || {
                let target = MasqTarget {
                    network: &network,
                    container_id: &a.container_id,
                    ifname: &a.ifname,
                };
                fw(firewall::teardown_ipmasq(&target, &ips))
            });
        }
    } else if !conf.disable_container_interface {
        container::up_l2(c.nl, &a.ifname)?;
    }

    let host = if conf.disable_container_interface {
        nl.link_by_index(host.index)?.unwrap_or(host)
    } else {
        port::wait_port_up(&mut nl, host.index)?
    };
    // Both MACs can change when ports are enslaved (plugins#805/#809).
    result.interfaces[1].mac = Some(host.mac_string());
    let bridge_now = nl.link_by_index(bridge.index)?.unwrap_or(bridge);
    result.interfaces[0].mac = Some(bridge_now.mac_string());
    if let Some(dns) = &conf.dns {
        result.dns = dns.clone();
    }
    undo.commit();
    Ok(result)
}

/// The masquerade rule owner: (network, container id, ifname).
pub fn masq_target<'a>(conf: &'a BridgeConf, a: &'a CmdArgs) -> MasqTarget<'a> {
    MasqTarget {
        network: &conf.network,
        container_id: &a.container_id,
        ifname: &a.ifname,
    }
}
