//! Gateway computation (the reference's `calcGateways`): fills in missing
//! gateways, adds default routes for `isDefaultGateway`, and lists the
//! addresses the bridge must carry for `isGateway`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cni::spec::{CniResult, Route};
use ipnet::IpNet;

use crate::conf::BridgeConf;

/// Index of the container interface in the result (`[bridge, veth, container]`).
pub const CONTAINER_IFACE: usize = 2;

/// Bridge gateway addresses per family (`gateway/prefix of the pod subnet`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Gateways {
    /// IPv4 gateway addresses.
    pub v4: Vec<IpNet>,
    /// IPv6 gateway addresses.
    pub v6: Vec<IpNet>,
}

/// First address of the subnet (`network + 1`), the reference's `calcGatewayIP`.
pub fn first_host(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).wrapping_add(1))),
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(1))),
    }
}

fn default_dst(v6: bool) -> IpNet {
    if v6 {
        IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).unwrap_or_default()
    } else {
        IpNet::default()
    }
}

/// Points every IP at the container interface and applies the gateway rules.
pub fn calc_gateways(result: &mut CniResult, conf: &BridgeConf) -> Gateways {
    let mut gws = Gateways::default();
    let mut default_found = [false, false];
    for i in 0..result.ips.len() {
        let ipc = &mut result.ips[i];
        ipc.interface = Some(CONTAINER_IFACE);
        let v6 = ipc.address.addr().is_ipv6();
        if ipc.gateway.is_none() && conf.is_gateway {
            ipc.gateway = Some(first_host(&ipc.address));
        }
        let (address, gateway) = (ipc.address, ipc.gateway);
        let fam = usize::from(v6);
        if conf.is_default_gateway && !default_found[fam] {
            let dst = default_dst(v6);
            let has_default = result.routes.iter().any(|r| r.gw.is_some() && r.dst == dst);
            if !has_default {
                result.routes.push(Route::new(dst, gateway));
            }
            default_found[fam] = true;
        }
        if conf.is_gateway {
            if let Some(gw) = gateway {
                if let Ok(net) = IpNet::new(gw, address.prefix_len()) {
                    if v6 {
                        gws.v6.push(net)
                    } else {
                        gws.v4.push(net)
                    }
                }
            }
        }
    }
    gws
}

#[cfg(test)]
mod tests {
    use super::*;
    use cni::args::CniArgs;
    use cni::spec::{IpConfig, NetConf};
    use serde_json::json;

    fn conf(extra: serde_json::Value) -> BridgeConf {
        let mut v = json!({"cniVersion": "1.1.0", "name": "net", "type": "bridge"});
        for (k, val) in extra.as_object().expect("object") {
            v[k] = val.clone();
        }
        let nc = NetConf::from_value(v).expect("netconf");
        BridgeConf::load(&nc, &CniArgs::parse("").expect("args")).expect("conf")
    }

    fn ip(addr: &str, gw: Option<&str>) -> IpConfig {
        IpConfig {
            address: addr.parse().expect("cidr"),
            gateway: gw.map(|g| g.parse().expect("ip")),
            interface: None,
        }
    }

    fn result(ips: Vec<IpConfig>, routes: Vec<Route>) -> CniResult {
        CniResult {
            cni_version: "1.1.0".into(),
            interfaces: Vec::new(),
            ips,
            routes,
            dns: Default::default(),
        }
    }

    #[test]
    fn computes_missing_gateways_and_default_routes() {
        let mut r = result(
            vec![ip("10.1.2.3/16", None), ip("fd10::5/64", Some("fd10::99"))],
            vec![],
        );
        let gws = calc_gateways(&mut r, &conf(json!({"isDefaultGateway": true})));
        assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(r.ips[1].gateway, Some("fd10::99".parse().unwrap()));
        assert!(r.ips.iter().all(|i| i.interface == Some(2)));
        assert_eq!(gws.v4, vec!["10.1.0.1/16".parse::<IpNet>().unwrap()]);
        assert_eq!(gws.v6, vec!["fd10::99/64".parse::<IpNet>().unwrap()]);
        let dsts: Vec<String> = r
            .routes
            .iter()
            .map(|r| format!("{} {:?}", r.dst, r.gw))
            .collect();
        assert_eq!(
            dsts,
            vec![
                "0.0.0.0/0 Some(10.1.0.1)".to_string(),
                "::/0 Some(fd10::99)".to_string()
            ]
        );
    }

    #[test]
    fn existing_default_route_with_gateway_is_kept() {
        let existing = Route::new(
            "0.0.0.0/0".parse().unwrap(),
            Some("10.1.0.254".parse().unwrap()),
        );
        let mut r = result(vec![ip("10.1.2.3/16", None)], vec![existing.clone()]);
        calc_gateways(&mut r, &conf(json!({"isDefaultGateway": true})));
        assert_eq!(r.routes, vec![existing]);
    }

    #[test]
    fn plain_bridge_leaves_gateways_alone() {
        let mut r = result(vec![ip("10.1.2.3/16", None)], vec![]);
        let gws = calc_gateways(&mut r, &conf(json!({})));
        assert_eq!(r.ips[0].gateway, None);
        assert_eq!(gws, Gateways::default());
        assert!(r.routes.is_empty());
    }
}
