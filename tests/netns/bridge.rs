//! The bridge plugin end to end: the real binary through the CNI protocol,
//! inside a throwaway node netns with pod netns, checked against kernel state.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use cni::netns::NetNs;
use cni_test_support::bridge::*;
use cni_test_support::common::*;
use serde_json::{json, Value};

#[test]
fn add_builds_the_reference_layout_and_two_pods_talk() {
    require_root!();
    let node = Node::new();
    let conf = node.conf("1.0.0", json!({"isDefaultGateway": true}));
    let (p1, p2) = (PodNs::new(), PodNs::new());
    let r1 = node
        .call("ADD", "pod-one", p1.path.to_str().unwrap(), &conf)
        .expect_ok()
        .json();
    let r2 = node
        .call("ADD", "pod-two", p2.path.to_str().unwrap(), &conf)
        .expect_ok()
        .json();

    // Result layout: [bridge, host veth, container], ips point at 2.
    let ifs = r1["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 3, "{r1}");
    assert_eq!(ifs[0]["name"], BRIDGE);
    assert!(ifs[0].get("sandbox").is_none());
    let host = ifs[1]["name"].as_str().unwrap();
    assert!(host.starts_with("veth") && host.len() == 12, "{host}");
    assert_eq!(ifs[2]["name"], "eth0");
    assert_eq!(ifs[2]["sandbox"], p1.path.to_str().unwrap());
    for i in ifs {
        let mac = i["mac"].as_str().unwrap();
        assert_eq!(mac, mac.to_lowercase());
        assert_eq!(mac.len(), 17);
    }
    assert_eq!(r1["ips"][0]["interface"], 2);
    assert_eq!(r1["ips"][0]["gateway"], "10.88.0.1");
    assert_eq!(r1["routes"][0]["dst"], "0.0.0.0/0");

    // Kernel state on the node: bridge up with the gateway, veth enslaved.
    let br = ip_json(&["-d", "addr", "show", BRIDGE]);
    assert_eq!(br[0]["linkinfo"]["info_kind"], "bridge");
    assert!(br[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert!(
        br[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.88.0.1" && a["prefixlen"] == 24),
        "{br}"
    );
    assert_eq!(
        br[0]["address"], ifs[0]["mac"],
        "result carries the bridge MAC"
    );
    let mut ports = bridge_ports(BRIDGE);
    ports.sort();
    let mut want = vec![
        host.to_string(),
        r2["interfaces"][1]["name"].as_str().unwrap().to_string(),
    ];
    want.sort();
    assert_eq!(ports, want);
    let veth = ip_json(&["link", "show", host]);
    assert_eq!(
        veth[0]["address"], ifs[1]["mac"],
        "result carries the re-read veth MAC"
    );
    assert_eq!(veth[0]["operstate"], "UP");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    // Kernel state in the pod: address, default route, eth0 up; `lo` is
    // left to the loopback plugin, as the reference bridge leaves it.
    let ip1 = result_ip(&r1, false);
    let addrs = pod_addrs(&p1, "eth0");
    assert!(
        addrs.iter().any(|(a, _)| *a == format!("{ip1}/24")),
        "{addrs:?}"
    );
    let routes = p1.ip_json(&["route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "10.88.0.1");
    let lo = p1.ip_json(&["link", "show", "lo"]);
    assert!(!lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(
        p1.ip_json(&["link", "show", "eth0"])[0]["address"],
        ifs[2]["mac"]
    );

    // Data path: pod to pod and pod to gateway.
    let ip2 = result_ip(&r2, false);
    assert!(ping(&p1, &ip2), "pod-one cannot reach pod-two at {ip2}");
    assert!(ping(&p2, &ip1), "pod-two cannot reach pod-one at {ip1}");
    assert!(ping(&p1, "10.88.0.1"), "pod-one cannot reach the gateway");

    // DEL removes the pod side and the lease; DEL twice is fine.
    assert_eq!(node.leases().len(), 2);
    node.call(
        "DEL",
        "pod-one",
        p1.path.to_str().unwrap(),
        &with_prev(&conf, &r1),
    )
    .expect_ok();
    node.call("DEL", "pod-one", p1.path.to_str().unwrap(), &conf)
        .expect_ok();
    p1.assert_no_link("eth0");
    assert_eq!(node.leases(), vec![ip2.clone()]);
    assert_eq!(bridge_ports(BRIDGE).len(), 1);
    assert!(
        node_links().contains(&BRIDGE.to_string()),
        "the bridge stays"
    );
}

/// A TCP server bound inside `ns`, answering each connection with `reply`.
fn serve_in(ns: &NetNs, reply: String) -> std::thread::JoinHandle<()> {
    let listener = ns
        .run(|| TcpListener::bind("0.0.0.0:8080"))
        .expect("enter pod netns")
        .expect("bind :8080 in the pod");
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.write_all(reply.as_bytes());
        }
    })
}

#[test]
fn ten_pods_each_serve_8080() {
    require_root!();
    let node = Node::new();
    let conf = node.conf("1.0.0", json!({}));
    let pods: Vec<PodNs> = (0..10).map(|_| PodNs::new()).collect();
    let mut servers = Vec::new();
    let mut ips = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let r = node
            .call(
                "ADD",
                &format!("web-{i}"),
                pod.path.to_str().unwrap(),
                &conf,
            )
            .expect_ok()
            .json();
        ips.push(result_ip(&r, false));
        let ns = NetNs::open(&pod.path).unwrap();
        servers.push(serve_in(&ns, format!("pod-{i}")));
    }
    let unique: std::collections::BTreeSet<_> = ips.iter().collect();
    assert_eq!(unique.len(), 10, "{ips:?}");
    // From the node (through the bridge gateway) to every pod.
    for (i, ip) in ips.iter().enumerate() {
        let mut s = TcpStream::connect_timeout(
            &format!("{ip}:8080").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("connect {ip}:8080: {e}"));
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, format!("pod-{i}"));
    }
    for s in servers {
        s.join().unwrap();
    }
    for (i, pod) in pods.iter().enumerate() {
        node.call(
            "DEL",
            &format!("web-{i}"),
            pod.path.to_str().unwrap(),
            &conf,
        )
        .expect_ok();
    }
    assert!(node.leases().is_empty());
    assert!(bridge_ports(BRIDGE).is_empty());
}

#[test]
fn dual_stack_has_no_dad_stall() {
    require_root!();
    let node = Node::new();
    let ipam = json!({"ipam": {"subnet": null, "ranges": [
        [{"subnet": "10.89.0.0/24"}],
        [{"subnet": "fd10:89::/64"}]
    ]}});
    let conf = node.conf("1.0.0", ipam);
    let (p1, p2) = (PodNs::new(), PodNs::new());
    let r1 = node
        .call("ADD", "ds-1", p1.path.to_str().unwrap(), &conf)
        .expect_ok()
        .json();
    let r2 = node
        .call("ADD", "ds-2", p2.path.to_str().unwrap(), &conf)
        .expect_ok()
        .json();
    assert_eq!(r1["ips"].as_array().unwrap().len(), 2, "{r1}");
    let v6 = result_ip(&r1, true);
    assert!(v6.starts_with("fd10:89::"), "{v6}");
    // Right after ADD the IPv6 address is usable: DAD is off, nothing tentative.
    // The kernel clears "tentative" from a work item right after the add;
    // with DAD off that happens at once instead of after ~2 s of probing.
    eventually("the v6 address to be usable", || {
        let addrs = pod_addrs(&p1, "eth0");
        let (_, info) = addrs
            .iter()
            .find(|(a, _)| a.starts_with(&v6))
            .expect("v6 address present");
        info.get("tentative").is_none() && info.get("dadfailed").is_none()
    });
    let dad = p1.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad"]);
    assert_eq!(String::from_utf8_lossy(&dad.stdout).trim(), "0");
    let br = ip_json(&["-6", "addr", "show", BRIDGE]);
    assert!(
        br[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "fd10:89::1"),
        "{br}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")
            .unwrap()
            .trim(),
        "1"
    );
    let v6_2 = result_ip(&r2, true);
    assert!(
        p1.exec(&["ping", "-6", "-c1", "-W2", &v6_2])
            .status
            .success(),
        "v6 pod to pod"
    );
    assert!(ping(&p1, &result_ip(&r2, false)), "v4 pod to pod");
    for (cid, pod) in [("ds-1", &p1), ("ds-2", &p2)] {
        node.call("DEL", cid, pod.path.to_str().unwrap(), &conf)
            .expect_ok();
    }
    assert!(node.leases().is_empty());
}

#[test]
fn del_with_empty_or_vanished_netns_releases_lease_and_masquerade() {
    require_root!();
    let node = Node::new();
    for backend in ["iptables", "nftables"] {
        let conf = node.conf("1.0.0", json!({"ipMasq": true, "ipMasqBackend": backend}));
        let pod = PodNs::new();
        let cid = format!("masq-{backend}");
        let r = node
            .call("ADD", &cid, pod.path.to_str().unwrap(), &conf)
            .expect_ok()
            .json();
        let ip = result_ip(&r, false);
        let rules = || format!("{}{}", nat_rules(false), nft_ruleset());
        assert!(
            rules().contains(&ip),
            "{backend}: no masquerade rule for {ip}:\n{}",
            rules()
        );
        assert_eq!(node.leases(), vec![ip.clone()]);
        // containerd's second DEL: empty netns, no prevResult.
        node.call("DEL", &cid, "", &conf).expect_ok();
        assert!(
            !rules().contains(&ip),
            "{backend}: rule left behind:\n{}",
            rules()
        );
        assert!(node.leases().is_empty(), "{backend}: lease left behind");
        node.call("DEL", &cid, "", &conf).expect_ok();
    }
    // Netns gone before DEL: the kernel took the veth, we release the rest.
    let conf = node.conf("1.0.0", json!({"ipMasq": true}));
    let pod = PodNs::new();
    let path = pod.path.to_str().unwrap().to_string();
    let r = node.call("ADD", "gone", &path, &conf).expect_ok().json();
    let ip = result_ip(&r, false);
    drop(pod);
    node.call("DEL", "gone", &path, &with_prev(&conf, &r))
        .expect_ok();
    assert!(!nat_rules(false).contains(&ip));
    assert!(node.leases().is_empty());
    // Netns teardown (and with it the veth) is asynchronous in the kernel.
    eventually("veths of destroyed pods to vanish", || {
        bridge_ports(BRIDGE).is_empty()
    });
}

/// DEL cleans up concurrently (link delete, IPAM DEL, masquerade); a
/// failing IPAM DEL must not stop the others, and its error is reported.
#[test]
fn del_runs_every_cleanup_when_ipam_del_fails() {
    require_root!();
    let node = Node::new();
    // An IPAM plugin that allocates with host-local but refuses to release.
    let script = node.bin.path().join("sticky-ipam");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ]; then\n  \
             echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"lease store busy\"}}'\n  \
             exit 1\nfi\nexec {}\n",
            node.bin.path().join("host-local").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = node.conf(
        "1.0.0",
        json!({"ipMasq": true, "ipam": {"type": "sticky-ipam"}}),
    );
    let pod = PodNs::new();
    let path = pod.path.to_str().unwrap();
    let r = node.call("ADD", "sticky", path, &conf).expect_ok().json();
    let ip = result_ip(&r, false);
    assert!(nat_rules(false).contains(&ip), "{}", nat_rules(false));
    let err = node.call("DEL", "sticky", path, &conf).expect_err(11);
    assert!(
        err["msg"].as_str().unwrap().contains("lease store busy"),
        "{err}"
    );
    pod.assert_no_link("eth0");
    assert!(bridge_ports(BRIDGE).is_empty(), "host veth left behind");
    assert!(!nat_rules(false).contains(&ip), "{}", nat_rules(false));
    // The IPAM plugin refused: its lease stays.
    assert_eq!(node.leases(), vec![ip]);
}

