//! Route operations: `ip route` equivalents.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{Netlink, Result, ACK, CREATE, DUMP};

/// A route to add or delete (the fields a CNI result route can carry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix.
    pub dst: Option<IpNet>,
    /// Gateway.
    pub gw: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Routing table (main when `None`).
    pub table: Option<u32>,
    /// Scope (universe when `None`).
    pub scope: Option<u8>,
    /// Metric.
    pub priority: Option<u32>,
    /// `mtu` metric.
    pub mtu: Option<u32>,
    /// `advmss` metric.
    pub advmss: Option<u32>,
}

/// A route read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` or `::/0` for default routes).
    pub dst: IpNet,
    /// Gateway, if any.
    pub gw: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Routing table.
    pub table: u32,
    /// Scope.
    pub scope: u8,
    /// Metric.
    pub priority: Option<u32>,
    /// `RTN_*` type (1 = unicast, 2 = local, ...).
    pub kind: u8,
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    }
}

impl Route {
    /// Expands one kernel message into routes (one per multipath next hop).
    fn from_message(msg: &RouteMessage) -> Vec<Route> {
        let v6 = match msg.header.address_family {
            AddressFamily::Inet6 => true,
            AddressFamily::Inet => false,
            _ => return Vec::new(),
        };
        let mut dst = unspecified(v6);
        let mut route = Route {
            dst: IpNet::new(dst, 0).unwrap_or_else(|_| IpNet::from(dst)),
            gw: None,
            oif: None,
            table: u32::from(msg.header.table),
            scope: u8::from(msg.header.scope),
            priority: None,
            kind: u8::from(msg.header.kind),
        };
        let mut hops = Vec::new();
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst = ip_of(a).unwrap_or(dst),
                RouteAttribute::Gateway(a) => route.gw = ip_of(a),
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                RouteAttribute::Table(t) => route.table = *t,
                RouteAttribute::Priority(p) => route.priority = Some(*p),
                RouteAttribute::MultiPath(nh) => hops.clone_from(nh),
                _ => {}
            }
        }
        let Ok(net) = IpNet::new(dst, msg.header.destination_prefix_length) else {
            return Vec::new();
        };
        route.dst = net;
        if hops.is_empty() {
            return vec![route];
        }
        hops.iter()
            .map(|hop| {
                let mut r = route.clone();
                r.oif = Some(hop.interface_index);
                r.gw = hop.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(g) => ip_of(g),
                    _ => None,
                });
                r
            })
            .collect()
    }
}

fn message(spec: &RouteSpec) -> RouteMessage {
    let v6 = spec
        .dst
        .map(|d| d.addr().is_ipv6())
        .or(spec.gw.map(|g| g.is_ipv6()))
        .unwrap_or(false);
    let mut msg = RouteMessage::default();
    msg.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    // Go netlink's default protocol; `ip route` then shows no "proto".
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::from(spec.scope.unwrap_or(0));
    msg.header.kind = RouteType::Unicast;
    let table = spec.table.unwrap_or(u32::from(RouteHeader::RT_TABLE_MAIN));
    msg.header.table = u8::try_from(table).unwrap_or(0); // >255: RTA_TABLE only
    msg.attributes.push(RouteAttribute::Table(table));
    if let Some(dst) = spec.dst {
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.attributes
            .push(RouteAttribute::Destination(dst.network().into()));
    }
    if let Some(gw) = spec.gw {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(oif) = spec.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(p) = spec.priority {
        msg.attributes.push(RouteAttribute::Priority(p));
    }
    let mut metrics = Vec::new();
    if let Some(mtu) = spec.mtu {
        metrics.push(RouteMetric::Mtu(mtu));
    }
    if let Some(advmss) = spec.advmss {
        metrics.push(RouteMetric::Advmss(advmss));
    }
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    msg
}

fn describe(spec: &RouteSpec) -> String {
    let dst = spec
        .dst
        .map(|d| d.to_string())
        .unwrap_or_else(|| "default".into());
    match spec.gw {
        Some(gw) => format!("{dst} via {gw}"),
        None => dst,
    }
}

impl Netlink {
    /// `ip route append`-like add: `NLM_F_CREATE` without `NLM_F_EXCL`, as
    /// the reference's `RouteAddEcmp` (an IPv6 route with the same prefix
    /// becomes a multipath sibling). `Ok(false)` when the identical route
    /// already exists.
    pub fn add_route(&mut self, spec: &RouteSpec) -> Result<bool> {
        let op = format!("add route {}", describe(spec));
        match self.request(&op, RouteNetlinkMessage::NewRoute(message(spec)), CREATE) {
            Ok(_) => Ok(true),
            Err(e) if e.is(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip route del`; `Ok(false)` when there was no such route.
    pub fn del_route(&mut self, spec: &RouteSpec) -> Result<bool> {
        let op = format!("delete route {}", describe(spec));
        match self.request(&op, RouteNetlinkMessage::DelRoute(message(spec)), ACK) {
            Ok(_) => Ok(true),
            Err(e) if e.is(Errno::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip [-6] route show table all` for one family.
    pub fn routes(&mut self, v6: bool) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let replies = self.request("dump routes", RouteNetlinkMessage::GetRoute(msg), DUMP)?;
        Ok(replies
            .iter()
            .flat_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Route::from_message(r),
                _ => Vec::new(),
            })
            .collect())
    }
}
