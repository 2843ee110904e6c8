//! Address allocation over a [`Store`] (reference `allocator.go`, rewritten).
//!
//! The reference walks the whole lease directory for every lookup. Here the
//! allocator works on a [`LeaseIndex`] in one of two modes:
//! - **complete** ([`Allocator::new`]): every lease is read once; candidates
//!   are checked in memory and only the chosen address touches the store
//!   (still with an exclusive create, in case a writer raced us outside the
//!   lock: that is reported as a "surprise");
//! - **partial** ([`Allocator::with_leases`]): the index holds only the
//!   command's own attachment's leases (from the attachment index). Every
//!   other address is "maybe free": the exclusive create decides, so a taken
//!   address costs one failed `open(O_EXCL)` and the directory is never listed.
//!
//! Every decision that hands out an address goes through the exclusive
//! create, so both modes give the same results and errors.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::error::IpamError;
use super::range::{canonical, from_u128, to_u128, Range, RangeSet};
use super::store::{Lease, Owner, Store};

/// One address handed out for one range set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Index of the range set in the final range-set list.
    pub set: usize,
    /// `ip/prefix` of the range's subnet.
    pub address: IpNet,
    /// The range's gateway.
    pub gateway: IpAddr,
}

/// All leases of a network, indexed by address for O(1) lookups.
///
/// An address can be held by more than one key: the canonical name and a
/// non-canonical one written by another tool (`::ffff:10.1.0.5` next to
/// `10.1.0.5`). Every key is kept, and the address stays taken while any of
/// them remains: removing one key (e.g. reclaiming an empty, half-written
/// file) must not free an address another file still holds.
#[derive(Debug, Default)]
pub struct LeaseIndex {
    by_ip: HashMap<IpAddr, Vec<Lease>>,
}

impl LeaseIndex {
    /// Builds the index from a store listing (every key is kept).
    pub fn new(leases: Vec<Lease>) -> Self {
        let mut index = LeaseIndex {
            by_ip: HashMap::with_capacity(leases.len()),
        };
        for l in leases {
            index.insert(l);
        }
        index
    }

    /// Whether `ip` is leased under any key (orphans included until reclaimed).
    pub fn is_leased(&self, ip: IpAddr) -> bool {
        self.by_ip.contains_key(&ip)
    }

    /// Whether `ip` is held by a lease that ADD would not reclaim (any key
    /// that is not an orphan).
    fn is_held(&self, ip: IpAddr) -> bool {
        self.by_ip
            .get(&ip)
            .is_some_and(|ls| ls.iter().any(|l| l.owner != Owner::Orphan))
    }

    /// Every lease (every key), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_ip.values().flatten()
    }

    /// Number of leased addresses (an address with several keys counts once).
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// True when there are no leases.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Leases owned by `(id, ifname)`; if there are none, the legacy id-only
    /// leases of `id` (the reference's `ReleaseByID` fallback). Sorted by
    /// address (then key); an address held under two keys appears twice.
    pub fn owned_by(&self, id: &str, ifname: &str) -> Vec<&Lease> {
        let mut exact: Vec<&Lease> = self
            .iter()
            .filter(|l| l.owner.is_attachment(id, ifname))
            .collect();
        if exact.is_empty() {
            exact = self.iter().filter(|l| l.owner.is_legacy_of(id)).collect();
        }
        exact.sort_by(|a, b| (to_u128(a.ip), &a.key).cmp(&(to_u128(b.ip), &b.key)));
        exact
    }

    /// Adds `lease`, replacing an entry with the same key.
    fn insert(&mut self, lease: Lease) {
        let keys = self.by_ip.entry(lease.ip).or_default();
        match keys.iter_mut().find(|l| l.key == lease.key) {
            Some(l) => *l = lease,
            None => keys.push(lease),
        }
    }

    /// Removes the lease stored under `key` for `ip`; the address stays
    /// leased while another key holds it.
    fn remove_key(&mut self, ip: IpAddr, key: &str) -> Option<Lease> {
        let keys = self.by_ip.get_mut(&ip)?;
        let pos = keys.iter().position(|l| l.key == key)?;
        let lease = keys.swap_remove(pos);
        if keys.is_empty() {
            self.by_ip.remove(&ip);
        }
        Some(lease)
    }
}