#[test]
fn add_failure_rolls_back_everything() {
    require_root!();
    let node = Node::new();
    // One usable address: the second ADD fails in IPAM.
    let conf = node.conf(
        "1.0.0",
        json!({"ipMasq": true, "ipam": {"subnet": null, "ranges": [[{"subnet": "10.90.0.0/29", "rangeStart": "10.90.0.2", "rangeEnd": "10.90.0.2"}]]}}),
    );
    let (p1, p2) = (PodNs::new(), PodNs::new());
    node.call("ADD", "first", p1.path.to_str().unwrap(), &conf)
        .expect_ok();
    let before = node_links();
    let nat_before = nat_rules(false);
    let run = node.call("ADD", "second", p2.path.to_str().unwrap(), &conf);
    // The IPAM error comes through unchanged (reference: 999, ours: 11).
    assert_eq!(run.code, Some(1), "{run:?}");
    let err = run.json();
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("no IP addresses available"),
        "{err}"
    );
    assert_eq!(node_links(), before, "no veth left on the node");
    assert_eq!(bridge_ports(BRIDGE).len(), 1);
    p2.assert_no_link("eth0");
    assert_eq!(nat_rules(false), nat_before);
    assert_eq!(node.leases(), vec!["10.90.0.2".to_string()]);
}

