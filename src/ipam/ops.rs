//! The host-local verbs on top of the config, allocator and disk store. The
//! plugin binary only converts between these and the CNI wire types.
//!
//! Every verb takes the store lock once and holds it to the end, reads the
//! lease directory once, and then works in memory.

use super::allocator::{Allocation, Allocator};
use super::config::{IpamConfig, RouteConf};
use super::disk::DiskStore;
use super::dns::{read_resolv_conf, DnsConf};
use super::error::IpamError;

/// What ADD produced: one allocation per range set, plus routes and DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddOutcome {
    pub allocations: Vec<Allocation>,
    pub routes: Vec<RouteConf>,
    pub dns: DnsConf,
}

/// Defence in depth (the skel validates these too): the container id and
/// ifname end up in lease file contents, where CR/LF would forge the format.
pub fn validate_attachment(id: &str, ifname: &str) -> Result<(), IpamError> {
    let bad = |s: &str| s.is_empty() || s.contains('/') || s.chars().any(char::is_control);
    if bad(id) || id.trim() != id || id == "." || id == ".." {
        return Err(IpamError::Args(format!(
            "invalid container id {id:?}: must be non-empty, without '/', whitespace or control characters"
        )));
    }
    if bad(ifname) || ifname.chars().any(char::is_whitespace) || ifname == "." || ifname == ".." {
        return Err(IpamError::Args(format!(
            "invalid interface name {ifname:?}: must be non-empty, without '/', whitespace or control characters"
        )));
    }
    Ok(())
}

/// ADD: reclaims orphaned half-written leases, then allocates one address per
/// range set (rolled back entirely on failure).
pub fn add(conf: &IpamConfig, id: &str, ifname: &str) -> Result<AddOutcome, IpamError> {
    validate_attachment(id, ifname)?;
    // Read resolvConf first: a bad path must not leave a lease behind.
    let dns = match &conf.resolv_conf {
        Some(p) => read_resolv_conf(p)?,
        None => DnsConf::default(),
    };
    let mut store = DiskStore::open(&conf.data_dir, &conf.name)?;
    let mut alloc = Allocator::new(&mut store)?;
    alloc.reclaim_orphans()?;
    let allocations = alloc.allocate(&conf.range_sets, id, ifname, &conf.requested_ips)?;
    Ok(AddOutcome {
        allocations,
        routes: conf.routes.clone(),
        dns,
    })
}

/// DEL: releases every lease of `(id, ifname)`; nothing to release is success.
pub fn del(conf: &IpamConfig, id: &str, ifname: &str) -> Result<(), IpamError> {
    validate_attachment(id, ifname)?;
    let Some(mut store) = DiskStore::open_existing(&conf.data_dir, &conf.name)? else {
        return Ok(());
    };
    let mut alloc = Allocator::new(&mut store)?;
    alloc.reclaim_orphans()?;
    alloc.release(id, ifname)?;
    Ok(())
}

/// CHECK: succeeds if `(id, ifname)` (or legacy `id`) holds any lease.
pub fn check(conf: &IpamConfig, id: &str, ifname: &str) -> Result<(), IpamError> {
    validate_attachment(id, ifname)?;
    let not_found = || {
        IpamError::NotFound(format!(
            "host-local: Failed to find address added by container {id}"
        ))
    };
    let Some(mut store) = DiskStore::open_existing(&conf.data_dir, &conf.name)? else {
        return Err(not_found());
    };
    if Allocator::new(&mut store)?.holds(id, ifname) {
        Ok(())
    } else {
        Err(not_found())
    }
}

/// GC: with `valid` = `None` (no attachment key in the config) nothing is
/// done; otherwise every lease not owned by a valid attachment is released
/// (an empty list releases all). `lock` and `last_reserved_ip.*` stay.
pub fn gc(conf: &IpamConfig, valid: Option<&[(String, String)]>) -> Result<(), IpamError> {
    let Some(valid) = valid else {
        return Ok(());
    };
    let Some(mut store) = DiskStore::open_existing(&conf.data_dir, &conf.name)? else {
        return Ok(());
    };
    Allocator::new(&mut store)?.gc(valid)?;
    Ok(())
}

/// STATUS: fails with [`IpamError::Unavailable`] (code 50) when ADD cannot be
/// serviced, i.e. when **any** range set has no free address (ADD needs one
/// from every set), or when the store cannot be read. In particular it fails
/// when no set has a free address. Orphaned half-written leases count as free
/// (ADD reclaims them). Nothing is created or modified.
pub fn status(conf: &IpamConfig) -> Result<(), IpamError> {
    let unavailable =
        |e: IpamError| IpamError::Unavailable(format!("host-local cannot allocate: {e}"));
    let Some(mut store) =
        DiskStore::open_existing(&conf.data_dir, &conf.name).map_err(unavailable)?
    else {
        return Ok(());
    };
    let alloc = Allocator::new(&mut store).map_err(unavailable)?;
    for (idx, set) in conf.range_sets.iter().enumerate() {
        if !alloc.has_free(set) {
            return Err(IpamError::Unavailable(format!(
                "no IP addresses available in range set {idx}: {set}"
            )));
        }
    }
    Ok(())
}
