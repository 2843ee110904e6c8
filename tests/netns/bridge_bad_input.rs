//! Bad input to the bridge plugin: a clear error with the right code, and
//! nothing half-configured left behind (no bridge, veth, lease or rule).

use cni_test_support::bridge::*;
use cni_test_support::common::*;
use serde_json::json;

/// Node links, pod links and leases: what must not change on a failed ADD.
fn snapshot(node: &Node, pod: &PodNs) -> (Vec<String>, Vec<String>, Vec<String>) {
    // Names and global addresses only: operstate and IPv6 link-local
    // addresses settle asynchronously after an ADD.
    let pod_links: Vec<String> = pod
        .ip_json(&["addr", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let global: Vec<String> = l["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["scope"] == "global")
                .map(|a| format!("{}/{}", a["local"], a["prefixlen"]))
                .collect();
            format!("{} {global:?}", l["ifname"])
        })
        .collect();
    (node_links(), pod_links, node.leases())
}

#[test]
fn config_errors_touch_nothing() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    let cases = [
        (
            json!({"ipMasq": true, "ipMasqBackend": "pf"}),
            "unknown ipMasqBackend",
        ),
        (json!({"vlan": 4095}), "invalid VLAN ID 4095"),
        (json!({"vlan": -3}), "invalid VLAN ID -3"),
        (json!({"vlanTrunk": [{"minID": 10}]}), "maxID is missing"),
        (json!({"bridge": "bridge-name-too-long"}), "too long"),
        (json!({"bridge": "bad/name"}), "not a valid interface name"),
        (
            json!({"hairpinMode": true, "promiscMode": true}),
            "hairpin mode and promiscuous mode",
        ),
        (
            json!({"disableContainerInterface": true}),
            "cannot use IPAM",
        ),
        (json!({"runtimeConfig": {"mac": "zz:zz"}}), "invalid MAC"),
        (json!({"mtu": "1500"}), "failed to load netconf"),
    ];
    let before = snapshot(&node, &pod);
    for (extra, want) in cases {
        let conf = node.conf("1.0.0", extra.clone());
        let err = node.call("ADD", "bad", ns, &conf).expect_err(7);
        let msg = err["msg"].as_str().unwrap();
        assert!(msg.contains(want), "{extra}: {msg}");
        assert_eq!(
            snapshot(&node, &pod),
            before,
            "{extra} left something behind"
        );
    }
    assert!(!node_links().contains(&BRIDGE.to_string()));
}

#[test]
fn existing_non_bridge_link_is_refused() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let st = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            "notabridge",
            "type",
            "veth",
            "peer",
            "name",
            "nab-peer",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let before = snapshot(&node, &pod);
    let conf = node.conf("1.0.0", json!({"bridge": "notabridge"}));
    let err = node
        .call("ADD", "nb", pod.path.to_str().unwrap(), &conf)
        .expect_err(7);
    assert_eq!(
        err["msg"],
        "\"notabridge\" already exists but is not a bridge"
    );
    assert_eq!(snapshot(&node, &pod), before);
}

#[test]
fn missing_ipam_plugin_is_a_config_error() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let before = snapshot(&node, &pod);
    let conf = node.conf("1.0.0", json!({"ipam": {"type": "no-such-ipam"}}));
    let err = node
        .call("ADD", "noipam", pod.path.to_str().unwrap(), &conf)
        .expect_err(7);
    assert!(
        err["msg"].as_str().unwrap().contains("no-such-ipam"),
        "{err}"
    );
    assert_eq!(snapshot(&node, &pod), before);
    assert!(
        !node_links().contains(&BRIDGE.to_string()),
        "no bridge created"
    );
}

#[test]
fn netns_that_is_not_a_netns() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let dir = TempDir::new("not-netns");
    let file = dir.path().join("netns");
    std::fs::write(&file, b"").unwrap();
    let before = snapshot(&node, &pod);
    let conf = node.conf("1.0.0", json!({}));
    for path in [file.clone(), dir.path().join("missing")] {
        let err = node
            .call("ADD", "nons", path.to_str().unwrap(), &conf)
            .expect_err(4);
        assert!(err["msg"].as_str().unwrap().contains("CNI_NETNS"), "{err}");
        assert_eq!(snapshot(&node, &pod), before);
    }
    assert!(
        !node_links().contains(&BRIDGE.to_string()),
        "no bridge created"
    );
    // DEL tolerates both (nothing of ours can be there).
    node.call("DEL", "nons", file.to_str().unwrap(), &conf)
        .expect_ok();
    node.call(
        "DEL",
        "nons",
        dir.path().join("missing").to_str().unwrap(),
        &conf,
    )
    .expect_ok();
}

#[test]
fn taken_ifname_fails_and_keeps_the_existing_attachment() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    let conf = node.conf("1.0.0", json!({}));
    let first = node.call("ADD", "owner", ns, &conf).expect_ok().json();
    let before = snapshot(&node, &pod);
    let run = node.call("ADD", "intruder", ns, &conf);
    let err = run.expect_err(999);
    assert!(
        err["msg"].as_str().unwrap().contains("already exists"),
        "{err}"
    );
    assert_eq!(
        snapshot(&node, &pod),
        before,
        "first attachment untouched, nothing added"
    );
    node.call("CHECK", "owner", ns, &with_prev(&conf, &first))
        .expect_ok();
}

#[test]
fn unknown_cni_args_need_ignore_unknown() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let conf = node.conf("1.0.0", json!({}));
    let call = PluginCall::new(
        "ADD",
        "args",
        pod.path.to_str().unwrap(),
        "eth0",
        node.bin.path(),
    )
    .env("CNI_ARGS", "K8S_POD_NAME=x")
    .stdin(serde_json::to_vec(&conf).unwrap());
    let before = snapshot(&node, &pod);
    run_plugin(&bin("bridge"), &call).expect_err(4);
    assert_eq!(snapshot(&node, &pod), before);
}
