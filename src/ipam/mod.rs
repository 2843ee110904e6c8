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

pub mod allocator;
pub mod config;
pub mod disk;
pub mod dns;
pub mod error;
pub mod ops;
pub mod range;
pub mod store;
pub mod wire;

pub use error::IpamError;