#[test]
fn failed_first_add_on_a_fresh_node_leaves_no_bridge() {
    require_root!();
    let node = Node::new();
    // host-local refuses a /32: the very first ADD fails after the bridge
    // was created, so the rollback must remove the bridge it made.
    let conf = node.conf(
        "1.0.0",
        json!({"isGateway": true, "ipam": {"subnet": "10.91.0.7/32"}}),
    );
    let before = node_links();
    let pod = PodNs::new();
    let run = node.call("ADD", "first", pod.path.to_str().unwrap(), &conf);
    run.expect_err(7);
    assert_eq!(node_links(), before, "no bridge or veth left on the node");
    assert!(node.leases().is_empty());
    // A bridge that already exists (with a port) is never removed by a failed ADD.
    let good = node.conf("1.0.0", json!({}));
    let p1 = PodNs::new();
    node.call("ADD", "ok", p1.path.to_str().unwrap(), &good)
        .expect_ok();
    let with_bridge = node_links();
    let p2 = PodNs::new();
    node.call("ADD", "bad", p2.path.to_str().unwrap(), &conf)
        .expect_err(7);
    assert_eq!(node_links(), with_bridge, "existing bridge and port kept");
}

#[test]
fn twenty_parallel_adds_on_a_fresh_node() {
    require_root!();
    let node = Node::new();
    let conf = node.conf("1.0.0", json!({"isDefaultGateway": true}));
    let pods: Vec<PodNs> = (0..20).map(|_| PodNs::new()).collect();
    // Threads start in their creator's netns: all of them are in the node.
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    node.call("ADD", &format!("par-{i}"), pod.path.to_str().unwrap(), conf)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect_ok().json())
            .collect()
    });
    let ips: std::collections::BTreeSet<String> =
        results.iter().map(|r| result_ip(r, false)).collect();
    assert_eq!(ips.len(), 20);
    assert_eq!(bridge_ports(BRIDGE).len(), 20);
    let br = ip_json(&["addr", "show", BRIDGE]);
    let gws: Vec<_> = br[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .collect();
    assert_eq!(gws.len(), 1, "exactly one gateway address: {br}");
    let macs: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["interfaces"][1]["name"].as_str().unwrap())
        .collect();
    assert_eq!(macs.len(), 20, "distinct host veth names");
    assert!(ping(&pods[0], &result_ip(&results[19], false)));
}

