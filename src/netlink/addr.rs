//! Address operations: `ip addr` equivalents.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{Netlink, Result, ACK, CREATE_EXCL, DUMP};

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
    fn from_message(msg: &AddressMessage) -> Option<Address> {
        let mut local = None;
        let mut address = None;
        let mut flags = None;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Flags(f) => flags = Some(*f),
                _ => {}
            }
        }
        // For IPv4 IFA_LOCAL is the interface address (IFA_ADDRESS is the
        // peer on point-to-point links); IPv6 only sends IFA_ADDRESS.
        let ip = local.or(address)?;
        let net = IpNet::new(ip, msg.header.prefix_len).ok()?;
        let flags = flags
            .unwrap_or_else(|| AddressFlags::from_bits_truncate(msg.header.flags.bits().into()));
        Some(Address {
            index: msg.header.index,
            net,
            scope: u8::from(msg.header.scope),
            tentative: flags.contains(AddressFlags::Tentative),
            dad_failed: flags.contains(AddressFlags::Dadfailed),
        })
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The message `ip addr add NET dev INDEX` sends (IPv4 gets the broadcast
/// address computed, as iproute2 and Go netlink do).
fn message(index: u32, net: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(net.addr());
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    msg.attributes.push(AddressAttribute::Local(net.addr()));
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    if let IpNet::V4(v4) = net {
        if v4.prefix_len() < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
    }
    msg
}

impl Netlink {
    /// `ip addr show [dev INDEX]`, optionally restricted to one family.
    pub fn addresses(&mut self, index: Option<u32>, v6: Option<bool>) -> Result<Vec<Address>> {
        let mut msg = AddressMessage::default();
        msg.header.family = match v6 {
            Some(true) => AddressFamily::Inet6,
            Some(false) => AddressFamily::Inet,
            None => AddressFamily::Unspec,
        };
        let replies = self.request("dump addresses", RouteNetlinkMessage::GetAddress(msg), DUMP)?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Address::from_message(a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .filter(|a| v6.is_none_or(|v6| a.net.addr().is_ipv6() == v6))
            .collect())
    }

    /// `ip addr add NET dev INDEX`; `Ok(false)` when the address is already
    /// there (parallel ADDs adding the same gateway, plugins#366).
    pub fn add_address(&mut self, index: u32, net: IpNet) -> Result<bool> {
        let op = format!("add address {net} to link #{index}");
        match self.request(
            &op,
            RouteNetlinkMessage::NewAddress(message(index, net)),
            CREATE_EXCL,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip addr del NET dev INDEX`; `Ok(false)` when it was not there.
    pub fn del_address(&mut self, index: u32, net: IpNet) -> Result<bool> {
        let op = format!("delete address {net} from link #{index}");
        match self.request(
            &op,
            RouteNetlinkMessage::DelAddress(message(index, net)),
            ACK,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is(Errno::EADDRNOTAVAIL) || e.is(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
