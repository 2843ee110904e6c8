//! The `lo` device inside the sandbox: up, down, state.

use std::os::fd::AsFd;
use std::path::Path;

use cni::error::{codes, CniError, Result};
use cni::netlink::{Link, Netlink};
use cni::netns::{NetNs, NetnsError};
use ipnet::IpNet;

const LO: &str = "lo";
/// The kernel gives every namespace's `lo` this index (`LOOPBACK_IFINDEX`),
/// so ADD and DEL address it without a lookup round trip.
const LO_INDEX: u32 = 1;

/// Opens `CNI_NETNS`; a missing variable is code 4 as the skeleton reports it.
fn open(netns: Option<&Path>) -> Result<NetNs> {
    let path = netns.ok_or_else(|| {
        CniError::new(
            codes::INVALID_ENV,
            "required env variables [CNI_NETNS] missing",
        )
    })?;
    Ok(NetNs::open(path)?)
}

/// A netlink socket inside `ns`, made by moving the calling thread there
/// for good. Why not `Netlink::open_in` (a helper thread): loopback does
/// nothing in its own namespace afterwards (stdout does not depend on
/// it), and the thread's creation is a visible share of a call this short.
fn enter(ns: &NetNs) -> Result<Netlink> {
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| CniError::internal(format!("failed to enter netns {:?}: {e}", ns.path())))?;
    Ok(Netlink::open()?)
}

fn lookup(nl: &mut Netlink) -> Result<Link> {
    nl.link_by_name(LO)?
        .ok_or_else(|| CniError::internal("failed to find \"lo\" in the sandbox"))
}

/// Brings `lo` up and returns its addresses, IPv4 first. Fails (as the
/// reference does) if `lo` carries a non-loopback address: the sandbox is
/// not what a runtime creates.
pub fn up(netns: Option<&Path>) -> Result<Vec<IpNet>> {
    let ns = open(netns)?;
    let mut nl = enter(&ns)?;
    nl.set_up(LO_INDEX)?;
    let mut addrs: Vec<IpNet> = nl
        .addresses(Some(LO_INDEX), None)?
        .into_iter()
        .map(|a| a.net)
        .collect();
    if let Some(bad) = addrs.iter().find(|a| !a.addr().is_loopback()) {
        return Err(CniError::internal(format!(
            "loopback interface found with non-loopback address {:?}",
            bad.addr().to_string()
        )));
    }
    addrs.sort_by_key(|a| a.addr().is_ipv6());
    Ok(addrs)
}

/// Sets `lo` down. An empty or vanished netns means the sandbox is gone:
/// nothing to undo (the runtime repeats DEL after teardown).
pub fn down(netns: Option<&Path>) -> Result<()> {
    let Some(path) = netns else {
        return Ok(());
    };
    let ns = match NetNs::open(path) {
        Ok(ns) => ns,
        Err(NetnsError::NotExist { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut nl = enter(&ns)?;
    nl.set_down(LO_INDEX)?;
    Ok(())
}

/// CHECK: `lo` must be administratively up.
pub fn check_up(netns: Option<&Path>) -> Result<()> {
    let ns = open(netns)?;
    let mut nl = enter(&ns)?;
    if lookup(&mut nl)?.is_up() {
        Ok(())
    } else {
        Err(CniError::internal("loopback interface is down"))
    }
}