#[test]
fn results_in_every_version() {
    require_root!();
    let node = Node::new();
    for (n, version) in ALL_VERSIONS.iter().enumerate() {
        let conf = node.conf(version, json!({"isDefaultGateway": true}));
        let pod = PodNs::new();
        let cid = format!("ver-{n}");
        let r = node
            .call("ADD", &cid, pod.path.to_str().unwrap(), &conf)
            .expect_ok()
            .json();
        assert_eq!(r["cniVersion"], *version, "{r}");
        match *version {
            "0.1.0" | "0.2.0" => {
                assert!(
                    r["ip4"]["ip"].as_str().unwrap().starts_with("10.88.0."),
                    "{r}"
                );
                assert_eq!(r["ip4"]["gateway"], "10.88.0.1");
                assert!(r.get("interfaces").is_none());
            }
            _ => {
                assert_eq!(r["interfaces"].as_array().unwrap().len(), 3, "{r}");
                assert_eq!(r["ips"][0]["interface"], 2);
                let has_version = r["ips"][0].get("version").is_some();
                assert_eq!(has_version, version.starts_with("0."), "{version}: {r}");
            }
        }
        if *version >= "0.4.0" {
            node.call(
                "CHECK",
                &cid,
                pod.path.to_str().unwrap(),
                &with_prev(&conf, &r),
            )
            .expect_ok();
        }
        node.call(
            "DEL",
            &cid,
            pod.path.to_str().unwrap(),
            &with_prev(&conf, &r),
        )
        .expect_ok();
    }
    assert!(node.leases().is_empty());
}

