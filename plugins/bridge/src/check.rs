//! CHECK against `prevResult` (docs/cni-reference.md §2.6): bridge, container
//! veth, host veth (peer of the container end, enslaved to the bridge),
//! addresses, routes, and the masquerade rules. IPAM CHECK is skipped for
//! L2-only configs (the reference fails there).

use std::net::IpAddr;

use cni::delegate;
use cni::error::{codes, CniError, Result};
use cni::firewall::{self, spoofcheck};
use cni::netlink::{InfoKind, Link, Netlink, Route};
use cni::skel::CmdArgs;
use cni::spec::{CniResult, Interface};
use ipnet::IpNet;

use crate::add::{masq_target, open_netns};
use crate::conf::BridgeConf;
use crate::fw;
use crate::locks;

fn fail(msg: String) -> CniError {
    CniError::internal(msg)
}

fn check_mac(iface: &Interface, link: &Link, what: &str) -> Result<()> {
    match &iface.mac {
        Some(mac) if !mac.is_empty() && *mac != link.mac_string() => Err(fail(format!(
            "{what} {} MAC {mac} doesn't match current MAC {}",
            iface.name,
            link.mac_string()
        ))),
        _ => Ok(()),
    }
}

fn check_bridge(nl: &mut Netlink, conf: &BridgeConf, iface: Option<&Interface>) -> Result<Link> {
    let iface = iface.ok_or_else(|| {
        fail(format!(
            "CNI created bridge {} in host namespace was not found",
            conf.bridge
        ))
    })?;
    if iface.sandbox.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(fail(format!(
            "Interface {} should not be in sandbox",
            iface.name
        )));
    }
    let link = nl
        .link_by_name(&iface.name)?
        .ok_or_else(|| fail(format!("Interface name {} not found", iface.name)))?;
    if link.kind != Some(InfoKind::Bridge) {
        return Err(fail(format!(
            "Interface {} does not have link type of bridge",
            iface.name
        )));
    }
    check_mac(iface, &link, "Bridge interface")?;
    if link.is_promisc() != conf.promisc {
        return Err(fail(format!(
            "Bridge interface {} configured Promisc Mode {} doesn't match current state: {}",
            iface.name,
            conf.promisc,
            link.is_promisc()
        )));
    }
    Ok(link)
}

/// The host veth: a result interface whose index is the container's peer,
/// whose peer is the container end, and whose master is the bridge.
fn check_host_veth(
    nl: &mut Netlink,
    result: &CniResult,
    skip: &[&str],
    bridge: &Link,
    cont: &Link,
) -> Result<String> {
    for iface in result
        .interfaces
        .iter()
        .filter(|i| !skip.contains(&i.name.as_str()))
    {
        let Some(link) = nl.link_by_name(&iface.name)? else {
            return Err(fail(format!("Interface name {} not found", iface.name)));
        };
        let matches = link.kind == Some(InfoKind::Veth)
            && Some(link.index) == cont.peer_index
            && link.peer_index == Some(cont.index)
            && link.master == Some(bridge.index);
        if matches {
            check_mac(iface, &link, "Interface")?;
            return Ok(link.name);
        }
    }
    Err(fail(format!(
        "CNI veth created for bridge {} was not found",
        bridge.name
    )))
}

fn route_present(routes: &[Route], dst: IpNet, gw: Option<IpAddr>, table: u32) -> bool {
    routes
        .iter()
        .any(|r| r.table == table && r.dst == dst && (gw.is_none() || r.gw == gw))
}

