//! Calls that race on one node must never undo each other's work (issue 12):
//! a failing ADD must not remove a bridge another ADD is attaching to,
//! duplicate ADDs of one attachment must leave exactly one attachment with
//! its lease, ADD racing DEL, CHECK during DEL, DEL racing GC and two
//! networks sharing one bridge must each end in a consistent state.
//!
//! Every scenario runs many rounds, each released at once by a barrier from
//! threads that joined the test's node netns; the round counts are what it
//! took for the scenario to fail on the code before the fix every time.

use std::path::Path;
use std::sync::Barrier;

use cni_test_support::bridge::*;
use cni_test_support::common;
use cni_test_support::common::*;
use serde_json::{json, Value};

/// One plugin call of a round: verb, container id, netns, config.
struct Call {
    verb: &'static str,
    cid: String,
    netns: String,
    conf: Value,
}

impl Call {
    fn new(verb: &'static str, cid: &str, netns: &Path, conf: &Value) -> Call {
        Call {
            verb,
            cid: cid.to_string(),
            netns: netns.display().to_string(),
            conf: conf.clone(),
        }
    }
}

/// Runs all `calls` at once (one thread each, all inside the node's netns,
/// released together) and returns their outcomes in order.
fn race(node: &Node, calls: &[Call]) -> Vec<PluginRun> {
    node.ns.assert_inside();
    let start = Barrier::new(calls.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = calls
            .iter()
            .map(|c| {
                let (start, node_path, bin) = (&start, &node.ns.path, node.bin.path());
                s.spawn(move || {
                    let ns = std::fs::File::open(node_path).expect("open node netns");
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("join the node netns");
                    let call = PluginCall::new(c.verb, &c.cid, &c.netns, "eth0", bin)
                        .stdin(serde_json::to_vec(&c.conf).expect("config JSON"));
                    start.wait();
                    run_plugin(&common::bin("bridge"), &call)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("plugin thread"))
            .collect()
    })
}

/// A failed call: exit 1 and exactly one CNI error document with a message.
fn assert_clean_failure(run: &PluginRun) {
    assert_eq!(run.code, Some(1), "expected a clean failure:\n{run:#?}");
    let v = run.json();
    assert!(
        v["code"].as_u64().is_some() && v["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "not a CNI error document:\n{run:#?}"
    );
}

/// Network `net` on bridge `bridge` with its own store under the node's dataDir.
fn conf_for(node: &Node, net: &str, bridge: &str, extra: Value) -> Value {
    let mut c = node.conf(
        "1.0.0",
        json!({"name": net, "bridge": bridge, "ipam": {"subnet": "10.77.0.0/16"}}),
    );
    merge(&mut c, extra);
    c
}

/// Lease files (IP names) of network `net` whose first line is `cid`.
fn leases_of(node: &Node, net: &str, cid: &str) -> Vec<String> {
    let dir = node.data.path().join(net);
    lease_files(&dir)
        .into_iter()
        .filter(|f| {
            std::fs::read_to_string(dir.join(f)).is_ok_and(|s| s.lines().next() == Some(cid))
        })
        .collect()
}

/// IPv4 addresses (without prefix) on `eth0` inside `pod`; empty if no eth0.
fn eth0_ips(pod: &PodNs) -> Vec<String> {
    let out = pod.exec(&["ip", "-j", "-4", "addr", "show", "dev", "eth0"]);
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["local"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a round's bridge from the node (the tests' own cleanup).
fn drop_bridge(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "del", name])
        .status();
}

/// A pod netns that already holds an `eth0`, so an ADD into it must fail.
fn pod_with_eth0() -> PodNs {
    let pod = PodNs::new();
    let out = pod.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
    ]);
    assert!(out.status.success(), "create eth0 in the pod: {out:?}");
    pod
}

#[test]
fn failing_adds_never_remove_a_bridge_another_add_uses() {
    require_root!();
    let node = Node::new();
    let not_a_dir = node.data.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "x").unwrap();
    for round in 0..100 {
        let (net, bridge) = (format!("race{round}"), format!("crace{round}"));
        let good = conf_for(&node, &net, &bridge, json!({}));
        // Fails in IPAM, after the bridge and the veth exist.
        let bad_ipam = conf_for(
            &node,
            &net,
            &bridge,
            json!({"ipam": {"dataDir": not_a_dir.display().to_string()}}),
        );
        let good_pods: Vec<PodNs> = (0..4).map(|_| PodNs::new()).collect();
        let taken_pods: Vec<PodNs> = (0..4).map(|_| pod_with_eth0()).collect();
        let ipam_pods: Vec<PodNs> = (0..2).map(|_| PodNs::new()).collect();
        let mut calls = Vec::new();
        for (i, p) in good_pods.iter().enumerate() {
            calls.push(Call::new("ADD", &format!("good-{i}"), &p.path, &good));
        }
        for (i, p) in taken_pods.iter().enumerate() {
            calls.push(Call::new("ADD", &format!("taken-{i}"), &p.path, &good));
        }
        for (i, p) in ipam_pods.iter().enumerate() {
            calls.push(Call::new("ADD", &format!("noipam-{i}"), &p.path, &bad_ipam));
        }
        let runs = race(&node, &calls);
        for run in &runs[..4] {
            assert_eq!(
                run.code,
                Some(0),
                "round {round}: a good ADD failed:\n{run:#?}"
            );
        }
        runs[4..].iter().for_each(assert_clean_failure);
        assert_eq!(
            bridge_ports(&bridge).len(),
            4,
            "round {round}: every good pod has its port"
        );
        for (i, pod) in good_pods.iter().enumerate() {
            let cid = format!("good-{i}");
            assert_eq!(
                eth0_ips(pod).len(),
                1,
                "round {round}: {cid} has its address"
            );
            assert_eq!(
                leases_of(&node, &net, &cid).len(),
                1,
                "round {round}: {cid} lease"
            );
        }
        for (i, c) in calls[..4].iter().enumerate() {
            node.call("DEL", &format!("good-{i}"), &c.netns, &good)
                .expect_ok();
        }
        drop_bridge(&bridge);
    }
}

