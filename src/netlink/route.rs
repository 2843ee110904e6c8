//! Route operations: `ip route` equivalents, as netlink-packet-route
//! `RouteMessage`s.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::Parseable;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use nix::errno::Errno;

use super::{undecodable, Netlink, Result, ACK, CREATE};

const RTM_NEWROUTE: u16 = libc::RTM_NEWROUTE;
const RT_TABLE_MAIN: u32 = libc::RT_TABLE_MAIN as u32;

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

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    }
}

/// An IP of a route attribute (MPLS and other families: none).
fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

impl Route {
    /// Expands one kernel `RTM_NEWROUTE` reply into routes (one per
    /// multipath next hop); none for families other than IPv4/IPv6.
    fn from_message(msg: RouteMessage) -> Vec<Route> {
        let v6 = match msg.header.address_family {
            AddressFamily::Inet6 => true,
            AddressFamily::Inet => false,
            _ => return Vec::new(),
        };
        let mut dst = unspecified(v6);
        let mut route = Route {
            dst: IpNet::from(dst),
            gw: None,
            oif: None,
            table: u32::from(msg.header.table),
            scope: msg.header.scope.into(),
            priority: None,
            kind: msg.header.kind.into(),
        };
        let mut hops = Vec::new();
        for attr in msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst = ip_of(&a).unwrap_or(dst),
                RouteAttribute::Gateway(a) => route.gw = ip_of(&a),
                RouteAttribute::Oif(oif) => route.oif = Some(oif),
                RouteAttribute::Table(table) => route.table = table,
                RouteAttribute::Priority(p) => route.priority = Some(p),
                RouteAttribute::MultiPath(next) => hops = next,
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
        hops.into_iter()
            .map(|hop| Route {
                oif: Some(hop.interface_index),
                gw: hop.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(gw) => ip_of(gw),
                    _ => None,
                }),
                ..route.clone()
            })
            .collect()
    }
}

/// The message `ip route add|del` sends for `spec`.
fn message(spec: &RouteSpec) -> RouteMessage {
    let v6 = spec
        .dst
        .map(|d| d.addr().is_ipv6())
        .or(spec.gw.map(|g| g.is_ipv6()))
        .unwrap_or(false);
    let table = spec.table.unwrap_or(RT_TABLE_MAIN);
    let mut msg = RouteMessage::default();
    let header = &mut msg.header;
    header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    header.destination_prefix_length = spec.dst.map_or(0, |d| d.prefix_len());
    header.table = u8::try_from(table).unwrap_or(0); // >255: RTA_TABLE only
                                                     // Go netlink's default protocol; `ip route` then shows no "proto".
    header.protocol = RouteProtocol::Boot;
    header.scope = spec.scope.map_or(RouteScope::Universe, RouteScope::from);
    header.kind = RouteType::Unicast;
    let attrs = &mut msg.attributes;
    attrs.push(RouteAttribute::Table(table));
    if let Some(dst) = spec.dst {
        attrs.push(RouteAttribute::Destination(route_address(dst.network())));
    }
    if let Some(gw) = spec.gw {
        attrs.push(RouteAttribute::Gateway(route_address(gw)));
    }
    attrs.extend(spec.oif.map(RouteAttribute::Oif));
    attrs.extend(spec.priority.map(RouteAttribute::Priority));
    let mut metrics = Vec::new();
    metrics.extend(spec.mtu.map(RouteMetric::Mtu));
    metrics.extend(spec.advmss.map(RouteMetric::Advmss));
    if !metrics.is_empty() {
        attrs.push(RouteAttribute::Metrics(metrics));
    }
    msg
}

/// `ip [-6] route show table all`: a dump of one family.
fn dump_message(v6: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    msg
}

