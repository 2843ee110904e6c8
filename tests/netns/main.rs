//! Integration tests that need root and network namespaces: each works in
//! a throwaway node netns (`NodeNs::enter`) with pods in their own netns,
//! and never touches the machine's own. Bridge, loopback, portmap, the
//! firewall backends, netlink, crash and churn safety, the bad-input corpus,
//! kubesim, cni-bench, and differential runs against the reference plugins
//! (/usr/lib/cni). As non-root they skip, except under `CI=true`, where they
//! fail (`require_root!`).
//!
//! One crate, one file per subject (docs/architecture.md "Tests"); helpers
//! come from `cni-test-support` (tests/support).

#[macro_use]
extern crate cni_test_support;

mod bad_input;
mod bench_smoke;
mod bridge;
mod bridge_bad_input;
mod bridge_del_detached;
mod bridge_differential;
mod bridge_netlink;
mod bridge_races;
mod differential;
mod firewall_ipmasq;
mod firewall_spoofcheck;
mod firewall_upstream;
mod harness;
mod loopback;
mod netns_helpers;
mod portmap;
mod reliability_churn;
mod reliability_crash;
mod runtime_plugins;
