//! The host-local verbs on top of the config, allocator and disk store. The
//! plugin binary only converts between these and the CNI wire types.
//!
//! Every verb takes the store lock once and holds it to the end. ADD, DEL
//! and CHECK use the attachment index when it is trusted (no directory
//! listing: a marker read, one read per own lease, and exclusive creates);
//! otherwise they read the lease directory once and work in memory, and ADD
//! and DEL then rebuild the index. GC always scans and rebuilds. CHECK and
//! STATUS never write, so they never rebuild.

use std::net::IpAddr;

use super::allocator::{plan_requested, Allocation, Allocator, Candidates};
use super::config::{IpamConfig, RouteConf};
use super::disk::DiskStore;
use super::dns::{read_resolv_conf, DnsConf};
use super::error::IpamError;
use super::range::{canonical, RangeSet};
use super::store::{validate_attachment, Store};

/// What ADD produced: one allocation per range set, plus routes and DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddOutcome {
    pub allocations: Vec<Allocation>,
    pub routes: Vec<RouteConf>,
    pub dns: DnsConf,
}

/// ADD: reclaims orphaned half-written leases, then allocates one address per
/// range set (rolled back entirely on failure).
pub fn add(conf: &IpamConfig, id: &str, ifname: &str) -> Result<AddOutcome, IpamError> {
    validate_attachment(id, ifname)?;
    // Everything the configuration alone can refute is checked before the
    // store is created or locked: a bad request must leave the disk as it was.
    plan_requested(&conf.range_sets, &conf.requested_ips)?;
    // Read resolvConf first: a bad path must not leave a lease behind.
    let dns = match &conf.resolv_conf {
        Some(p) => read_resolv_conf(p)?,
        None => DnsConf::default(),
    };
    let mut store = DiskStore::open(&conf.data_dir, &conf.name)?;
    let allocate = |alloc: &mut Allocator<'_, DiskStore>| {
        alloc.allocate(&conf.range_sets, id, ifname, &conf.requested_ips)
    };
    let full = |store: &mut DiskStore| {
        let mut alloc = Allocator::new(store)?;
        let res = alloc.reclaim_orphans().and_then(|_| allocate(&mut alloc));
        let (view, surprised) = alloc.into_parts();
        store.finish_full(&view, surprised);
        res
    };
    let allocations = match store.indexed_leases(id, ifname) {
        Some(own) => match fast(&mut store, id, ifname, own, allocate) {
            // "No free address" (or "requested address taken") from the fast
            // path is confirmed by a full scan before it is reported: that
            // scan reclaims empty leases, which the fast path cannot tell
            // from real ones without reading them. Rare, so the cost is fine.
            Err(IpamError::Exhausted(why)) => {
                store.begin_full_scan(&format!("confirming exhaustion: {why}"));
                full(&mut store)
            }
            other => other,
        },
        None => full(&mut store),
    }?;
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
    let release = |alloc: &mut Allocator<'_, DiskStore>| alloc.release(id, ifname);
    match store.indexed_leases(id, ifname) {
        Some(own) => fast(&mut store, id, ifname, own, release),
        None => {
            let mut alloc = Allocator::new(&mut store)?;
            let res = alloc.reclaim_orphans().and_then(|_| release(&mut alloc));
            let (view, surprised) = alloc.into_parts();
            store.finish_full(&view, surprised);
            res
        }
    }?;
    Ok(())
}

/// Runs `op` in partial mode on the attachment's own leases, then records
/// the attachment's new addresses in the index.
fn fast<T>(
    store: &mut DiskStore,
    id: &str,
    ifname: &str,
    own: Vec<super::store::Lease>,
    op: impl FnOnce(&mut Allocator<'_, DiskStore>) -> Result<T, IpamError>,
) -> Result<T, IpamError> {
    let mut before: Vec<IpAddr> = own.iter().map(|l| l.ip).collect();
    before.sort_by_key(|ip| super::range::to_u128(*ip));
    let mut alloc = Allocator::with_leases(store, own);
    let res = op(&mut alloc);
    let after = alloc.held_by(id, ifname);
    store.finish_fast(id, ifname, &before, &after);
    res
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
    let holds = match store.indexed_leases(id, ifname) {
        Some(own) => !own.is_empty(),
        None => Allocator::new(&mut store)?.holds(id, ifname),
    };
    if holds {
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
    store.begin_full_scan("gc");
    let mut alloc = Allocator::new(&mut store)?;
    let res = alloc.gc(valid);
    let (view, surprised) = alloc.into_parts();
    store.finish_full(&view, surprised);
    res?;
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
    let trusted = store.index_trusted();
    let net = &conf.name;
    if trusted {
        crate::cni_debug!("host-local {net}: index trusted (status probe)");
    } else {
        crate::cni_debug!("host-local {net}: full scan (index not trusted)");
    }
    let full: Vec<bool> = if trusted {
        Vec::new()
    } else {
        let alloc = Allocator::new(&mut store).map_err(unavailable)?;
        conf.range_sets.iter().map(|s| alloc.has_free(s)).collect()
    };
    for (idx, set) in conf.range_sets.iter().enumerate() {
        let free = match full.get(idx) {
            Some(f) => *f,
            None => has_free_probe(&mut store, set, idx),
        };
        if !free {
            return Err(IpamError::Unavailable(format!(
                "no IP addresses available in range set {idx}: {set}"
            )));
        }
    }
    Ok(())
}

/// STATUS with a trusted index: walks the set in ADD's round-robin order and
/// stops at the first address without a lease file (one `fstatat` each), so
/// a set with room costs a few syscalls and a full one at most one per
/// address. A trusted index implies no orphaned (empty) leases, which the
/// full scan would count as free.
fn has_free_probe(store: &mut DiskStore, set: &RangeSet, idx: usize) -> bool {
    let last = store
        .last_reserved(idx)
        .map(canonical)
        .filter(|ip| set.contains(*ip));
    let mut walk = Candidates::new(set, last);
    while let Some((_, ip)) = walk.next_candidate() {
        if !store.is_taken(ip) {
            return true;
        }
    }
    false
}
