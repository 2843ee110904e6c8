//! host-local IPAM: configuration, ranges, round-robin allocation and the
//! reference-compatible on-disk lease store.
//!
//! - [`config`]: parse and validate the `ipam` section (+ runtimeConfig/args).
//! - [`range`]: ranges and range sets (one address per set).
//! - [`store`]: the [`Store`](store::Store) trait, lease parsing, [`MemStore`](store::MemStore).
//! - [`disk`]: the on-disk store (`<dataDir>/<network>/<ip>` files, flock).
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

pub mod allocator;
pub mod config;
pub mod disk;
pub mod dns;
pub mod error;
pub mod index;
pub mod ops;
pub mod range;
pub mod store;
pub mod wire;

pub use error::IpamError;