/// Addresses on the interface (each with a route to its subnet) and routes.
fn check_l3(nl: &mut Netlink, ifname: &str, cont: &Link, result: &CniResult) -> Result<()> {
    let addrs = nl.addresses(Some(cont.index), None)?;
    let (v4, v6) = (nl.routes(false)?, nl.routes(true)?);
    for ip in &result.ips {
        if !addrs.iter().any(|a| a.net == ip.address) {
            return Err(fail(format!(
                "Failed to match addr {} on interface {ifname}",
                ip.address
            )));
        }
        let routes = if ip.address.addr().is_ipv6() {
            &v6
        } else {
            &v4
        };
        if !routes.iter().any(|r| r.dst == ip.address.trunc()) {
            return Err(fail(format!(
                "Failed to find route to {} for interface {ifname}",
                ip.address.trunc()
            )));
        }
    }
    for r in &result.routes {
        let routes = if r.dst.addr().is_ipv6() { &v6 } else { &v4 };
        let table = r.table.unwrap_or(254);
        if !route_present(routes, r.dst, r.gw, table) {
            return Err(fail(format!(
                "Expected Route {} via {:?} not found in routing table",
                r.dst, r.gw
            )));
        }
    }
    Ok(())
}

/// The bridge CHECK.
pub fn check(a: &CmdArgs) -> Result<()> {
    let conf = BridgeConf::load(&a.conf, &a.args)?;
    let _attachment = locks::attachment(&conf.network, a)?;
    let netns = open_netns(a)?;
    if let Some(ipam) = &conf.ipam_type {
        delegate::check(ipam, a)?;
    }
    let result = a
        .conf
        .prev_result()?
        .ok_or_else(|| CniError::new(codes::INVALID_CONFIG, "Required prevResult missing"))?;
    let netns_path = netns.path().display().to_string();
    let mut nl = Netlink::open()?;
    let br_iface = result.interfaces.iter().find(|i| i.name == conf.bridge);
    let bridge = check_bridge(&mut nl, &conf, br_iface)?;
    let cont_iface = result
        .interfaces
        .iter()
        .find(|i| i.name == a.ifname && i.sandbox.as_deref() == Some(netns_path.as_str()))
        .ok_or_else(|| {
            fail(format!(
                "Sandbox in prevResult doesn't match configured netns: {netns_path}"
            ))
        })?;
    let mut cnl = Netlink::open_in(&netns)?;
    let cont = cnl.link_by_name(&a.ifname)?.ok_or_else(|| {
        fail(format!(
            "CNI created interface in container {} not found",
            a.ifname
        ))
    })?;
    if cont.kind != Some(InfoKind::Veth) {
        return Err(fail(format!(
            "Error: Container interface {} not of type veth",
            a.ifname
        )));
    }
    check_mac(cont_iface, &cont, "Interface")?;
    let host = check_host_veth(&mut nl, &result, &[&conf.bridge, &a.ifname], &bridge, &cont)?;
    check_l3(&mut cnl, &a.ifname, &cont, &result)?;
    if conf.is_layer3() && conf.ip_masq {
        let ips: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
        fw(firewall::check_ipmasq(&masq_target(&conf, a), &ips))?;
    }
    if conf.macspoofchk {
        fw(spoofcheck::check(
            &a.container_id,
            &a.ifname,
            &host,
            &cont.mac_string(),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, gw: Option<&str>, table: u32) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            gw: gw.map(|g| g.parse().unwrap()),
            oif: Some(2),
            table,
            scope: 0,
            priority: None,
            kind: 1,
        }
    }

    #[test]
    fn routes_match_on_destination_table_and_gateway_when_given() {
        let routes = [
            route("0.0.0.0/0", Some("10.88.0.1"), 254),
            route("10.99.0.0/16", None, 1000),
        ];
        let dst = |s: &str| s.parse::<IpNet>().unwrap();
        let gw = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(route_present(
            &routes,
            dst("0.0.0.0/0"),
            gw("10.88.0.1"),
            254
        ));
        assert!(route_present(&routes, dst("0.0.0.0/0"), None, 254));
        assert!(!route_present(
            &routes,
            dst("0.0.0.0/0"),
            gw("10.88.0.9"),
            254
        ));
        assert!(route_present(&routes, dst("10.99.0.0/16"), None, 1000));
        assert!(!route_present(&routes, dst("10.99.0.0/16"), None, 254));
    }
}
