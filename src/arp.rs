//! Gratuitous ARP: the packet the kernel's `arp_notify` sends, and a
//! packet socket to send (or watch) ARP with. Used by the bridge plugin to
//! announce a pod off the ADD's path (plugins/bridge/src/announce.rs).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A datagram packet socket for ARP (`ETH_P_ARP`) in the calling thread's
/// netns: bound to nothing, it also sees every ARP on every interface.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP_BE),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ETH_P_ARP` in network byte order, as packet sockets take it.
const ETH_P_ARP_BE: u16 = (libc::ETH_P_ARP as u16).to_be();

/// Broadcasts one gratuitous ARP request per address out of interface
/// `index` (of the calling thread's netns), as the kernel's
/// `inetdev_send_gratuitous_arp` does.
pub fn announce(index: u32, mac: [u8; 6], addrs: &[Ipv4Addr]) -> io::Result<()> {
    let sock = packet_socket()?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP_BE;
    to.sll_ifindex =
        i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for addr in addrs {
        let packet = gratuitous(mac, *addr);
        // SAFETY: buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The ARP payload the kernel's `arp_notify` sends for `addr`
/// (`arp_create(ARPOP_REQUEST, ETH_P_ARP, addr, dev, addr, NULL, dev_addr,
/// NULL)`): Ethernet/IPv4, request, sender and target IP both `addr`,
/// target MAC zero.
pub fn gratuitous(mac: [u8; 6], addr: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&libc::ARPHRD_ETHER.to_be_bytes());
    p[2..4].copy_from_slice(&(libc::ETH_P_IP as u16).to_be_bytes());
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&libc::ARPOP_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&addr.octets());
    p[24..28].copy_from_slice(&addr.octets());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a gratuitous ARP as `tcpdump -xx` shows the kernel's
    /// (after the Ethernet header).
    #[test]
    fn payload_is_the_kernels() {
        let p = gratuitous([0x0a, 0x58, 10, 88, 0, 7], Ipv4Addr::new(10, 88, 0, 7));
        assert_eq!(
            crate::hex::encode(p),
            concat!(
                "0001",
                "0800",
                "06",
                "04",
                "0001",
                "0a580a580007",
                "0a580007",
                "000000000000",
                "0a580007"
            )
        );
    }
}
