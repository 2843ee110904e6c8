//! Rust implementation of the CNI protocol (spec 1.1) and the mechanisms behind
//! our drop-in plugins, plus a small libcni-like runtime (`runtime`). The
//! executables are the workspace's member crates (`plugins/*`, `tools/*`).

pub mod args;
pub mod arp;
pub mod delegate;
pub mod error;
pub mod firewall;
pub mod hex;
pub mod invoke;
pub mod ipam;
pub mod lock;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod runtime;
pub mod skel;
pub mod spec;
pub mod sysctl;
pub mod test_hooks;