#[test]
fn duplicate_adds_leave_one_attachment_and_its_lease() {
    require_root!();
    let node = Node::new();
    let (net, bridge) = ("dupnet", "cdup0");
    let conf = conf_for(&node, net, bridge, json!({}));
    let mut held = Vec::new();
    let mut pods = Vec::new();
    for round in 0..40 {
        let pod = PodNs::new();
        let cid = format!("dup-{round}");
        let calls: Vec<Call> = (0..4)
            .map(|_| Call::new("ADD", &cid, &pod.path, &conf))
            .collect();
        let runs = race(&node, &calls);
        let ok: Vec<&PluginRun> = runs.iter().filter(|r| r.code == Some(0)).collect();
        assert!(
            !ok.is_empty(),
            "round {round}: no ADD succeeded:\n{runs:#?}"
        );
        let ip = result_ip(&ok[0].json(), false);
        for r in &ok {
            assert_eq!(
                result_ip(&r.json(), false),
                ip,
                "round {round}: two answers"
            );
        }
        runs.iter()
            .filter(|r| r.code != Some(0))
            .for_each(assert_clean_failure);
        assert_eq!(
            eth0_ips(&pod),
            vec![ip.clone()],
            "round {round}: pod address"
        );
        assert_eq!(
            leases_of(&node, net, &cid),
            vec![ip.clone()],
            "round {round}: the pod's address is leased to it"
        );
        assert!(!held.contains(&ip), "round {round}: {ip} handed out twice");
        held.push(ip);
        pods.push((cid, pod));
    }
    for (cid, pod) in &pods {
        node.call("DEL", cid, pod.path.to_str().unwrap(), &conf)
            .expect_ok();
    }
    assert!(lease_files(&node.data.path().join(net)).is_empty());
    drop_bridge(bridge);
}

/// Whatever order ADD and DEL of one attachment ran in, the pod, the lease
/// and the host veth agree: attached with its lease, or nothing left.
#[test]
fn add_racing_del_of_one_attachment_ends_consistent() {
    require_root!();
    let node = Node::new();
    let (net, bridge) = ("adddel", "cadddel0");
    let conf = conf_for(&node, net, bridge, json!({"ipMasq": true}));
    for round in 0..40 {
        let pod = PodNs::new();
        let cid = format!("ad-{round}");
        let runs = race(
            &node,
            &[
                Call::new("ADD", &cid, &pod.path, &conf),
                Call::new("DEL", &cid, &pod.path, &conf),
            ],
        );
        assert_eq!(
            runs[1].code,
            Some(0),
            "round {round}: DEL failed:\n{:#?}",
            runs[1]
        );
        let ips = eth0_ips(&pod);
        let leases = leases_of(&node, net, &cid);
        if runs[0].code == Some(0) && !ips.is_empty() {
            assert_eq!(leases, ips, "round {round}: attached pod without its lease");
        } else {
            assert!(
                ips.is_empty() && leases.is_empty(),
                "round {round}: half an attachment: ips {ips:?}, leases {leases:?}"
            );
        }
        node.call("DEL", &cid, pod.path.to_str().unwrap(), &conf)
            .expect_ok();
        assert!(leases_of(&node, net, &cid).is_empty());
    }
    assert!(bridge_ports(bridge).is_empty(), "no veth left");
    assert!(!nat_rules(false).contains("ad-"), "no masquerade rule left");
    drop_bridge(bridge);
}

