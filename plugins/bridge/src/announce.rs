//! The pod's gratuitous ARP, sent off the ADD's path (issue 16;
//! docs/benchmarks.md F16).
//!
//! The reference sets `arp_notify` before the container interface goes up,
//! so the kernel announces the pod's IPv4 addresses from the netdev
//! notifier of that `RTM_SETLINK`: under RTNL, and the bridge floods the
//! broadcast to every port within the same syscall (each copy crosses a
//! veth into a pod's stack). That work grows with the pods on the node
//! (≈ 2 ms of the ADD at 500 pods) and blocks every other netlink request
//! on the node meanwhile. Here the interface goes up first and
//! `arp_notify` is set right after (the same end state: later link events
//! still announce), and a forked helper sends the packets the kernel would
//! have sent (`inetdev_send_gratuitous_arp`: per IPv4 address an ARP
//! request, sender = target = the address, target MAC zero, to broadcast)
//! from a packet socket in the pod netns, without RTNL, while the plugin
//! returns. If the fork fails they are sent in-process.

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use cni::netns::NetNs;
use nix::unistd::{fork, ForkResult};

use crate::detach::detach;

/// The helper's `comm`, as `ps` and `/proc/<pid>/status` show it.
pub const HELPER_NAME: &CStr = c"bridge-announce";

/// What to announce: the container interface and its IPv4 addresses.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// Interface index inside the pod netns.
    pub index: u32,
    /// Its hardware address.
    pub mac: [u8; 6],
    /// Its IPv4 addresses, in the order they were added.
    pub addrs: Vec<Ipv4Addr>,
}

/// Sends the announcement from a detached helper. Must be called while the
/// process has a single thread (the child allocates). Best effort, like the
/// kernel's own: a failure changes nothing for the caller.
pub fn start(netns: &NetNs, what: &Announcement) {
    if what.addrs.is_empty() {
        return;
    }
    // SAFETY: the caller guarantees a single-threaded process, so the
    // child may do anything; it never returns from this branch.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            if detach(HELPER_NAME, netns, None).is_ok() {
                let _ = send(what);
            }
            // SAFETY: ends the child without running the parent's exit
            // handlers or flushing its copied stdio buffers.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { .. }) => {}
        Err(_) => {
            let _ = netns.run(|| send(what));
        }
    }
}

/// Sends one gratuitous ARP request per address on the interface, from
/// the calling thread's netns.
fn send(what: &Announcement) -> io::Result<()> {
    let protocol = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = protocol;
    to.sll_ifindex =
        i32::try_from(what.index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for addr in &what.addrs {
        let packet = gratuitous_arp(what.mac, *addr);
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
fn gratuitous_arp(mac: [u8; 6], addr: Ipv4Addr) -> [u8; 28] {
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
        let p = gratuitous_arp([0x0a, 0x58, 10, 88, 0, 7], Ipv4Addr::new(10, 88, 0, 7));
        let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
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
