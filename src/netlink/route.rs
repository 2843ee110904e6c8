//! Route operations: `ip route` equivalents.

use std::net::IpAddr;

use ipnet::IpNet;
use nix::errno::Errno;

use super::wire::{self, Request};
use super::{Netlink, Result, ACK, CREATE, DUMP};

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_METRICS: u16 = 8;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;

const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;

const RT_TABLE_MAIN: u32 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

/// Size of `struct rtmsg`.
const RTMSG_LEN: usize = 12;
/// Size of `struct rtnexthop`.
const RTNEXTHOP_LEN: usize = 8;

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

/// One `struct rtnexthop` of `RTA_MULTIPATH`: interface and gateway.
struct NextHop {
    oif: u32,
    gw: Option<IpAddr>,
}

/// Walks the `rtnexthop`s of `RTA_MULTIPATH`; stops at a malformed one.
fn next_hops(mut data: &[u8]) -> Vec<NextHop> {
    let mut hops = Vec::new();
    while let (Some(len), Some(oif)) = (wire::read_u16(data, 0), wire::read_u32(data, 4)) {
        let Some(attrs) = data.get(RTNEXTHOP_LEN..usize::from(len)) else {
            break;
        };
        let gw = wire::attrs(attrs)
            .find(|(kind, _)| *kind == RTA_GATEWAY)
            .and_then(|(_, value)| wire::value_ip(value));
        hops.push(NextHop { oif, gw });
        data = data.get((usize::from(len) + 3) & !3..).unwrap_or(&[]);
    }
    hops
}

impl Route {
    /// Expands one `RTM_NEWROUTE` payload into routes (one per multipath
    /// next hop). `None` when the message is too short; an empty list for
    /// families other than IPv4/IPv6.
    fn parse(payload: &[u8]) -> Option<Vec<Route>> {
        let header = payload.get(..RTMSG_LEN)?;
        let v6 = match header[0] {
            AF_INET6 => true,
            AF_INET => false,
            _ => return Some(Vec::new()),
        };
        let mut dst = unspecified(v6);
        let mut route = Route {
            dst: IpNet::from(dst),
            gw: None,
            oif: None,
            table: u32::from(header[4]),
            scope: header[6],
            priority: None,
            kind: header[7],
        };
        let mut hops = Vec::new();
        for (kind, value) in wire::attrs(&payload[RTMSG_LEN..]) {
            match kind {
                RTA_DST => dst = wire::value_ip(value).unwrap_or(dst),
                RTA_GATEWAY => route.gw = wire::value_ip(value),
                RTA_OIF => route.oif = wire::value_u32(value),
                RTA_TABLE => route.table = wire::value_u32(value).unwrap_or(route.table),
                RTA_PRIORITY => route.priority = wire::value_u32(value),
                RTA_MULTIPATH => hops = next_hops(value),
                _ => {}
            }
        }
        let Ok(net) = IpNet::new(dst, header[1]) else {
            return Some(Vec::new());
        };
        route.dst = net;
        if hops.is_empty() {
            return Some(vec![route]);
        }
        Some(
            hops.into_iter()
                .map(|hop| Route {
                    oif: Some(hop.oif),
                    gw: hop.gw,
                    ..route.clone()
                })
                .collect(),
        )
    }
}

/// `struct rtmsg` for `family` with everything else zero (a dump).
fn rtmsg(family: u8) -> [u8; RTMSG_LEN] {
    let mut h = [0u8; RTMSG_LEN];
    h[0] = family;
    h
}

