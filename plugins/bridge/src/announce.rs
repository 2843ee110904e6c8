//! The pod's gratuitous ARP, sent off the ADD's path (issue 16;
//! docs/benchmarks.md F16).
//!
//! The reference sets `arp_notify` before the container interface goes up,
//! so the kernel announces the pod's IPv4 addresses from the netdev
//! notifier of that `RTM_SETLINK`: under RTNL, and the bridge floods the
//! broadcast to every port within the same syscall (each copy crosses a
//! veth into a pod's stack). That work grows with the pods on the node and
//! blocks every other netlink request on the node meanwhile. Here the
//! interface goes up first and `arp_notify` is set right after (the same
//! end state: later link events still announce), and a forked helper sends
//! the packets the kernel would have sent (`cni::arp`) from a packet socket
//! in the pod netns, without RTNL, while the plugin goes on. If the fork
//! fails they are sent in-process.

use std::ffi::CStr;
use std::net::Ipv4Addr;

use cni::arp;
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
/// process has a single thread. Best effort, like the kernel's own: a
/// failure changes nothing for the caller. Called once the bridge port
/// forwards (a broadcast sent earlier is lost), with a little of the ADD
/// still to do: until the child has put `/dev/null` over them it holds the
/// caller's stdout and stderr, and the caller reads them to EOF.
pub fn start(netns: &NetNs, what: &Announcement) {
    if what.addrs.is_empty() {
        return;
    }
    // SAFETY: the caller guarantees a single-threaded process, so the
    // child may do anything; it never returns from this branch.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            if detach(HELPER_NAME, netns, None).is_ok() {
                let _ = arp::announce(what.index, what.mac, &what.addrs);
            }
            // SAFETY: ends the child without running the parent's exit
            // handlers or flushing its copied stdio buffers.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { .. }) => {}
        Err(_) => {
            let _ = netns.run(|| arp::announce(what.index, what.mac, &what.addrs));
        }
    }
}
