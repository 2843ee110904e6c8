//! Conversions between the host-local layer and the CNI wire types.

use crate::spec::{CniResult, Dns, IpConfig, Route};

use super::config::RouteConf;
use super::dns::DnsConf;
use super::ops::AddOutcome;

/// The abbreviated IPAM result (SPEC §5 "Delegated plugins"): no interfaces,
/// no `ips[].interface`; every address carries its range's gateway. The skel
/// prints it in the config's version.
pub fn add_result(outcome: &AddOutcome, cni_version: &str) -> CniResult {
    CniResult {
        cni_version: cni_version.to_string(),
        interfaces: Vec::new(),
        ips: outcome
            .allocations
            .iter()
            .map(|a| IpConfig {
                address: a.address,
                gateway: Some(a.gateway),
                interface: None,
            })
            .collect(),
        routes: outcome.routes.iter().map(route).collect(),
        dns: dns(&outcome.dns),
    }
}

fn route(r: &RouteConf) -> Route {
    Route {
        dst: r.dst,
        gw: r.gw,
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: r.scope,
    }
}

fn dns(d: &DnsConf) -> Dns {
    Dns {
        nameservers: d.nameservers.clone(),
        domain: d.domain.clone(),
        search: d.search.clone(),
        options: d.options.clone(),
    }
}