/// Decodes a route reply; other message types yield nothing.
fn parse_routes(msg_type: u16, payload: &[u8]) -> Result<Vec<Route>, String> {
    if msg_type != RTM_NEWROUTE {
        return Ok(Vec::new());
    }
    let msg = RouteMessage::parse(payload).map_err(|e| undecodable("route", e))?;
    Ok(Route::from_message(msg))
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
        match self.ack(&op, libc::RTM_NEWROUTE, &message(spec), CREATE) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip route del`; `Ok(false)` when there was no such route.
    pub fn del_route(&mut self, spec: &RouteSpec) -> Result<bool> {
        let op = format!("delete route {}", describe(spec));
        match self.ack(&op, libc::RTM_DELROUTE, &message(spec), ACK) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip [-6] route show table all` for one family.
    pub fn routes(&mut self, v6: bool) -> Result<Vec<Route>> {
        let msg = dump_message(v6);
        self.dump(
            "dump routes",
            libc::RTM_GETROUTE,
            &msg,
            |t, payload, out| {
                out.extend(parse_routes(t, payload)?);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::netlink::test_bytes::{emit, hex};

    use super::*;

    /// `ip route add 10.1.0.0/16 via 10.1.0.1 dev #3 table 1000 metric 20
    /// mtu 1400`, byte for byte: `rtmsg` (table 0: above 255), then
    /// `RTA_TABLE`, `RTA_DST`, `RTA_GATEWAY`, `RTA_OIF`, `RTA_PRIORITY`,
    /// `RTA_METRICS { RTAX_MTU }`.
    #[cfg(target_endian = "little")]
    #[test]
    fn add_request_is_the_kernel_abi() {
        let spec = RouteSpec {
            dst: Some("10.1.0.0/16".parse().expect("net")),
            gw: Some("10.1.0.1".parse().expect("ip")),
            oif: Some(3),
            table: Some(1000),
            priority: Some(20),
            mtu: Some(1400),
            ..Default::default()
        };
        let want = hex("02100000 00030001 00000000
             08000f00 e8030000 08000100 0a010000 08000500 0a010001
             08000400 03000000 08000600 14000000 0c000800 08000200 78050000");
        assert_eq!(emit(&message(&spec)), want);
    }

    #[test]
    fn parses_a_route() {
        let spec = RouteSpec {
            dst: Some("10.1.0.0/16".parse().expect("net")),
            gw: Some("10.1.0.1".parse().expect("ip")),
            oif: Some(3),
            table: Some(1000),
            priority: Some(20),
            mtu: Some(1400),
            ..Default::default()
        };
        let routes = parse_routes(RTM_NEWROUTE, &emit(&message(&spec))).expect("route");
        let want = Route {
            dst: spec.dst.expect("dst"),
            gw: spec.gw,
            oif: Some(3),
            table: 1000,
            scope: 0,
            priority: Some(20),
            kind: libc::RTN_UNICAST,
        };
        assert_eq!(routes, vec![want]);
    }

    #[test]
    fn default_route_and_other_families() {
        let mut msg = dump_message(true);
        msg.header.table = 254;
        let routes = parse_routes(RTM_NEWROUTE, &emit(&msg)).expect("route");
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].dst.to_string(), "::/0");
        assert_eq!(routes[0].table, 254);
        let mut other = dump_message(false);
        other.header.address_family = AddressFamily::Bridge;
        assert_eq!(parse_routes(RTM_NEWROUTE, &emit(&other)), Ok(Vec::new()));
    }

    /// A kernel multipath reply (`RTA_MULTIPATH` of two `rtnexthop`s) as
    /// bytes: one route per next hop.
    #[cfg(target_endian = "little")]
    #[test]
    fn expands_multipath() {
        // rtmsg: AF_INET6 /64, table main, proto boot, universe, unicast.
        let full = hex("0a400000 fe030001 00000000
             14000100 fd000000 00000000 00000000 00000000
             3c000900
               1c000000 02000000 14000500 fd000000 00000000 00000000 00000001
               1c000000 05000000 14000500 fd000000 00000000 00000000 00000002");
        let routes = parse_routes(RTM_NEWROUTE, &full).expect("routes");
        let got: Vec<_> = routes
            .iter()
            .map(|r| (r.dst.to_string(), r.oif, r.gw.map(|g| g.to_string())))
            .collect();
        assert_eq!(
            got,
            vec![
                ("fd00::/64".into(), Some(2), Some("fd00::1".into())),
                ("fd00::/64".into(), Some(5), Some("fd00::2".into())),
            ]
        );
        for cut in 0..full.len() {
            let _ = parse_routes(RTM_NEWROUTE, &full[..cut]);
        }
        assert!(parse_routes(RTM_NEWROUTE, &full[..8]).is_err());
    }
}
