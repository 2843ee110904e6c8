//! MAC spoof-check rules (nftables bridge family) in throwaway node netns,
//! including compatibility with Debian's reference `bridge` plugin.

use std::path::Path;
use std::process::Command;

use cni::firewall::spoofcheck;
use cni_test_support::common::{
    run_plugin, NodeNs, PluginCall, PodNs, TempDir, REFERENCE_CNI_PATH,
};
use serde_json::{json, Value};

/// `nft -j list table bridge nat` items without handles and metainfo:
/// comparable between two runs.
fn bridge_nat() -> Vec<Value> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "bridge", "nat"])
        .output()
        .expect("spawn nft");
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("nft json");
    v["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|i| i.get("metainfo").is_none())
        .map(|i| {
            let mut i = i.clone();
            for kind in ["table", "chain", "rule"] {
                if let Some(obj) = i.get_mut(kind).and_then(Value::as_object_mut) {
                    obj.remove("handle");
                }
            }
            i
        })
        .collect()
}

/// Only the (empty) base chain left: what teardown leaves, as the reference.
fn only_base_chain() -> Vec<Value> {
    vec![
        json!({"table": {"family": "bridge", "name": "nat"}}),
        json!({"chain": {"family": "bridge", "table": "nat", "name": "PREROUTING",
            "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}),
    ]
}

fn rule(chain: &str, comment: &str, expr: Value) -> Value {
    json!({"rule": {"family": "bridge", "table": "nat", "chain": chain, "comment": comment, "expr": expr}})
}

fn expected(cid: &str, ifname: &str, veth: &str, mac: &str) -> Vec<Value> {
    let iface = format!("cni-br-iface-{cid}-{ifname}");
    let macc = format!("{iface}-mac");
    let comment = format!("macspoofchk-{cid}-{ifname}");
    let mut v = only_base_chain();
    v.push(json!({"chain": {"family": "bridge", "table": "nat", "name": iface}}));
    v.push(json!({"chain": {"family": "bridge", "table": "nat", "name": macc}}));
    v.push(rule(
        "PREROUTING",
        &comment,
        json!([{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": veth}},
               {"jump": {"target": iface}}]),
    ));
    v.push(rule(&iface, &comment, json!([{"jump": {"target": macc}}])));
    v.push(rule(
        &macc,
        &comment,
        json!([{"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}}, "right": mac}},
               {"return": null}]),
    ));
    v.push(rule(&macc, &comment, json!([{"drop": null}])));
    v
}

#[test]
fn setup_creates_expected_rules_idempotently() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    // The rules only name the host veth: no link is needed.
    spoofcheck::setup("c1", "eth0", "veth1234abcd", "0A:58:0a:16:00:02").expect("setup");
    let want = expected("c1", "eth0", "veth1234abcd", "0a:58:0a:16:00:02");
    assert_eq!(bridge_nat(), want);
    spoofcheck::check("c1", "eth0", "veth1234abcd", "0a:58:0a:16:00:02").expect("check");
    spoofcheck::setup("c1", "eth0", "veth1234abcd", "0a:58:0a:16:00:02").expect("setup again");
    assert_eq!(bridge_nat(), want);
    // A new MAC replaces the old one.
    spoofcheck::setup("c1", "eth0", "veth1234abcd", "0a:58:0a:16:00:03").expect("new mac");
    assert_eq!(
        bridge_nat(),
        expected("c1", "eth0", "veth1234abcd", "0a:58:0a:16:00:03")
    );
    let err = spoofcheck::check("c1", "eth0", "veth1234abcd", "0a:58:0a:16:00:02")
        .expect_err("old MAC no longer allowed");
    assert!(err.to_string().contains("source MAC"), "{err}");
}

#[test]
fn teardown_removes_only_its_attachment() {
    require_root!();
    let _node = NodeNs::enter();
    spoofcheck::setup("c1", "eth0", "veth1", "0a:58:0a:16:00:02").expect("setup c1");
    spoofcheck::setup("c2", "eth0", "veth2", "0a:58:0a:16:00:03").expect("setup c2");
    spoofcheck::teardown("c1", "eth0").expect("teardown c1");
    assert_eq!(
        bridge_nat(),
        expected("c2", "eth0", "veth2", "0a:58:0a:16:00:03")
    );
    spoofcheck::teardown("c1", "eth0").expect("teardown twice");
    spoofcheck::teardown("c2", "eth0").expect("teardown c2");
    assert_eq!(bridge_nat(), only_base_chain());
}

#[test]
fn teardown_without_table_is_ok() {
    require_root!();
    let _node = NodeNs::enter();
    spoofcheck::teardown("nothing", "eth0").expect("teardown on empty ruleset");
    spoofcheck::gc(&[]).expect("gc on empty ruleset");
    assert!(bridge_nat().is_empty());
}

#[test]
fn gc_keeps_valid_and_live_removes_stale() {
    require_root!();
    let _node = NodeNs::enter();
    // A live host interface protects an attachment of another network.
    let out = Command::new("ip")
        .args([
            "link",
            "add",
            "vethlive",
            "type",
            "veth",
            "peer",
            "name",
            "vethlivepeer",
        ])
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    spoofcheck::setup("keep", "eth0", "vethkeep", "0a:00:00:00:00:01").expect("keep");
    spoofcheck::setup("stale", "eth0", "vethstale", "0a:00:00:00:00:02").expect("stale");
    spoofcheck::setup("othernet", "eth0", "vethlive", "0a:00:00:00:00:03").expect("othernet");
    spoofcheck::gc(&[("keep".to_string(), "eth0".to_string())]).expect("gc");
    let text = serde_json::to_string(&bridge_nat()).expect("json");
    assert!(text.contains("macspoofchk-keep-eth0"), "{text}");
    assert!(text.contains("macspoofchk-othernet-eth0"), "{text}");
    assert!(!text.contains("stale"), "{text}");
}

#[test]
fn invalid_input_is_rejected() {
    require_root!();
    let _node = NodeNs::enter();
    assert!(spoofcheck::setup("c", "eth0", "veth1", "not-a-mac").is_err());
    assert!(spoofcheck::setup("c", "eth0", "", "0a:00:00:00:00:01").is_err());
    assert!(bridge_nat().is_empty(), "nothing applied on bad input");
}

/// Reference ADD with macspoofchk produces the same table as our setup, and
/// our teardown removes the reference's rules; the reference DEL removes ours.
#[test]
fn compatible_with_reference_plugin() {
    require_root!();
    let _node = NodeNs::enter();
    let pod = PodNs::new();
    let data = TempDir::new("fw-spoof");
    let conf = json!({
        "cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "bridge": "cni0",
        "isGateway": true, "macspoofchk": true,
        "ipam": {"type": "host-local", "dataDir": data.path(), "ranges": [[{"subnet": "10.24.0.0/16"}]]}
    })
    .to_string();
    let call = |cmd: &str| {
        PluginCall::new(
            cmd,
            "abc123",
            &pod.path.display().to_string(),
            "eth0",
            Path::new(REFERENCE_CNI_PATH),
        )
        .stdin(conf.as_str())
    };
    let bridge = Path::new(REFERENCE_CNI_PATH).join("bridge");
    let add = run_plugin(&bridge, &call("ADD")).expect_ok().json();
    let veth = add["interfaces"][1]["name"]
        .as_str()
        .expect("host veth")
        .to_string();
    let mac = add["interfaces"][2]["mac"]
        .as_str()
        .expect("container mac")
        .to_string();
    let reference = bridge_nat();
    assert_eq!(reference, expected("abc123", "eth0", &veth, &mac));
    spoofcheck::check("abc123", "eth0", &veth, &mac).expect("check reference rules");

    spoofcheck::teardown("abc123", "eth0").expect("our teardown");
    assert_eq!(bridge_nat(), only_base_chain());

    spoofcheck::setup("abc123", "eth0", &veth, &mac).expect("our setup");
    assert_eq!(bridge_nat(), reference);
    run_plugin(&bridge, &call("DEL")).expect_ok();
    assert_eq!(bridge_nat(), only_base_chain());
}
