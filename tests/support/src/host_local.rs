//! Helpers for the host-local integration tests (`tests/unprivileged/host_local*.rs`).
//! host-local touches no kernel state, so no netns is needed: `CNI_NETNS` is a
//! fake path, as in the Go tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::{self, PluginCall, PluginRun};

/// Fake netns path (never opened by host-local).
pub const NETNS: &str = "/some/where";

/// Our binary.
pub fn ours() -> PathBuf {
    common::bin("host-local")
}

/// The reference Go binary (Debian containernetworking-plugins v1.1.1).
pub fn reference() -> PathBuf {
    PathBuf::from(common::REFERENCE_CNI_PATH).join("host-local")
}

/// True when the reference binary can be used; panics under `CI=true` if not.
pub fn have_reference() -> bool {
    if reference().is_file() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true: the reference host-local is required at {}",
            reference().display()
        );
    }
    eprintln!("skipped: reference host-local not installed");
    false
}

/// A full plugin config (bridge-like parent) with the given ipam section.
pub fn conf(version: &str, name: &str, ipam: Value) -> Value {
    json!({"cniVersion": version, "name": name, "type": "bridge", "ipam": ipam})
}

/// An ipam section with `dataDir` and range sets given as subnets.
pub fn ipam(data_dir: &Path, sets: &[&[&str]]) -> Value {
    let ranges: Vec<Value> = sets
        .iter()
        .map(|set| Value::Array(set.iter().map(|s| json!({"subnet": s})).collect()))
        .collect();
    json!({"type": "host-local", "dataDir": data_dir, "ranges": ranges})
}

/// One call of `binary`.
pub fn run(binary: &Path, cmd: &str, id: &str, ifname: &str, stdin: &Value) -> PluginRun {
    run_env(binary, cmd, id, ifname, stdin, &[])
}

/// One call with extra environment variables.
pub fn run_env(
    binary: &Path,
    cmd: &str,
    id: &str,
    ifname: &str,
    stdin: &Value,
    env: &[(&str, &str)],
) -> PluginRun {
    let mut call = PluginCall::new(cmd, id, NETNS, ifname, &common::our_cni_path())
        .stdin(stdin.to_string().into_bytes());
    for (k, v) in env {
        call = call.env(k, v);
    }
    common::run_plugin(binary, &call)
}

/// ADD that must succeed; returns the result JSON.
pub fn add_ok(binary: &Path, id: &str, stdin: &Value) -> Value {
    run(binary, "ADD", id, "eth0", stdin).expect_ok().json()
}

/// The addresses of a 0.3.0+ result.
pub fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips in {result}"))
        .iter()
        .map(|ip| ip["address"].as_str().expect("address").to_string())
        .collect()
}

/// Lease files of a network dir: name → content (lock/last_reserved_ip excluded).
pub fn leases(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "lock" || name.starts_with("last_reserved_ip.") {
            continue;
        }
        let content = std::fs::read(e.path()).expect("read lease");
        out.insert(name, String::from_utf8_lossy(&content).into_owned());
    }
    out
}

/// Our attachment index under a dataDir (`cni::ipam::index::INDEX_DIR`).
pub use cni::ipam::index::INDEX_DIR;

/// File names and contents of a tree, without modes (the reference v1.1.1
/// writes 0644 lease files and a 0750 lock; we write 0600 for both), and
/// without our attachment index `<dataDir>/.cni-rs-index/`, which lives
/// beside the network directories precisely so that those stay identical
/// to the reference's (the reference never looks there).
pub fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::tree_snapshot(dir)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(&format!("{INDEX_DIR}/")))
        .map(|(k, (bytes, _mode))| (k, bytes))
        .collect()
}

/// `<id>\r\n<ifname>`.
pub fn lease_text(id: &str, ifname: &str) -> String {
    format!("{id}\r\n{ifname}")
}
