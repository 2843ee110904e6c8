//! Address operations: `ip addr` equivalents, as netlink-packet-route
//! `AddressMessage`s.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::Parseable;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::AddressFamily;
use nix::errno::Errno;

use super::{undecodable, Netlink, Result, ACK, CREATE_EXCL};

const RTM_NEWADDR: u16 = libc::RTM_NEWADDR;

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
    /// The facts of a kernel `RTM_NEWADDR` reply; `None` for an address
    /// without a usable IP.
    fn from_message(msg: AddressMessage) -> Option<Address> {
        let mut local = None;
        let mut address = None;
        let mut flags = None;
        for attr in msg.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(ip),
                AddressAttribute::Address(ip) => address = Some(ip),
                AddressAttribute::Flags(f) => flags = Some(f),
                _ => {}
            }
        }
        // For IPv4 IFA_LOCAL is the interface address (IFA_ADDRESS is the
        // peer on point-to-point links); IPv6 only sends IFA_ADDRESS.
        let net = IpNet::new(local.or(address)?, msg.header.prefix_len).ok()?;
        // IFA_FLAGS (32 bits) supersedes the 8-bit `ifa_flags`.
        let header = msg.header.flags;
        let (tentative, dad_failed) = match flags {
            Some(f) => (
                f.contains(AddressFlags::Tentative),
                f.contains(AddressFlags::Dadfailed),
            ),
            None => (
                header.contains(AddressHeaderFlags::Tentative),
                header.contains(AddressHeaderFlags::Dadfailed),
            ),
        };
        Some(Address {
            index: msg.header.index,
            net,
            scope: msg.header.scope.into(),
            tentative,
            dad_failed,
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
    msg.attributes = vec![
        AddressAttribute::Local(net.addr()),
        AddressAttribute::Address(net.addr()),
    ];
    if let IpNet::V4(v4) = net {
        if v4.prefix_len() < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
    }
    msg
}

fn dump_message(v6: Option<bool>) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = match v6 {
        Some(true) => AddressFamily::Inet6,
        Some(false) => AddressFamily::Inet,
        None => AddressFamily::Unspec,
    };
    msg
}

/// Decodes an address reply; other message types and addresses without a
/// usable IP yield nothing.
fn parse_address(msg_type: u16, payload: &[u8]) -> Result<Option<Address>, String> {
    if msg_type != RTM_NEWADDR {
        return Ok(None);
    }
    let msg = AddressMessage::parse(payload).map_err(|e| undecodable("address", e))?;
    Ok(Address::from_message(msg))
}

impl Netlink {
    /// `ip addr show [dev INDEX]`, optionally restricted to one family.
    pub fn addresses(&mut self, index: Option<u32>, v6: Option<bool>) -> Result<Vec<Address>> {
        let msg = dump_message(v6);
        let mut out = self.dump(
            "dump addresses",
            libc::RTM_GETADDR,
            &msg,
            |t, payload, out| {
                out.extend(parse_address(t, payload)?);
                Ok(())
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
        let msg = message(index, net);
        match self.ack(&op, libc::RTM_NEWADDR, &msg, CREATE_EXCL) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip addr del NET dev INDEX`; `Ok(false)` when it was not there.
    pub fn del_address(&mut self, index: u32, net: IpNet) -> Result<bool> {
        let op = format!("delete address {net} from link #{index}");
        let msg = message(index, net);
        match self.ack(&op, libc::RTM_DELADDR, &msg, ACK) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::EADDRNOTAVAIL) || e.is(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::netlink::test_bytes::{emit, hex};

    use super::*;

    /// `ip addr add 10.1.0.1/16 dev #3`, byte for byte: `ifaddrmsg`,
    /// `IFA_LOCAL`, `IFA_ADDRESS`, `IFA_BROADCAST`.
    #[cfg(target_endian = "little")]
    #[test]
    fn add_request_is_the_kernel_abi() {
        let net: IpNet = "10.1.0.1/16".parse().expect("net");
        assert_eq!(
            emit(&message(3, net)),
            hex("02100000 03000000 08000200 0a010001 08000100 0a010001 08000400 0a01ffff")
        );
        let net: IpNet = "10.1.0.1/31".parse().expect("net");
        assert_eq!(emit(&message(3, net)).len(), 8 + 16, "no broadcast for /31");
    }

    #[test]
    fn parses_addresses() {
        let net: IpNet = "10.1.0.1/16".parse().expect("net");
        let a = parse_address(RTM_NEWADDR, &emit(&message(3, net))).expect("decodes");
        let want = Address {
            index: 3,
            net,
            scope: 0,
            tentative: false,
            dad_failed: false,
        };
        assert_eq!(a, Some(want));
        assert_eq!(
            parse_address(RTM_NEWADDR + 1, &emit(&message(3, net))),
            Ok(None)
        );

        // IPv6: IFA_ADDRESS only; IFA_FLAGS overrides the header's flags.
        // ifaddrmsg: AF_INET6, /64, IFA_F_DADFAILED, scope link, index 4.
        let header = hex("0a4008fd 04000000");
        let ip = hex("14000100 fe800000 00000000 00000000 00000001");
        let a = parse_address(RTM_NEWADDR, &[header.clone(), ip.clone()].concat())
            .expect("decodes")
            .expect("address");
        assert!(a.dad_failed && !a.tentative);
        assert_eq!(
            (a.index, a.scope, a.net.to_string()),
            (4, 253, "fe80::1/64".into())
        );
        let flags = hex("08000800 40000000"); // IFA_FLAGS: IFA_F_TENTATIVE
        let a = parse_address(RTM_NEWADDR, &[header, ip, flags].concat())
            .expect("decodes")
            .expect("address");
        assert!(a.tentative && !a.dad_failed);
    }

    #[test]
    fn truncated_address_never_panics() {
        let net: IpNet = "fd00::1/64".parse().expect("net");
        let full = emit(&message(3, net));
        for cut in 0..full.len() {
            let _ = parse_address(RTM_NEWADDR, &full[..cut]);
        }
        assert!(parse_address(RTM_NEWADDR, &full[..4]).is_err());
        // A bad prefix length is no address, not an error.
        let mut bad = full.clone();
        bad[1] = 200;
        assert_eq!(parse_address(RTM_NEWADDR, &bad), Ok(None));
    }
}
