//! The runtime (`cni::runtime`) driving our real plugins: host-local alone
//! (no kernel state, runs unprivileged) and the bridge + host-local chain
//! inside a throwaway node netns (root).
//!
//! Plugins: ours by default; `CNI_RS_HARNESS_PLUGINS` / `CNI_RS_HARNESS_CNI_VERSION`
//! point the bridge test at other plugins (e.g. `/usr/lib/cni`, `1.0.0`).

use std::path::Path;

use cni::runtime::{Attachment, CniConfig, NetworkConfigList, RuntimeConf};
use cni_test_support::common;
use cni_test_support::common::{NodeNs, PluginCall, PodNs, TempDir};
use serde_json::{json, Value};

fn cni_version() -> String {
    std::env::var("CNI_RS_HARNESS_CNI_VERSION").unwrap_or_else(|_| "1.1.0".into())
}

/// host-local never opens the netns, but the skel requires CNI_NETNS on ADD.
const NETNS: &str = "/run/netns/unused-by-host-local";

fn rt(id: &str, netns: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: id.into(),
        netns: netns.into(),
        ifname: "eth0".into(),
        args: RuntimeConf::kubernetes_args("default", id, id, "uid"),
        capability_args: serde_json::Map::new(),
    }
}

fn leases(data: &Path, net: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join(net))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn valid(ids: &[&str]) -> Vec<Attachment> {
    ids.iter()
        .map(|id| Attachment {
            container_id: id.to_string(),
            ifname: "eth0".into(),
        })
        .collect()
}

#[test]
fn runtime_drives_our_host_local_through_every_verb() {
    let tmp = TempDir::new("rt-hl");
    let data = tmp.path().join("data");
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": "hlnet",
        "plugins": [{
            "type": "host-local",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]], "dataDir": data}
        }]
    });
    let list =
        NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).expect("json")).expect("list");
    let runtime = CniConfig::new(vec![common::our_cni_path()], tmp.path().join("cache"));
    runtime
        .validate_network_list(&list)
        .expect("host-local speaks 1.1.0");

    let first = runtime
        .add_network_list(&list, &rt("c1", NETNS))
        .expect("ADD c1");
    assert_eq!(first.ips[0].address.to_string(), "10.77.0.2/24");
    runtime
        .check_network_list(&list, &rt("c1", NETNS))
        .expect("CHECK c1");
    runtime.status_network_list(&list).expect("STATUS");
    assert_eq!(leases(&data, "hlnet"), ["10.77.0.2"]);

    // c2 is cached but no longer valid: GC DELs it from the cache entry.
    runtime
        .add_network_list(&list, &rt("c2", NETNS))
        .expect("ADD c2");
    // c3 leaked behind the runtime's back (no cache entry): only the
    // plugin-level GC with cni.dev/valid-attachments can release it.
    let stdin = json!({"cniVersion": "1.1.0", "name": "hlnet", "ipam": conf["plugins"][0]["ipam"]});
    let call = PluginCall::new("ADD", "c3", NETNS, "eth0", &common::our_cni_path())
        .stdin(serde_json::to_vec(&stdin).expect("json"));
    common::run_plugin(&common::bin("host-local"), &call).expect_ok();
    assert_eq!(leases(&data, "hlnet").len(), 3);

    let report = runtime
        .gc_network_list(&list, Some(&valid(&["c1"])))
        .expect("GC");
    assert_eq!(report.stale_deleted, valid(&["c2"]));
    assert_eq!(report.plugins_collected, 1);
    assert_eq!(
        leases(&data, "hlnet"),
        ["10.77.0.2"],
        "only c1's lease survives GC"
    );

    runtime
        .del_network_list(&list, &rt("c1", NETNS))
        .expect("DEL c1");
    runtime
        .del_network_list(&list, &rt("c1", NETNS))
        .expect("repeated DEL c1");
    assert!(leases(&data, "hlnet").is_empty());
    assert!(runtime
        .cached_result(&list, &rt("c1", NETNS))
        .expect("cache read")
        .is_none());
}

#[test]
fn runtime_drives_bridge_chain_in_a_node_netns() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("rt-br");
    let data = tmp.path().join("data");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/10-bridge.conflist"
    ))
    .expect("conf");
    let mut conf: Value = serde_json::from_str(&text).expect("conflist json");
    conf["cniVersion"] = json!(cni_version());
    conf.as_object_mut().expect("object").remove("cniVersions");
    conf["plugins"][0]["ipam"]["dataDir"] = json!(data);
    let list =
        NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).expect("json")).expect("list");
    let runtime = CniConfig::new(vec![common::harness_plugin_dir()], tmp.path().join("cache"));
    let pod = PodNs::new();
    let netns = pod.path.display().to_string();

    let result = runtime
        .add_network_list(&list, &rt("pod1", &netns))
        .expect("ADD");
    let ip = result.ips[0].address;
    assert!(ip.to_string().starts_with("10.244.0."), "{ip}");
    let addrs = pod.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    assert_eq!(addrs[0]["addr_info"][0]["local"], ip.addr().to_string());
    runtime
        .check_network_list(&list, &rt("pod1", &netns))
        .expect("CHECK");
    let cache = tmp.path().join("cache/results/cni-rs-pod1-eth0");
    assert!(cache.exists());

    runtime
        .del_network_list(&list, &rt("pod1", &netns))
        .expect("DEL");
    assert!(!cache.exists());
    assert!(leases(&data, "cni-rs").is_empty());
    pod.assert_no_link("eth0");
    // DEL after the sandbox is gone (empty netns), as containerd sends it.
    runtime
        .del_network_list(&list, &rt("pod1", ""))
        .expect("DEL with empty netns");
}

#[test]
fn example_configs_load_and_match_our_plugins() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let runtime = CniConfig::new(vec![common::our_cni_path()], std::env::temp_dir());
    // As a runtime pointed at conf/ would: the lexically first file wins.
    let first = cni::runtime::load_dir(&conf).expect("conf/ loads");
    assert_eq!(
        first.source.as_deref(),
        Some(conf.join("10-bridge.conflist").as_path())
    );
    for name in [
        "10-bridge.conflist",
        "20-bridge-dualstack.conflist",
        "30-bridge-ipmasq.conflist",
    ] {
        let list = NetworkConfigList::from_file(&conf.join(name)).expect(name);
        // cniVersion 1.0.0 for older runtimes; cniVersions lets newer ones pick 1.1.0.
        assert_eq!(list.cni_version, "1.1.0", "{name}");
        runtime.validate_network_list(&list).expect(name);
        let old_runtime_view: Value =
            serde_json::from_slice(&std::fs::read(conf.join(name)).expect("read")).expect("json");
        assert_eq!(old_runtime_view["cniVersion"], "1.0.0", "{name}");
    }
    let ipam: Value =
        serde_json::from_slice(&std::fs::read(conf.join("host-local.json")).expect("read"))
            .expect("json");
    assert_eq!(ipam["ipam"]["type"], "host-local");
}