fn request(msg_type: u16, spec: &RouteSpec) -> Request {
    let v6 = spec
        .dst
        .map(|d| d.addr().is_ipv6())
        .or(spec.gw.map(|g| g.is_ipv6()))
        .unwrap_or(false);
    let table = spec.table.unwrap_or(RT_TABLE_MAIN);
    let mut header = rtmsg(if v6 { AF_INET6 } else { AF_INET });
    header[1] = spec.dst.map_or(0, |d| d.prefix_len());
    header[4] = u8::try_from(table).unwrap_or(0); // >255: RTA_TABLE only
                                                  // Go netlink's default protocol; `ip route` then shows no "proto".
    header[5] = RTPROT_BOOT;
    header[6] = spec.scope.unwrap_or(0);
    header[7] = RTN_UNICAST;
    let mut req = Request::new(msg_type, &header);
    req.attr_u32(RTA_TABLE, table);
    if let Some(dst) = spec.dst {
        req.attr(RTA_DST, &wire::ip_bytes(dst.network()));
    }
    if let Some(gw) = spec.gw {
        req.attr(RTA_GATEWAY, &wire::ip_bytes(gw));
    }
    if let Some(oif) = spec.oif {
        req.attr_u32(RTA_OIF, oif);
    }
    if let Some(p) = spec.priority {
        req.attr_u32(RTA_PRIORITY, p);
    }
    if spec.mtu.is_some() || spec.advmss.is_some() {
        let metrics = req.begin_nest(RTA_METRICS);
        if let Some(mtu) = spec.mtu {
            req.attr_u32(RTAX_MTU, mtu);
        }
        if let Some(advmss) = spec.advmss {
            req.attr_u32(RTAX_ADVMSS, advmss);
        }
        req.end_nest(metrics);
    }
    req
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
        match self.ack(&op, request(RTM_NEWROUTE, spec), CREATE) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip route del`; `Ok(false)` when there was no such route.
    pub fn del_route(&mut self, spec: &RouteSpec) -> Result<bool> {
        let op = format!("delete route {}", describe(spec));
        match self.ack(&op, request(RTM_DELROUTE, spec), ACK) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip [-6] route show table all` for one family.
    pub fn routes(&mut self, v6: bool) -> Result<Vec<Route>> {
        let family = if v6 { AF_INET6 } else { AF_INET };
        let mut out = Vec::new();
        let req = Request::new(RTM_GETROUTE, &rtmsg(family));
        self.request("dump routes", req, DUMP, |msg_type, payload| {
            if msg_type == RTM_NEWROUTE {
                out.extend(Route::parse(payload)?);
            }
            Some(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::wire::payload;

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
        let routes = Route::parse(&payload(request(RTM_NEWROUTE, &spec))).expect("route");
        let want = Route {
            dst: spec.dst.expect("dst"),
            gw: spec.gw,
            oif: Some(3),
            table: 1000,
            scope: 0,
            priority: Some(20),
            kind: RTN_UNICAST,
        };
        assert_eq!(routes, vec![want]);
    }

    #[test]
    fn default_route_and_other_families() {
        let mut header = rtmsg(AF_INET6);
        header[4] = 254;
        let routes = Route::parse(&payload(Request::new(RTM_NEWROUTE, &header))).expect("route");
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].dst.to_string(), "::/0");
        assert_eq!(routes[0].table, 254);
        let other = Route::parse(&payload(Request::new(RTM_NEWROUTE, &rtmsg(7))));
        assert_eq!(other, Some(Vec::new()));
    }

    #[test]
    fn expands_multipath() {
        let mut header = rtmsg(AF_INET6);
        header[1] = 64;
        let mut req = Request::new(RTM_NEWROUTE, &header);
        req.attr(RTA_DST, &wire::ip_bytes("fd00::".parse().expect("ip")));
        let mut hops = Vec::new();
        for (oif, gw) in [(2u32, "fd00::1"), (5, "fd00::2")] {
            let gw = wire::ip_bytes(gw.parse().expect("ip"));
            let len = RTNEXTHOP_LEN + 4 + gw.len();
            hops.extend_from_slice(&(len as u16).to_ne_bytes());
            hops.extend_from_slice(&[0, 0]);
            hops.extend_from_slice(&oif.to_ne_bytes());
            hops.extend_from_slice(&((4 + gw.len()) as u16).to_ne_bytes());
            hops.extend_from_slice(&RTA_GATEWAY.to_ne_bytes());
            hops.extend_from_slice(&gw);
        }
        req.attr(RTA_MULTIPATH, &hops);
        let full = payload(req);
        let routes = Route::parse(&full).expect("routes");
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
            let parsed = Route::parse(&full[..cut]);
            assert_eq!(parsed.is_some(), cut >= RTMSG_LEN, "{cut}");
        }
    }
}