/// Works on one network's store for the duration of one command.
pub struct Allocator<'s, S: Store> {
    store: &'s mut S,
    index: LeaseIndex,
    /// The index holds every lease (complete mode).
    complete: bool,
    /// Complete mode met an address that the listing did not have.
    surprised: bool,
}

impl<'s, S: Store> Allocator<'s, S> {
    /// Complete mode: reads the store once.
    pub fn new(store: &'s mut S) -> Result<Self, IpamError> {
        let index = LeaseIndex::new(store.leases()?);
        Ok(Allocator {
            store,
            index,
            complete: true,
            surprised: false,
        })
    }

    /// Partial mode: `own` must be **all** leases of the attachment the
    /// command is about (and nothing is known about the others). Only valid
    /// for allocate/release/holds of that attachment; not for GC or
    /// [`has_free`](Self::has_free).
    pub fn with_leases(store: &'s mut S, own: Vec<Lease>) -> Self {
        Allocator {
            store,
            index: LeaseIndex::new(own),
            complete: false,
            surprised: false,
        }
    }

    /// The in-memory view of the leases.
    pub fn index(&self) -> &LeaseIndex {
        &self.index
    }

    /// The final view and whether a lease appeared outside the lock (then
    /// the view cannot be trusted to describe the store).
    pub fn into_parts(self) -> (LeaseIndex, bool) {
        (self.index, self.surprised)
    }

