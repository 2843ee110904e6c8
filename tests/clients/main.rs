//! Integration tests that drive real CNI clients and installers, besides
//! root and namespaces: cnitool (built from Debian's libcni), containerd +
//! runc (`ctr`, and kubesim over CRI), and the install scripts. A missing
//! client skips the test, except under `CI=true`, where it fails
//! (`clients::missing`).
//!
//! One crate, one file per subject (docs/architecture.md "Tests"); helpers
//! come from `cni-test-support` (tests/support).

#[macro_use]
extern crate cni_test_support;

mod clients_cnitool;
mod clients_containerd;
mod clients_install;
mod clients_podman;
mod harness_containerd;
mod soak_containerd;
