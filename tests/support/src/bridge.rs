//! Shared fixtures of the bridge plugin tests: a fake node with a private
//! `CNI_PATH` (symlinks) and data dir, config builders, and plugin calls.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::common::{self, NodeNs, PluginCall, PluginRun, TempDir};

/// Default bridge name of the tests (never `cni0`).
pub const BRIDGE: &str = "cnitest0";
/// Default network name.
pub const NETWORK: &str = "bridgetest";

/// Our host-local if it answers VERSION, else the reference one (until the
/// IPAM work has landed; any IPAM on CNI_PATH must work anyway).
pub fn ipam_binary() -> PathBuf {
    static CHOICE: OnceLock<PathBuf> = OnceLock::new();
    CHOICE
        .get_or_init(|| {
            let ours = common::bin("host-local");
            let call = PluginCall::new("VERSION", "", "", "", Path::new("/nonexistent"))
                .stdin(r#"{"cniVersion":"1.1.0"}"#);
            let run = common::run_plugin(&ours, &call);
            let works = run.code == Some(0)
                && serde_json::from_str::<Value>(&run.stdout)
                    .is_ok_and(|v| v["supportedVersions"].is_array());
            if works {
                ours
            } else {
                eprintln!("note: our host-local is not functional yet; using the reference one");
                PathBuf::from(common::REFERENCE_CNI_PATH).join("host-local")
            }
        })
        .clone()
}

/// A fake node: its own netns (entered on the test thread), a CNI_PATH with
/// our `bridge` and a `host-local`, and a host-local data dir.
pub struct Node {
    pub ns: NodeNs,
    pub data: TempDir,
    pub bin: TempDir,
    /// Links of the machine's own netns before the test (must not change).
    root_links: Vec<String>,
}

/// Link names of the process's original (the machine's) network namespace,
/// read through a socket opened there, without moving the test thread.
fn root_links() -> Vec<String> {
    let root = cni::netns::NetNs::open("/proc/self/ns/net").expect("open the root netns");
    let mut nl = cni::netlink::Netlink::open_in(&root).expect("netlink in the root netns");
    let mut names: Vec<String> = nl
        .links()
        .expect("dump root links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    names
}

impl Drop for Node {
    /// Asserts that nothing of ours appeared in the machine's netns.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let now = root_links();
        let ours: Vec<&String> = now
            .iter()
            .filter(|n| !self.root_links.contains(n))
            // Only our bridge name is unique to these tests (other suites may
            // run at the same time and have their own names).
            .filter(|n| n.as_str() == BRIDGE)
            .collect();
        assert!(
            ours.is_empty(),
            "links leaked into the machine's netns: {ours:?}"
        );
    }
}

impl Node {
    pub fn new() -> Node {
        let root_links = root_links();
        assert!(
            !root_links.contains(&BRIDGE.to_string()),
            "{BRIDGE} exists in the machine's netns"
        );
        let ns = NodeNs::enter();
        let bin = TempDir::new("bridge-bin");
        std::os::unix::fs::symlink(common::bin("bridge"), bin.path().join("bridge")).unwrap();
        std::os::unix::fs::symlink(ipam_binary(), bin.path().join("host-local")).unwrap();
        Node {
            ns,
            data: TempDir::new("bridge-data"),
            bin,
            root_links,
        }
    }

    /// A bridge + host-local config; `extra` keys override (null deletes).
    pub fn conf(&self, version: &str, extra: Value) -> Value {
        let mut v = json!({
            "cniVersion": version,
            "name": NETWORK,
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipam": {
                "type": "host-local",
                "subnet": "10.88.0.0/24",
                "dataDir": self.data.path().display().to_string(),
            },
        });
        merge(&mut v, extra);
        v
    }

    /// Runs our bridge with `command` for (`cid`, `eth0`) in `netns`.
    pub fn call(&self, command: &str, cid: &str, netns: &str, conf: &Value) -> PluginRun {
        self.call_if(command, cid, netns, "eth0", conf)
    }

    /// Like [`Node::call`] with an explicit ifname.
    pub fn call_if(
        &self,
        command: &str,
        cid: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> PluginRun {
        self.ns.assert_inside();
        let call = PluginCall::new(command, cid, netns, ifname, self.bin.path())
            .stdin(serde_json::to_vec(conf).unwrap());
        common::run_plugin(&common::bin("bridge"), &call)
    }

    /// Runs an arbitrary binary (e.g. the reference bridge) the same way.
    pub fn call_binary(
        &self,
        binary: &Path,
        command: &str,
        cid: &str,
        netns: &str,
        conf: &Value,
    ) -> PluginRun {
        self.ns.assert_inside();
        let call = PluginCall::new(command, cid, netns, "eth0", self.bin.path())
            .stdin(serde_json::to_vec(conf).unwrap());
        common::run_plugin(binary, &call)
    }

    /// Files in the host-local store of the test network (leases and meta).
    pub fn leases(&self) -> Vec<String> {
        common::lease_files(&self.data.path().join(NETWORK))
    }
}

/// JSON merge: objects recurse, `null` deletes, anything else replaces.
pub fn merge(base: &mut Value, extra: Value) {
    let Value::Object(extra) = extra else { return };
    for (k, v) in extra {
        match (&mut base[&k], v) {
            (_, Value::Null) => {
                if let Some(obj) = base.as_object_mut() {
                    obj.remove(&k);
                }
            }
            (Value::Object(_), v @ Value::Object(_)) => merge(&mut base[&k], v),
            (slot, v) => *slot = v,
        }
    }
}

/// The config with `prevResult` set (for CHECK / DEL).
pub fn with_prev(conf: &Value, result: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = result.clone();
    c
}

/// Names of the node's links.
pub fn node_links() -> Vec<String> {
    common::ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Host veths enslaved to `bridge`.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    common::ip_json(&["link", "show", "master", bridge])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// `ip -j addr show dev eth0` inside a pod: (address/prefix, flags).
pub fn pod_addrs(pod: &common::PodNs, ifname: &str) -> Vec<(String, Value)> {
    let v = pod.ip_json(&["addr", "show", "dev", ifname]);
    v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]),
                a.clone(),
            )
        })
        .collect()
}

/// The container IP (without prefix) of a result in any 0.3+ version.
pub fn result_ip(result: &Value, v6: bool) -> String {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .find(|a| a.contains(':') == v6)
        .and_then(|a| a.split('/').next())
        .unwrap()
        .to_string()
}

/// Pings `target` from inside `pod` (one packet, 2 s timeout).
pub fn ping(pod: &common::PodNs, target: &str) -> bool {
    pod.exec(&["ping", "-c1", "-W2", target]).status.success()
}

/// nat-table rules in `ip[6]tables-save` form, without the `#` header
/// lines (they carry a timestamp).
pub fn nat_rules(v6: bool) -> String {
    let bin = if v6 {
        "ip6tables-save"
    } else {
        "iptables-save"
    };
    let out = std::process::Command::new(bin)
        .args(["-t", "nat"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `nft list ruleset` output (empty when nft is missing).
pub fn nft_ruleset() -> String {
    std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Waits (up to 10 s) for state the kernel changes asynchronously, such as
/// veths vanishing after their netns was destroyed.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}");
}
