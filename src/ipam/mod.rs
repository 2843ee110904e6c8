//! host-local IPAM: configuration, ranges, round-robin allocation and the
//! reference-compatible on-disk lease store.
//!
//! - [`config`]: parse and validate the `ipam` section (+ runtimeConfig/args).
//! - [`range`]: ranges and range sets (one address per set).
//! - [`store`]: the [`Store`](store::Store) trait, lease parsing;
//!   `mem_store`: an in-memory store for tests (feature `test-hooks`).
//! - [`disk`]: the on-disk store (`<dataDir>/<network>/<ip>` files, flock).
//! - [`index`]: the attachment index that spares ADD/DEL/CHECK/STATUS the
//!   directory scan (see below).
//! - [`allocator`]: allocation/release/GC over an in-memory lease index.
//! - [`dns`]: `resolvConf` parsing.
//! - [`ops`]: the verbs (ADD/DEL/CHECK/GC/STATUS) as the plugin runs them.
//! - [`wire`]: conversion to the CNI result types.
//!
//! # Crash safety
//!
//! Every command holds `flock(<dir>/lock)` from start to end, and the
//! reference binary takes the same lock around its writes, so a lease file
//! found while we hold the lock is never being written by a live process.
//! A process killed at any point leaves one of these states, each handled by
//! the next ADD, DEL or GC without error and without a lost or duplicated lease:
//! - killed before creating anything: only the (harmless) `lock` file;
//! - killed between the `O_EXCL` create and the write: an **empty** lease
//!   file ([`store::Owner::Orphan`]). Its ADD never returned, so nobody was
//!   told the address: ADD, DEL and GC delete it (ADD may then hand the
//!   address out), CHECK ignores it and STATUS counts it as free;
//! - killed after writing the lease (or after some range sets of a
//!   multi-set ADD): complete leases of `(id, ifname)`. The failed ADD
//!   makes the runtime call DEL, which releases them; a retried ADD without
//!   DEL gets the duplicate-allocation error, as the reference does; GC
//!   releases them if the attachment is not valid;
//! - killed while updating `last_reserved_ip.<set>`: it is written to a temp
//!   file and renamed, so it is either old or new; the stray
//!   `last_reserved_ip.<set>.tmp` is overwritten and renamed away by the
//!   next ADD (a corrupt `last_reserved_ip` is ignored anyway);
//! - killed during DEL/GC: some leases removed; the next DEL/GC removes the rest.
//!
//! A lease is written with a single small `write(2)`, which the kernel does
//! not split for regular files, so a torn `<id>\r\n<ifn` prefix does not
//! occur in practice; if it did, it would parse as another owner and be
//! released by GC.
//!
//! # Attachment index
//!
//! Reading every lease file costs ~0.5 s of CPU at 65 000 leases, on every
//! command. The index makes ADD/DEL/CHECK O(1) in the number of leases while
//! the network directory stays byte-identical to the reference's:
//!
//! - **Where**: `<dataDir>/.cni-rs-index/<network>/` (0700), beside the
//!   network directories (a network name cannot start with `.`; the
//!   reference never looks there). `by-id/<hash(id, ifname)>` lists the
//!   addresses of one attachment; `state` (format v2) records the network
//!   directory's stamp: a sentinel mtime, its ctime, device and inode.
//! - **When it is trusted**: only if the network directory's stamp equals
//!   the one in `state`, field by field (equality, not ordering: a clock
//!   stepped back gives earlier times). After every command that changed the
//!   directory we (still under the lock) set its mtime to a fresh sentinel —
//!   two seconds in the past with random nanoseconds, read back as stored —
//!   and record the resulting stamp. Anyone else creating, removing or
//!   renaming an entry (the reference binary, an operator, our own crashed
//!   process) makes the kernel set the directory's mtime and ctime to the
//!   current time. Putting the mtime back (`touch -d`, `rsync -t`, a clock
//!   step back) still moves the ctime, which userspace cannot set; a copy or
//!   restore (`cp -a`) is another inode. A change in the same clock tick as
//!   our seal could get the same ctime, so before releasing the lock we wait
//!   until the kernel's coarse clock has left that tick (at most one tick,
//!   1–10 ms) — unless the seal shows fine-grained ctimes (multigrain
//!   timestamps, Linux ≥ 6.13), which the kernel never hands out twice once
//!   read. Filesystems that round timestamps never trust the index. First
//!   use of an existing store, or a v1 `state`: not trusted either, so the
//!   index is rebuilt.
//! - **Fast path** (trusted; ADD, DEL, CHECK): read the attachment's marker
//!   and verify each listed lease file still holds `<id>\r\n<ifname>` (one
//!   small read each); ADD then walks the round-robin candidates with
//!   `open(O_EXCL)` — a taken address is one failed open, the directory is
//!   never listed, so a typical ADD is a dozen file operations. A marker
//!   that disagrees with the lease files makes the command fall back to the
//!   full scan. "No free address" / "requested address taken" from the fast
//!   path is confirmed by a full scan (it alone reclaims empty leases).
//!   STATUS probes candidates in round-robin order until it finds a free one.
//! - **Full path** (untrusted, GC, or a fallback): the previous behaviour
//!   (read everything once, work in memory); ADD, DEL and GC then rebuild
//!   the index in place (only differing markers are written) and trust it.
//!   CHECK and STATUS never write, so they scan without rebuilding. Stores
//!   the index cannot describe — legacy id-only or empty leases,
//!   non-canonical address names, directories named like addresses — are
//!   simply never trusted: every command scans until they are gone.
//! - **Crash order**: lease files → sentinel mtime → markers → `state`
//!   (a rebuild runs only while `state` is already stale or removed). A kill
//!   before the sentinel
//!   leaves the kernel's mtime, a kill after it leaves `state` with the old
//!   sentinel (the new one is chosen to differ): either way the next command
//!   does not trust the index and rebuilds it. Any index I/O error removes
//!   `state` and never fails the CNI command: the index is only a cache.
//! - **Limits**: a lease file rewritten *in place* (same name, no
//!   create/unlink, which the reference never does) does not move the
//!   directory mtime; ADD/DEL/CHECK of the affected attachment still detect
//!   it by the content check, but a lease rewritten to name a *new*
//!   attachment is only found by the next full scan (GC, or after any other
//!   change). Writers that bypass the `lock` file are unsupported, as they
//!   are for the reference. Do not edit `.cni-rs-index` by hand; deleting
//!   it (or `state`) is always safe and forces one rebuild.

pub mod allocator;
pub mod config;
mod dirfile;
pub mod disk;
pub mod dns;
pub mod error;
pub mod index;
#[cfg(any(test, feature = "test-hooks"))]
pub mod mem_store;
pub mod ops;
mod parallel;
pub mod range;
pub mod store;
pub mod wire;

pub use error::IpamError;
