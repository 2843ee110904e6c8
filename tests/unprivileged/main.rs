//! Integration tests that need no privileges: the CNI protocol through the
//! real binaries, host-local (its store is a temp dir, `CNI_NETNS` a fake
//! path), and the libcni runtime. They run as any user.
//!
//! One crate, one file per subject (docs/architecture.md "Tests"); helpers
//! come from `cni-test-support` (tests/support).

mod code_layout;
mod host_local;
mod host_local_diff;
mod host_local_index;
mod host_local_stress;
mod layout;
mod protocol;
mod reliability_store;
mod runtime;
