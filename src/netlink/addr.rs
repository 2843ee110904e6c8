//! Address operations: `ip addr` equivalents.

use std::net::IpAddr;

use ipnet::IpNet;
use nix::errno::Errno;

use super::wire::{self, Request};
use super::{Netlink, Result, ACK, CREATE_EXCL, DUMP};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;

const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_TENTATIVE: u32 = 0x40;

/// Size of `struct ifaddrmsg`.
const IFADDRMSG_LEN: usize = 8;

/// One interface address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Interface index.
    pub index: u32,
    /// Address with its prefix length.
    pub net: IpNet,
    /// Scope (0 global, 253 link, 254 host).
    pub scope: u8,
    /// IPv6 DAD has not finished yet.
    pub tentative: bool,
    /// IPv6 DAD found a duplicate.
    pub dad_failed: bool,
}

impl Address {
    /// Decodes an `RTM_NEWADDR` payload. `Ok(None)` for an address without
    /// a usable IP; `Err(())` when the message is too short.
    fn parse(payload: &[u8]) -> Result<Option<Address>, ()> {
        let header = payload.get(..IFADDRMSG_LEN).ok_or(())?;
        let mut local = None;
        let mut address = None;
        let mut flags = None;
        for (kind, value) in wire::attrs(&payload[IFADDRMSG_LEN..]) {
            match kind {
                IFA_LOCAL => local = wire::value_ip(value),
                IFA_ADDRESS => address = wire::value_ip(value),
                IFA_FLAGS => flags = wire::value_u32(value),
                _ => {}
            }
        }
        // For IPv4 IFA_LOCAL is the interface address (IFA_ADDRESS is the
        // peer on point-to-point links); IPv6 only sends IFA_ADDRESS.
        let Some(ip) = local.or(address) else {
            return Ok(None);
        };
        let Ok(net) = IpNet::new(ip, header[1]) else {
            return Ok(None);
        };
        // IFA_FLAGS (32 bits) supersedes the 8-bit `ifa_flags`.
        let flags = flags.unwrap_or(u32::from(header[2]));
        Ok(Some(Address {
            index: wire::read_u32(header, 4).ok_or(())?,
            net,
            scope: header[3],
            tentative: flags & IFA_F_TENTATIVE != 0,
            dad_failed: flags & IFA_F_DADFAILED != 0,
        }))
    }
}

/// `struct ifaddrmsg`: family, prefix length, flags 0, scope universe.
fn ifaddrmsg(family: u8, prefix_len: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut h = [0u8; IFADDRMSG_LEN];
    h[0] = family;
    h[1] = prefix_len;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h
}

fn family_of(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// The message `ip addr add NET dev INDEX` sends (IPv4 gets the broadcast
/// address computed, as iproute2 and Go netlink do).
fn request(msg_type: u16, index: u32, net: IpNet) -> Request {
    let header = ifaddrmsg(family_of(net.addr()), net.prefix_len(), index);
    let mut req = Request::new(msg_type, &header);
    let ip = wire::ip_bytes(net.addr());
    req.attr(IFA_LOCAL, &ip).attr(IFA_ADDRESS, &ip);
    if let IpNet::V4(v4) = net {
        if v4.prefix_len() < 31 {
            req.attr(IFA_BROADCAST, &v4.broadcast().octets());
        }
    }
    req
}

fn dump_request(v6: Option<bool>) -> Request {
    let family = match v6 {
        Some(true) => AF_INET6,
        Some(false) => AF_INET,
        None => AF_UNSPEC,
    };
    Request::new(RTM_GETADDR, &ifaddrmsg(family, 0, 0))
}

impl Netlink {
    /// `ip addr show [dev INDEX]`, optionally restricted to one family.
    pub fn addresses(&mut self, index: Option<u32>, v6: Option<bool>) -> Result<Vec<Address>> {
        let mut out = Vec::new();
        self.request(
            "dump addresses",
            dump_request(v6),
            DUMP,
            |msg_type, payload| {
                if msg_type == RTM_NEWADDR {
                    out.extend(Address::parse(payload).ok()?);
                }
                Some(())
            },
        )?;
        out.retain(|a| {
            index.is_none_or(|i| a.index == i) && v6.is_none_or(|v6| a.net.addr().is_ipv6() == v6)
        });
        Ok(out)
    }

    /// `ip addr add NET dev INDEX`; `Ok(false)` when the address is already
    /// there (parallel ADDs adding the same gateway, plugins#366).
    pub fn add_address(&mut self, index: u32, net: IpNet) -> Result<bool> {
        let op = format!("add address {net} to link #{index}");
        match self.ack(&op, request(RTM_NEWADDR, index, net), CREATE_EXCL) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip addr del NET dev INDEX`; `Ok(false)` when it was not there.
    pub fn del_address(&mut self, index: u32, net: IpNet) -> Result<bool> {
        let op = format!("delete address {net} from link #{index}");
        match self.ack(&op, request(RTM_DELADDR, index, net), ACK) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::EADDRNOTAVAIL) || e.is(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::wire::payload;

    #[test]
    fn parses_addresses() {
        let net: IpNet = "10.1.0.1/16".parse().expect("net");
        let a = Address::parse(&payload(request(RTM_NEWADDR, 3, net))).expect("long enough");
        let want = Address {
            index: 3,
            net,
            scope: 0,
            tentative: false,
            dad_failed: false,
        };
        assert_eq!(a, Some(want));

        // IPv6: IFA_ADDRESS only; IFA_FLAGS overrides the header's flags.
        let mut header = ifaddrmsg(AF_INET6, 64, 4);
        header[2] = IFA_F_DADFAILED as u8;
        header[3] = 253;
        let mut req = Request::new(RTM_NEWADDR, &header);
        req.attr(IFA_ADDRESS, &wire::ip_bytes("fe80::1".parse().expect("ip")));
        let a = Address::parse(&payload(req))
            .expect("long enough")
            .expect("address");
        assert!(a.dad_failed && !a.tentative);
        assert_eq!(
            (a.index, a.scope, a.net.to_string()),
            (4, 253, "fe80::1/64".into())
        );
        let mut req = Request::new(RTM_NEWADDR, &header);
        req.attr(IFA_ADDRESS, &wire::ip_bytes("fe80::1".parse().expect("ip")))
            .attr_u32(IFA_FLAGS, IFA_F_TENTATIVE);
        let a = Address::parse(&payload(req))
            .expect("long enough")
            .expect("address");
        assert!(a.tentative && !a.dad_failed);
    }

    #[test]
    fn truncated_address_never_panics() {
        let net: IpNet = "fd00::1/64".parse().expect("net");
        let full = payload(request(RTM_NEWADDR, 3, net));
        for cut in 0..full.len() {
            let parsed = Address::parse(&full[..cut]);
            assert_eq!(parsed.is_ok(), cut >= IFADDRMSG_LEN, "{cut}");
        }
        // A bad prefix length is no address, not an error.
        let mut bad = full.clone();
        bad[1] = 200;
        assert_eq!(Address::parse(&bad), Ok(None));
    }
}