#[test]
fn check_detects_a_removed_address_and_missing_veth() {
    require_root!();
    let node = Node::new();
    let conf = node.conf("1.0.0", json!({"ipMasq": true}));
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    let r = node.call("ADD", "chk", ns, &conf).expect_ok().json();
    let with = with_prev(&conf, &r);
    node.call("CHECK", "chk", ns, &with).expect_ok();
    // Without prevResult CHECK cannot work.
    let err = node.call("CHECK", "chk", ns, &conf).expect_err(7);
    assert!(err["msg"].as_str().unwrap().contains("prevResult"), "{err}");
    let ip = r["ips"][0]["address"].as_str().unwrap();
    assert!(pod
        .exec(&["ip", "addr", "del", ip, "dev", "eth0"])
        .status
        .success());
    let run = node.call("CHECK", "chk", ns, &with);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.json()["msg"]
            .as_str()
            .unwrap()
            .contains(ip.split('/').next().unwrap()),
        "{run:?}"
    );
    // A missing host veth is detected too.
    node.call("DEL", "chk", ns, &with).expect_ok();
    let run = node.call("CHECK", "chk", ns, &with);
    assert_eq!(run.code, Some(1), "{run:?}");
}

#[test]
fn layer2_only_without_ipam() {
    require_root!();
    let node = Node::new();
    let conf = node.conf(
        "1.1.0",
        json!({"ipam": null, "isGateway": false, "mtu": 1400}),
    );
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    let r = node.call("ADD", "l2", ns, &conf).expect_ok().json();
    assert!(
        r.get("ips")
            .is_none_or(|i| i.as_array().unwrap().is_empty()),
        "{r}"
    );
    let eth0 = pod.ip_json(&["link", "show", "eth0"]);
    assert!(eth0[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));
    assert_eq!(eth0[0]["mtu"], 1400);
    assert_eq!(ip_json(&["link", "show", BRIDGE])[0]["mtu"], 1400);
    // CHECK without IPAM works (the reference fails: plugins#997 era bug).
    node.call("CHECK", "l2", ns, &with_prev(&conf, &r))
        .expect_ok();
    node.call("STATUS", "l2", ns, &conf).expect_ok();
    node.call("DEL", "l2", ns, &conf).expect_ok();
    // disableContainerInterface leaves it down.
    let conf = node.conf(
        "1.1.0",
        json!({"ipam": null, "disableContainerInterface": true}),
    );
    node.call("ADD", "l2-down", ns, &conf).expect_ok();
    let eth0 = pod.ip_json(&["link", "show", "eth0"]);
    assert!(
        !eth0[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP"),
        "{eth0}"
    );
    node.call("DEL", "l2-down", ns, &conf).expect_ok();
}

#[test]
fn mac_hairpin_isolation_and_promisc() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    let conf = node.conf(
        "1.0.0",
        json!({"hairpinMode": true, "portIsolation": true, "runtimeConfig": {"mac": "0A:58:0A:58:00:42"}}),
    );
    let run = {
        let call = PluginCall::new("ADD", "mac", ns, "eth0", node.bin.path())
            .env(
                "CNI_ARGS",
                "IgnoreUnknown=1;MAC=0a:58:00:00:00:01;K8S_POD_NAME=x",
            )
            .stdin(serde_json::to_vec(&conf).unwrap());
        run_plugin(&bin("bridge"), &call)
    };
    let r = run.expect_ok().json();
    assert_eq!(
        r["interfaces"][2]["mac"], "0a:58:0a:58:00:42",
        "runtimeConfig wins over CNI_ARGS"
    );
    assert_eq!(
        pod.ip_json(&["link", "show", "eth0"])[0]["address"],
        "0a:58:0a:58:00:42"
    );
    let host = r["interfaces"][1]["name"].as_str().unwrap();
    let d = ip_json(&["-d", "link", "show", host]);
    assert_eq!(d[0]["linkinfo"]["info_slave_data"]["hairpin"], true, "{d}");
    assert_eq!(d[0]["linkinfo"]["info_slave_data"]["isolated"], true, "{d}");
    node.call("DEL", "mac", ns, &conf).expect_ok();

    let conf = node.conf("1.0.0", json!({"promiscMode": true}));
    let r = node.call("ADD", "promisc", ns, &conf).expect_ok().json();
    let br = ip_json(&["link", "show", BRIDGE]);
    assert!(
        br[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "PROMISC"),
        "{br}"
    );
    node.call("CHECK", "promisc", ns, &with_prev(&conf, &r))
        .expect_ok();
    // CHECK compares promisc with the config.
    let plain = node.conf("1.0.0", json!({}));
    assert_eq!(
        node.call("CHECK", "promisc", ns, &with_prev(&plain, &r))
            .code,
        Some(1)
    );
    node.call("DEL", "promisc", ns, &conf).expect_ok();
}