    /// The addresses `(id, ifname)` holds now (exact owner, no legacy), sorted.
    pub fn held_by(&self, id: &str, ifname: &str) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .index
            .iter()
            .filter(|l| l.owner.is_attachment(id, ifname))
            .map(|l| l.ip)
            .collect();
        ips.sort_by_key(|ip| to_u128(*ip));
        ips.dedup();
        ips
    }

    /// Removes orphaned (empty) lease files left by a writer killed between
    /// create and write. Only call with the store lock held (always true for
    /// [`DiskStore`](super::disk::DiskStore)): then no live writer can own them.
    pub fn reclaim_orphans(&mut self) -> Result<Vec<IpAddr>, IpamError> {
        let orphans: Vec<Lease> = self
            .index
            .iter()
            .filter(|l| l.owner == Owner::Orphan)
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(orphans.len());
        for l in orphans {
            self.store.remove(&l.key)?;
            self.index.remove_key(l.ip, &l.key);
            out.push(l.ip);
        }
        out.sort_by_key(|ip| to_u128(*ip));
        out.dedup();
        Ok(out)
    }

    /// ADD: one address per range set for `(id, ifname)`.
    ///
    /// `requested` are the wanted addresses (CNI_ARGS, args, runtimeConfig, in
    /// that order); the first one inside a set is used for that set, and any
    /// left over fails the whole call. On any failure, everything reserved by
    /// this call is released again, so the store is as before.
    pub fn allocate(
        &mut self,
        sets: &[RangeSet],
        id: &str,
        ifname: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<Allocation>, IpamError> {
        self.reject_duplicate(sets, id, ifname)?;
        let plan = plan_requested(sets, requested)?;
        let mut done: Vec<Allocation> = Vec::with_capacity(sets.len());
        for (idx, (set, wanted)) in sets.iter().zip(plan).enumerate() {
            let got = match wanted {
                Some(ip) => self.reserve_requested(set, idx, ip, id, ifname),
                None => self.reserve_next(set, idx, id, ifname),
            };
            match got {
                Ok(a) => done.push(a),
                Err(e) => {
                    self.rollback(&done);
                    return Err(e.context(format_args!("failed to allocate for range {idx}")));
                }
            }
        }
        Ok(done)
    }

    /// The same attachment must not get a second lease (the runtime skipped
    /// DEL). Legacy id-only leases count too, as in the reference.
    fn reject_duplicate(&self, sets: &[RangeSet], id: &str, ifname: &str) -> Result<(), IpamError> {
        let Some(held) = self.index.owned_by(id, ifname).first().map(|l| l.ip) else {
            return Ok(());
        };
        let msg = format!(
            "{held} has been allocated to {}, duplicate allocation is not allowed",
            id.trim()
        );
        Err(match sets.iter().position(|s| s.contains(held)) {
            Some(idx) => IpamError::Duplicate(format!("failed to allocate for range {idx}: {msg}")),
            None => IpamError::Duplicate(msg),
        })
    }

    fn reserve_requested(
        &mut self,
        set: &RangeSet,
        idx: usize,
        ip: IpAddr,
        id: &str,
        ifname: &str,
    ) -> Result<Allocation, IpamError> {
        let range = set
            .range_for(ip)
            .ok_or_else(|| IpamError::Request(format!("{ip} not in range set {set}")))?;
        check_requested(range, ip)?;
        let unavailable = || {
            IpamError::Exhausted(format!(
                "requested IP address {ip} is not available in range set {set}"
            ))
        };
        if self.index.is_leased(ip) {
            return Err(unavailable());
        }
        let range = range.clone();
        if !self.commit(idx, ip, id, ifname)? {
            return Err(unavailable());
        }
        Ok(allocation(&range, idx, ip))
    }

    fn reserve_next(
        &mut self,
        set: &RangeSet,
        idx: usize,
        id: &str,
        ifname: &str,
    ) -> Result<Allocation, IpamError> {
        let exhausted =
            || IpamError::Exhausted(format!("no IP addresses available in range set: {set}"));
        if !self.has_free(set) {
            return Err(exhausted());
        }
        let last = self.store.last_reserved(idx).map(canonical);
        let mut iter = Candidates::new(set, last.filter(|ip| set.contains(*ip)));
        while let Some((range, ip)) = iter.next_candidate() {
            if self.index.is_leased(ip) {
                continue;
            }
            if self.commit(idx, ip, id, ifname)? {
                return Ok(allocation(range, idx, ip));
            }
        }
        Err(exhausted())
    }

    /// Exclusive create plus bookkeeping. `Ok(false)` when the store already
    /// had the address (a writer outside our lock); it is then indexed as taken.
    fn commit(
        &mut self,
        idx: usize,
        ip: IpAddr,
        id: &str,
        ifname: &str,
    ) -> Result<bool, IpamError> {
        let owner = Owner::Attachment {
            id: id.trim().to_string(),
            ifname: ifname.to_string(),
        };
        let lease = Lease {
            ip,
            key: ip.to_string(),
            owner,
        };
        if !self.store.reserve(ip, id, ifname)? {
            self.surprised |= self.complete;
            self.index.insert(Lease {
                owner: Owner::Unknown,
                ..lease
            });
            return Ok(false);
        }
        self.index.insert(lease);
        // Round-robin is best effort: the lease is already durable, so a failure
        // to remember the position must not fail (and leak) the allocation.
        let _ = self.store.set_last_reserved(idx, ip);
        Ok(true)
    }

    fn rollback(&mut self, done: &[Allocation]) {
        for a in done {
            let ip = a.address.addr();
            // Only the key this call created (the canonical name).
            if let Some(l) = self.index.remove_key(ip, &ip.to_string()) {
                // Best effort: the caller reports the original error.
                let _ = self.store.remove(&l.key);
            }
        }
    }

    /// DEL: removes every lease of `(id, ifname)` (or, if none, the legacy
    /// id-only leases of `id`). Releasing nothing is success.
    pub fn release(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, IpamError> {
        let victims: Vec<Lease> = self
            .index
            .owned_by(id, ifname)
            .into_iter()
            .cloned()
            .collect();
        self.remove_all(victims)
    }

    /// CHECK: whether `(id, ifname)` (or legacy `id`) holds any lease.
    pub fn holds(&self, id: &str, ifname: &str) -> bool {
        !self.index.owned_by(id, ifname).is_empty()
    }

    /// GC: removes every lease not owned by one of `valid` `(id, ifname)`
    /// attachments. Legacy id-only leases survive if their container id has any
    /// valid attachment. Orphans and unreadable leases are removed.
    pub fn gc(&mut self, valid: &[(String, String)]) -> Result<Vec<IpAddr>, IpamError> {
        let pairs: HashSet<(&str, &str)> =
            valid.iter().map(|(i, n)| (i.trim(), n.as_str())).collect();
        let ids: HashSet<&str> = valid.iter().map(|(i, _)| i.trim()).collect();
        let victims: Vec<Lease> = self
            .index
            .iter()
            .filter(|l| match &l.owner {
                Owner::Attachment { id, ifname } => {
                    !pairs.contains(&(id.as_str(), ifname.as_str()))
                }
                Owner::Legacy { id } => !ids.contains(id.as_str()),
                Owner::Orphan | Owner::Unknown => true,
            })
            .cloned()
            .collect();
        self.remove_all(victims)
    }

    /// Removes all `victims`, continuing past errors; reports the first error
    /// with the number of failures after trying them all.
    fn remove_all(&mut self, mut victims: Vec<Lease>) -> Result<Vec<IpAddr>, IpamError> {
        victims.sort_by_key(|l| to_u128(l.ip));
        let mut removed = Vec::with_capacity(victims.len());
        let mut errors: Vec<IpamError> = Vec::new();
        for l in victims {
            match self.store.remove(&l.key) {
                Ok(()) => {
                    self.index.remove_key(l.ip, &l.key);
                    removed.push(l.ip);
                }
                Err(e) => errors.push(e),
            }
        }
        removed.dedup();
        let failed = errors.len();
        match errors.into_iter().next() {
            None => Ok(removed),
            Some(first) if failed == 1 => Err(first),
            Some(first) => {
                Err(first.context(format_args!("{failed} leases could not be released")))
            }
        }
    }

    /// Whether the set has at least one address that ADD could hand out.
    /// Counts instead of iterating, so huge IPv6 ranges cost O(leases); each
    /// held address is placed in its range by binary search (a set's ranges
    /// do not overlap), so sets of many ranges cost O(leases log ranges).
    /// Orphans count as free, since ADD reclaims them first.
    pub fn has_free(&self, set: &RangeSet) -> bool {
        let ranges = set.ranges();
        let mut order: Vec<usize> = (0..ranges.len()).collect();
        order.sort_by_key(|&k| to_u128(ranges[k].range_start));
        let mut taken = vec![0u128; ranges.len()];
        for ip in self.index.by_ip.keys() {
            if ip.is_ipv4() != set.is_v4() {
                continue;
            }
            let v = to_u128(*ip);
            let after = order.partition_point(|&k| to_u128(ranges[k].range_start) <= v);
            let Some(&k) = after.checked_sub(1).and_then(|p| order.get(p)) else {
                continue;
            };
            let r = &ranges[k];
            if r.contains(*ip) && !r.is_reserved(*ip) && self.index.is_held(*ip) {
                taken[k] += 1;
            }
        }
        ranges
            .iter()
            .zip(&taken)
            .any(|(r, t)| r.window_len() > r.reserved_in_window() + t)
    }
}

/// Assigns the requested addresses to range sets the way ADD does (the
/// first requested address inside a set is used for that set; duplicates
/// count once) and rejects what the configuration alone shows cannot be
/// served: an address no set contains, a set's gateway, network or
/// broadcast address, or a set without any allocatable address. Needs no
/// store, so ADD runs it before creating or locking anything: a bad request
/// leaves the disk untouched.
///
/// `sets` must not overlap (as [`IpamConfig`](super::config::IpamConfig)
/// guarantees): then every address lies in at most one range, found by a
/// binary search, and the whole check is O((ranges + requests) log ranges)
/// however many addresses a config requests.
///
/// Returns one entry per set: the address requested for it, if any.
pub fn plan_requested(
    sets: &[RangeSet],
    requested: &[IpAddr],
) -> Result<Vec<Option<IpAddr>>, IpamError> {
    let mut seen: HashSet<IpAddr> = HashSet::with_capacity(requested.len());
    let pending: Vec<IpAddr> = requested
        .iter()
        .map(|ip| canonical(*ip))
        .filter(|ip| seen.insert(*ip))
        .collect();
    let mut plan: Vec<Option<(IpAddr, &Range)>> = vec![None; sets.len()];
    let mut leftover: Vec<IpAddr> = Vec::new();
    if !pending.is_empty() {
        let locate = RangeLocator::new(sets);
        for ip in pending {
            match locate.find(ip) {
                Some((idx, range)) if plan[idx].is_none() => plan[idx] = Some((ip, range)),
                _ => leftover.push(ip),
            }
        }
    }
    for (idx, (set, wanted)) in sets.iter().zip(&plan).enumerate() {
        let fail = |e: IpamError| e.context(format_args!("failed to allocate for range {idx}"));
        match wanted {
            Some((ip, range)) => check_requested(range, *ip).map_err(fail)?,
            // A set whose windows hold nothing but reserved addresses can
            // never serve ADD, whatever the store holds.
            None if !set
                .ranges()
                .iter()
                .any(|r| r.window_len() > r.reserved_in_window()) =>
            {
                return Err(fail(IpamError::Exhausted(format!(
                    "no IP addresses available in range set: {set}"
                ))));
            }
            None => {}
        }
    }
    if !leftover.is_empty() {
        let list: Vec<String> = leftover.iter().map(IpAddr::to_string).collect();
        return Err(IpamError::Request(format!(
            "failed to allocate all requested IPs: {}",
            list.join(" ")
        )));
    }
    Ok(plan.into_iter().map(|w| w.map(|(ip, _)| ip)).collect())
}

/// Every range of a list of non-overlapping sets, sorted by (family, start),
/// to find the one holding an address by binary search.
struct RangeLocator<'a> {
    windows: Vec<(bool, u128, u128, usize, &'a Range)>,
}

impl<'a> RangeLocator<'a> {
    fn new(sets: &'a [RangeSet]) -> Self {
        let mut windows: Vec<(bool, u128, u128, usize, &Range)> = sets
            .iter()
            .enumerate()
            .flat_map(|(idx, set)| {
                set.ranges().iter().map(move |r| {
                    let (start, end) = (to_u128(r.range_start), to_u128(r.range_end));
                    (r.is_v4(), start, end, idx, r)
                })
            })
            .collect();
        windows.sort_by_key(|w| (w.0, w.1));
        RangeLocator { windows }
    }

    /// The set index and range holding `ip` (canonical), if any.
    fn find(&self, ip: IpAddr) -> Option<(usize, &'a Range)> {
        let key = (ip.is_ipv4(), to_u128(ip));
        let after = self.windows.partition_point(|w| (w.0, w.1) <= key);
        let &(v4, _, end, idx, range) = self.windows.get(after.checked_sub(1)?)?;
        (v4 == key.0 && end >= key.1 && range.contains(ip)).then_some((idx, range))
    }
}

/// A requested address must not be its range's gateway, network or broadcast.
fn check_requested(range: &Range, ip: IpAddr) -> Result<(), IpamError> {
    if ip == range.gateway {
        return Err(IpamError::Request(format!(
            "requested ip {ip} is subnet's gateway"
        )));
    }
    if range.is_reserved(ip) {
        return Err(IpamError::Request(format!(
            "requested ip {ip} is the network or broadcast address of {}",
            range.subnet
        )));
    }
    Ok(())
}

fn allocation(range: &Range, set: usize, ip: IpAddr) -> Allocation {
    let address = IpNet::new(ip, range.subnet.prefix_len()).unwrap_or_else(|_| IpNet::from(ip));
    Allocation {
        set,
        address,
        gateway: range.gateway,
    }
}

/// Round-robin candidate walk over a range set (reference `RangeIter`): start
/// right after the last reserved address (or at the first range's start), run
/// to each range's end, continue with the next range, wrap around, and stop
/// when the start comes round again. Reserved addresses are skipped.
pub struct Candidates<'a> {
    set: &'a RangeSet,
    range: usize,
    cur: u128,
    remaining: u128,
}