/// CHECK during DEL answers for the state before or after the DEL, never
/// with a crash or a second document, and leaves nothing behind.
#[test]
fn check_during_del_is_clean() {
    require_root!();
    let node = Node::new();
    let (net, bridge) = ("chkdel", "cchkdel0");
    let conf = conf_for(&node, net, bridge, json!({"ipMasq": true}));
    for round in 0..20 {
        let pod = PodNs::new();
        let cid = format!("cd-{round}");
        let result = node
            .call("ADD", &cid, pod.path.to_str().unwrap(), &conf)
            .expect_ok()
            .json();
        let with_prev = with_prev(&conf, &result);
        let runs = race(
            &node,
            &[
                Call::new("DEL", &cid, &pod.path, &with_prev),
                Call::new("CHECK", &cid, &pod.path, &with_prev),
            ],
        );
        assert_eq!(runs[0].code, Some(0), "round {round}: DEL:\n{:#?}", runs[0]);
        if runs[1].code != Some(0) {
            assert_clean_failure(&runs[1]);
        }
        assert!(eth0_ips(&pod).is_empty(), "round {round}: eth0 left");
        assert!(
            leases_of(&node, net, &cid).is_empty(),
            "round {round}: lease left"
        );
    }
    assert!(bridge_ports(bridge).is_empty(), "no veth left");
    assert!(!nat_rules(false).contains("cd-"), "no masquerade rule left");
    drop_bridge(bridge);
}

/// GC (valid: the pods that stay) racing the DELs of the others: every call
/// succeeds, the survivors keep lease and masquerade rules, the rest is gone.
#[test]
fn del_racing_gc_ends_consistent() {
    require_root!();
    let node = Node::new();
    let (net, bridge) = ("delgc", "cdelgc0");
    let conf = conf_for(&node, net, bridge, json!({"ipMasq": true}));
    for round in 0..20 {
        let pods: Vec<PodNs> = (0..6).map(|_| PodNs::new()).collect();
        let cid = |i: usize| format!("dg-{round}-{i}");
        for (i, pod) in pods.iter().enumerate() {
            node.call("ADD", &cid(i), pod.path.to_str().unwrap(), &conf)
                .expect_ok();
        }
        let valid: Vec<Value> = (0..3)
            .map(|i| json!({"containerID": cid(i), "ifname": "eth0"}))
            .collect();
        let mut gc_conf = conf.clone();
        gc_conf["cniVersion"] = json!("1.1.0");
        gc_conf["cni.dev/valid-attachments"] = json!(valid);
        let mut calls: Vec<Call> = (3..6)
            .map(|i| Call::new("DEL", &cid(i), &pods[i].path, &conf))
            .collect();
        calls.push(Call::new("GC", "", Path::new(""), &gc_conf));
        for run in race(&node, &calls) {
            assert_eq!(run.code, Some(0), "round {round}:\n{run:#?}");
        }
        let rules = nat_rules(false);
        for (i, pod) in pods.iter().enumerate() {
            let (ips, leases) = (eth0_ips(pod), leases_of(&node, net, &cid(i)));
            if i < 3 {
                assert_eq!(leases, ips, "round {round}: survivor {i} keeps its lease");
                assert!(rules.contains(&cid(i)), "round {round}: survivor {i} rules");
            } else {
                assert!(leases.is_empty(), "round {round}: deleted {i} lease left");
                assert!(!rules.contains(&cid(i)), "round {round}: deleted {i} rules");
            }
        }
        for (i, pod) in pods.iter().enumerate().take(3) {
            node.call("DEL", &cid(i), pod.path.to_str().unwrap(), &conf)
                .expect_ok();
        }
    }
    assert!(lease_files(&node.data.path().join(net)).is_empty());
    assert!(!nat_rules(false).contains("dg-"), "no masquerade rule left");
    drop_bridge(bridge);
}

/// Two networks on one bridge, first ADDs on a fresh node, some failing:
/// every good ADD of either network keeps its port.
#[test]
fn two_networks_sharing_a_bridge_race_on_a_fresh_node() {
    require_root!();
    let node = Node::new();
    let not_a_dir = node.data.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "x").unwrap();
    for round in 0..40 {
        let bridge = format!("cshare{round}");
        let nets = [format!("sha{round}"), format!("shb{round}")];
        let confs: Vec<Value> = nets
            .iter()
            .map(|n| conf_for(&node, n, &bridge, json!({})))
            .collect();
        let bad: Vec<Value> = nets
            .iter()
            .map(|n| {
                conf_for(
                    &node,
                    n,
                    &bridge,
                    json!({"ipam": {"dataDir": not_a_dir.display().to_string()}}),
                )
            })
            .collect();
        let pods: Vec<PodNs> = (0..8).map(|_| PodNs::new()).collect();
        let calls: Vec<Call> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let conf = if i % 4 == 3 {
                    &bad[i % 2]
                } else {
                    &confs[i % 2]
                };
                Call::new("ADD", &format!("sh-{i}"), &p.path, conf)
            })
            .collect();
        let runs = race(&node, &calls);
        for (i, run) in runs.iter().enumerate() {
            if i % 4 == 3 {
                assert_clean_failure(run);
            } else {
                assert_eq!(
                    run.code,
                    Some(0),
                    "round {round}: ADD {i} failed:\n{run:#?}"
                );
            }
        }
        assert_eq!(bridge_ports(&bridge).len(), 6, "round {round}: ports");
        for (i, c) in calls.iter().enumerate().filter(|(i, _)| i % 4 != 3) {
            node.call("DEL", &format!("sh-{i}"), &c.netns, &confs[i % 2])
                .expect_ok();
        }
        drop_bridge(&bridge);
    }
}