#[test]
fn gc_and_status() {
    require_root!();
    let node = Node::new();
    let conf = node.conf("1.1.0", json!({"ipMasq": true, "macspoofchk": true}));
    let (p1, p2) = (PodNs::new(), PodNs::new());
    let r1 = node
        .call("ADD", "keep", p1.path.to_str().unwrap(), &conf)
        .expect_ok()
        .json();
    let r2 = node
        .call("ADD", "drop", p2.path.to_str().unwrap(), &conf)
        .expect_ok()
        .json();
    let (ip1, ip2) = (result_ip(&r1, false), result_ip(&r2, false));
    assert!(
        nft_ruleset().contains("macspoofchk-keep-eth0"),
        "{}",
        nft_ruleset()
    );
    node.call("STATUS", "", "", &conf).expect_ok();
    // The runtime lost pod "drop" (no DEL ever came) and its netns is gone.
    drop(p2);
    // Spoof-check GC keeps rules whose host veth still exists (the table is
    // shared by all networks); the kernel removes it asynchronously.
    eventually("the lost pod's veth to vanish", || {
        bridge_ports(BRIDGE).len() == 1
    });
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    node.call("GC", "", "", &gc).expect_ok();
    assert_eq!(node.leases(), vec![ip1.clone()]);
    let rules = nat_rules(false);
    assert!(rules.contains(&ip1) && !rules.contains(&ip2), "{rules}");
    let nft = nft_ruleset();
    assert!(
        nft.contains("macspoofchk-keep-eth0") && !nft.contains("macspoofchk-drop-eth0"),
        "{nft}"
    );
    node.call("DEL", "keep", p1.path.to_str().unwrap(), &conf)
        .expect_ok();
    assert!(!nft_ruleset().contains("macspoofchk-keep-eth0"));
}

#[test]
fn conflicting_bridge_address_rolls_back_after_ipam_and_force_replaces_it() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    // The bridge exists with an address from another subnet.
    let setup = [
        vec!["link", "add", BRIDGE, "type", "bridge"],
        vec!["addr", "add", "10.200.0.1/24", "dev", BRIDGE],
    ];
    for args in setup {
        assert!(std::process::Command::new("ip")
            .args(&args)
            .status()
            .unwrap()
            .success());
    }
    let conf = node.conf("1.0.0", json!({"ipMasq": true}));
    let nat_before = nat_rules(false);
    let err = node.call("ADD", "conflict", ns, &conf).expect_err(999);
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("already has an IP address different from 10.88.0.1/24"),
        "{err}"
    );
    // Failure after IPAM and container setup: everything is undone.
    assert!(node.leases().is_empty(), "lease released");
    assert!(bridge_ports(BRIDGE).is_empty(), "veth removed");
    pod.assert_no_link("eth0");
    assert_eq!(nat_rules(false), nat_before);
    // forceAddress replaces the conflicting IPv4 address.
    let conf = node.conf("1.0.0", json!({"forceAddress": true}));
    node.call("ADD", "conflict", ns, &conf).expect_ok();
    let br = ip_json(&["-4", "addr", "show", BRIDGE]);
    let addrs: Vec<&Value> = br[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["local"])
        .collect();
    assert_eq!(addrs, vec!["10.88.0.1"], "{br}");
}