impl<'a> Candidates<'a> {
    /// `last` must lie inside `set` (callers filter it); `None` starts at the
    /// first range's start.
    pub fn new(set: &'a RangeSet, last: Option<IpAddr>) -> Self {
        let total: u128 = set
            .ranges()
            .iter()
            .map(Range::window_len)
            .fold(0u128, u128::saturating_add);
        let start = last.and_then(|ip| {
            let idx = set.ranges().iter().position(|r| r.contains(ip))?;
            Some(advance(set, idx, to_u128(ip)))
        });
        let (range, cur) = start.unwrap_or((0, to_u128(set.ranges()[0].range_start)));
        Candidates {
            set,
            range,
            cur,
            remaining: total,
        }
    }

    /// The next candidate and its range, or `None` once every address was offered.
    pub fn next_candidate(&mut self) -> Option<(&'a Range, IpAddr)> {
        while self.remaining > 0 {
            self.remaining -= 1;
            let r = &self.set.ranges()[self.range];
            let ip = from_u128(self.cur, r.is_v4());
            (self.range, self.cur) = advance(self.set, self.range, self.cur);
            if !r.is_reserved(ip) {
                return Some((r, ip));
            }
        }
        None
    }
}

/// The position after `cur` in range `idx`, moving to the next range (with
/// wrap-around) past a range's end.
fn advance(set: &RangeSet, idx: usize, cur: u128) -> (usize, u128) {
    let r = &set.ranges()[idx];
    if cur >= to_u128(r.range_end) {
        let next = (idx + 1) % set.ranges().len();
        (next, to_u128(set.ranges()[next].range_start))
    } else {
        (idx, cur + 1)
    }
}

#[cfg(test)]
mod tests;
