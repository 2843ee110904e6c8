//! Helpers shared by the integration test groups of the root package
//! (`tests/unprivileged`, `tests/netns`, `tests/clients`, see
//! docs/architecture.md "Tests"): throwaway network namespaces, unique temp
//! dirs, our binaries, plugin runs, and the fixtures of each plugin's tests.
//!
//! A library rather than `mod common;` in every test crate: each group uses
//! a different part of it, and public items of a library are never dead code.
//!
//! [`require_root!`] is exported at the crate root; the groups bring it in
//! with `#[macro_use] extern crate cni_test_support;`.
// `new()` of these fixtures creates namespaces, temp dirs or mounts: an
// action with effects, which `Default` would hide.
#![allow(clippy::new_without_default)]

pub mod bridge;
pub mod clients;
pub mod common;
pub mod host_local;
pub mod reliability;