#[test]
fn macspoofchk_rules_follow_the_attachment() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    let conf = node.conf("1.0.0", json!({"macspoofchk": true}));
    let r = node.call("ADD", "spoof", ns, &conf).expect_ok().json();
    let host = r["interfaces"][1]["name"].as_str().unwrap();
    let mac = r["interfaces"][2]["mac"].as_str().unwrap();
    let nft = nft_ruleset();
    assert!(nft.contains(&format!("iifname \"{host}\"")), "{nft}");
    assert!(nft.contains(&format!("ether saddr {mac} return")), "{nft}");
    node.call("CHECK", "spoof", ns, &with_prev(&conf, &r))
        .expect_ok();
    node.call("DEL", "spoof", "", &conf).expect_ok();
    let nft = nft_ruleset();
    assert!(!nft.contains("macspoofchk-spoof-eth0"), "{nft}");
}

/// True when the kernel was built with CONFIG_BRIDGE_VLAN_FILTERING.
fn kernel_has_vlan_filtering() -> bool {
    let ok = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            "vlanprobe0",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .status()
        .unwrap()
        .success();
    if ok {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", "vlanprobe0"])
            .status();
    }
    ok
}

#[test]
fn vlan_access_port_and_trunk() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    let conf = node.conf("1.0.0", json!({"vlan": 100, "isGateway": false}));
    if !kernel_has_vlan_filtering() {
        // The kernel refuses vlan_filtering: a clear error and nothing left.
        let before = (node_links(), node.leases());
        let err = node.call("ADD", "vlan", ns, &conf).expect_err(999);
        assert!(
            err["msg"]
                .as_str()
                .unwrap()
                .contains("failed to create bridge"),
            "{err}"
        );
        assert_eq!((node_links(), node.leases()), before);
        eprintln!(
            "note: kernel without CONFIG_BRIDGE_VLAN_FILTERING; only the failure path was tested"
        );
        return;
    }
    let r = node.call("ADD", "vlan", ns, &conf).expect_ok().json();
    let host = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let d = ip_json(&["-d", "link", "show", BRIDGE]);
    assert_eq!(d[0]["linkinfo"]["info_data"]["vlan_filtering"], 1, "{d}");
    let out = std::process::Command::new("bridge")
        .args(["-j", "vlan", "show", "dev", &host])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vlans = v[0]["vlans"].as_array().unwrap();
    assert_eq!(vlans.len(), 1, "default VLAN removed: {v}");
    assert_eq!(vlans[0]["vlan"], 100);
    node.call("DEL", "vlan", ns, &conf).expect_ok();
    let trunk = node.conf(
        "1.0.0",
        json!({"vlanTrunk": [{"id": 7}, {"minID": 20, "maxID": 21}], "isGateway": false}),
    );
    let r = node.call("ADD", "trunk", ns, &trunk).expect_ok().json();
    let host = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let out = std::process::Command::new("bridge")
        .args(["-j", "vlan", "show", "dev", &host])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vids: Vec<u64> = v[0]["vlans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["vlan"].as_u64().unwrap())
        .collect();
    assert_eq!(vids, vec![1, 7, 20, 21], "{v}");
}

/// The host veth name our bridge derives for (container id, ifname, attempt).
fn expected_host_veth(cid: &str, ifname: &str, attempt: u32) -> String {
    use sha2::{Digest, Sha512};
    let mut h = Sha512::new();
    h.update(cid.as_bytes());
    h.update([0]);
    h.update(ifname.as_bytes());
    if attempt > 0 {
        h.update([0]);
        h.update(attempt.to_string().as_bytes());
    }
    format!("veth{}", cni::hex::encode(&h.finalize()[..4]))
}

#[test]
fn host_veth_names_are_stable_and_collisions_move_on() {
    require_root!();
    let node = Node::new();
    let conf = node.conf("1.0.0", json!({}));
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap();
    let r = node.call("ADD", "stable", ns, &conf).expect_ok().json();
    assert_eq!(
        r["interfaces"][1]["name"],
        expected_host_veth("stable", "eth0", 0)
    );
    node.call("DEL", "stable", ns, &conf).expect_ok();
    // Someone else holds the first choice: the next attempt's name is used.
    let taken = expected_host_veth("stable", "eth0", 0);
    let st = std::process::Command::new("ip")
        .args([
            "link", "add", &taken, "type", "veth", "peer", "name", "squatter",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let r = node.call("ADD", "stable", ns, &conf).expect_ok().json();
    assert_eq!(
        r["interfaces"][1]["name"],
        expected_host_veth("stable", "eth0", 1)
    );
    let squatter = ip_json(&["link", "show", &taken]);
    assert!(
        squatter[0].get("master").is_none(),
        "the squatter is left alone: {squatter}"
    );
    node.call("DEL", "stable", ns, &conf).expect_ok();
}

#[test]
fn layer2_only_refuses_pre_0_3_results_before_touching_anything() {
    require_root!();
    let node = Node::new();
    let pod = PodNs::new();
    let before = node_links();
    for v in ["0.1.0", "0.2.0"] {
        let conf = node.conf(v, json!({"ipam": null}));
        let err = node
            .call("ADD", "l2old", pod.path.to_str().unwrap(), &conf)
            .expect_err(7);
        assert!(err["msg"].as_str().unwrap().contains("L2-only"), "{err}");
        assert_eq!(node_links(), before);
    }
}

#[test]
fn enabledad_waits_for_dad_to_finish() {
    require_root!();
    let node = Node::new();
    let conf = node.conf(
        "1.0.0",
        json!({"enabledad": true, "ipam": {"subnet": null, "ranges": [[{"subnet": "fd10:91::/64"}]]}}),
    );
    let pod = PodNs::new();
    let r = node
        .call("ADD", "dad", pod.path.to_str().unwrap(), &conf)
        .expect_ok()
        .json();
    let v6 = result_ip(&r, true);
    for (key, want) in [("accept_dad", "1"), ("enhanced_dad", "1")] {
        let out = pod.exec(&["cat", &format!("/proc/sys/net/ipv6/conf/eth0/{key}")]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{key}");
    }
    // ADD returned only once DAD was over: the address is already usable.
    let addrs = pod_addrs(&pod, "eth0");
    let (_, info) = addrs
        .iter()
        .find(|(a, _)| a.starts_with(&v6))
        .expect("v6 address");
    assert!(
        info.get("tentative").is_none() && info.get("dadfailed").is_none(),
        "{info}"
    );
    node.call("DEL", "dad", pod.path.to_str().unwrap(), &conf)
        .expect_ok();
}

#[test]
fn ipmasq_default_backend_uses_nftables_when_iptables_is_missing() {
    require_root!();
    let node = Node::new();
    // A PATH holding nft but no iptables: the default backend must fall back
    // to nftables (the reference: iptables unless only nftables is usable).
    let tools = TempDir::new("only-nft");
    std::os::unix::fs::symlink("/usr/sbin/nft", tools.path().join("nft")).unwrap();
    let conf = node.conf("1.0.0", json!({"ipMasq": true}));
    let pod = PodNs::new();
    let call = PluginCall::new(
        "ADD",
        "nft-only",
        pod.path.to_str().unwrap(),
        "eth0",
        &our_cni_path(),
    )
    .env("PATH", &tools.path().display().to_string())
    .stdin(serde_json::to_vec(&conf).unwrap());
    let result = run_plugin(&bin("bridge"), &call).expect_ok().json();
    let ip = result_ip(&result, false);
    let rules = nft_ruleset();
    assert!(
        rules.contains("cni_plugins_masquerade") && rules.contains(&format!("ip saddr {ip}")),
        "{rules}"
    );
    assert!(!nat_rules(false).contains("CNI-"), "no iptables rule");
    // With iptables available again, DEL (which tears down both) cleans up.
    let del = PluginCall {
        env: call.env.clone(),
        stdin: call.stdin.clone(),
    }
    .env("CNI_COMMAND", "DEL")
    .env("PATH", &std::env::var("PATH").unwrap());
    run_plugin(&bin("bridge"), &del).expect_ok();
    assert!(!nft_ruleset().contains(&format!("ip saddr {ip}")));
    assert!(node.leases().iter().all(|l| !l.starts_with("10.")));
}
