//! Differential test against Debian's reference `bridge`
//! (`/usr/lib/cni/bridge`, containernetworking-plugins 1.1.1): the same
//! configs in two fresh nodes, comparing the result JSON (modulo MACs, host
//! veth names and the netns path) and the kernel state they leave.
//!
//! Known, intended differences (excluded from the comparison):
//! - we pin the bridge MAC on every ADD, the reference only with isGateway
//!   (MACs are normalised away anyway);
//! - `keep_addr_on_down` is set by reference v1.7+, not by Debian's 1.1.1.

use std::path::{Path, PathBuf};

use cni_test_support::bridge::*;
use cni_test_support::common::*;
use serde_json::{json, Value};

const REFERENCE_BRIDGE: &str = "/usr/lib/cni/bridge";

/// What one implementation produced for one config.
#[derive(Debug, PartialEq)]
struct Outcome {
    result: Value,
    pod: Value,
    node: Value,
    after_del: Value,
}

fn sysctl_in(pod: &PodNs, key: &str) -> String {
    let out = pod.exec(&["cat", &format!("/proc/sys/{key}")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Replaces MACs, veth names and the netns path with placeholders.
fn normalise(v: &Value, netns: &str) -> Value {
    match v {
        Value::String(s) => {
            let is_mac = s.len() == 17 && s.split(':').count() == 6;
            let is_veth = s.starts_with("veth") && s.len() == 12;
            if is_mac {
                json!("<mac>")
            } else if is_veth {
                json!("<veth>")
            } else if s == netns {
                json!("<netns>")
            } else {
                v.clone()
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalise(x, netns)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), normalise(x, netns)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The comparable part of `ip -j addr` entries.
fn addr_view(addrs: &Value) -> Value {
    let mut out: Vec<Value> = addrs[0]["addr_info"]
        .as_array()
        .map(|a| {
            // Link-local addresses derive from random MACs; "tentative" only
            // says whether the kernel's DAD work item has run yet.
            a.iter()
                .filter(|i| !(i["family"] == "inet6" && i["scope"] == "link"))
                .map(|i| {
                    json!({"family": i["family"], "local": i["local"], "prefixlen": i["prefixlen"],
                           "scope": i["scope"], "broadcast": i["broadcast"], "nodad": i.get("nodad").is_some()})
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|v| v.to_string());
    Value::Array(out)
}

fn link_view(link: &Value) -> Value {
    let l = &link[0];
    let mut flags: Vec<String> = l["flags"]
        .as_array()
        .map(|f| f.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default();
    flags.sort();
    json!({
        "mtu": l["mtu"], "operstate": l["operstate"], "flags": flags,
        "kind": l["linkinfo"]["info_kind"], "slave_kind": l["linkinfo"]["info_slave_kind"],
        "hairpin": l["linkinfo"]["info_slave_data"]["hairpin"],
        "vlan_filtering": l["linkinfo"]["info_data"]["vlan_filtering"],
        "promiscuity": l["promiscuity"],
    })
}

fn routes_view(routes: &Value) -> Value {
    let mut out: Vec<Value> = routes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| json!({"dst": r["dst"], "gateway": r["gateway"], "dev": r["dev"], "table": r["table"],
                                "scope": r["scope"], "metric": r["metric"], "type": r["type"], "protocol": r["protocol"]}))
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|v| v.to_string());
    Value::Array(out)
}

/// `iptables-save -t nat` without comments/counters lines that vary.
fn nat_view() -> Value {
    let mut v = Vec::new();
    for v6 in [false, true] {
        for line in nat_rules(v6).lines() {
            if line.starts_with('#') {
                continue;
            }
            v.push(line.split(" [").next().unwrap_or(line).to_string());
        }
    }
    json!(v)
}

/// ADD then DEL with `binary` in a fresh node; everything observed.
fn run(binary: PathBuf, conf: Value) -> Outcome {
    let node = Node::new();
    let mut conf = conf;
    conf["ipam"]["dataDir"] = json!(node.data.path().display().to_string());
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap().to_string();
    let add = node
        .call_binary(&binary, "ADD", "diff-pod", &ns, &conf)
        .expect_ok();
    let result = normalise(&add.json(), &ns);
    let v6 = conf["ipam"].to_string().contains(':');
    let mut pod_view = json!({
        "eth0": link_view(&pod.ip_json(&["-d", "link", "show", "eth0"])),
        "addrs": addr_view(&pod.ip_json(&["addr", "show", "dev", "eth0"])),
        "routes4": routes_view(&pod.ip_json(&["-4", "route", "show", "table", "all"])),
        "accept_dad": sysctl_in(&pod, "net/ipv6/conf/eth0/accept_dad"),
        "arp_notify": sysctl_in(&pod, "net/ipv4/conf/eth0/arp_notify"),
    });
    if v6 {
        pod_view["routes6"] = routes_view(&pod.ip_json(&["-6", "route", "show", "table", "main"]));
        pod_view["disable_ipv6"] = json!(sysctl_in(&pod, "net/ipv6/conf/eth0/disable_ipv6"));
    }
    // 0.1/0.2 results have no interfaces: find the host veth on the bridge.
    let host = bridge_ports(BRIDGE).pop().expect("one port on the bridge");
    let read = |k: &str| {
        std::fs::read_to_string(Path::new("/proc/sys").join(k))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let node_view = json!({
        "bridge": link_view(&ip_json(&["-d", "link", "show", BRIDGE])),
        "bridge_addrs": addr_view(&ip_json(&["addr", "show", "dev", BRIDGE])),
        "veth": link_view(&ip_json(&["-d", "link", "show", &host])),
        "veth_accept_ra": read(&format!("net/ipv6/conf/{host}/accept_ra")),
        "bridge_accept_ra": read(&format!("net/ipv6/conf/{BRIDGE}/accept_ra")),
        "ip_forward": read("net/ipv4/ip_forward"),
        "ip6_forward": read("net/ipv6/conf/all/forwarding"),
        "nat": nat_view(),
        "leases": node.leases(),
        "routes": routes_view(&ip_json(&["route", "show", "table", "all"])),
    });
    let del_conf = with_prev(&conf, &add.json());
    node.call_binary(&binary, "DEL", "diff-pod", &ns, &del_conf)
        .expect_ok();
    let pod_links: Vec<Value> = pod
        .ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].clone())
        .collect();
    let after_del = json!({
        "pod_links": pod_links,
        "bridge_ports": bridge_ports(BRIDGE).len(),
        "nat": nat_view(),
        "leases": node.leases(),
        "bridge_addrs": addr_view(&ip_json(&["addr", "show", "dev", BRIDGE])),
    });
    Outcome {
        result,
        pod: normalise(&pod_view, &ns),
        node: normalise(&node_view, &ns),
        after_del,
    }
}

fn compare(name: &str, conf: Value) {
    // Each implementation gets its own node: run them on separate threads.
    let (conf_a, conf_b) = (conf.clone(), conf);
    let reference = std::thread::spawn(move || run(PathBuf::from(REFERENCE_BRIDGE), conf_a))
        .join()
        .expect("reference run");
    let ours = std::thread::spawn(move || run(bin("bridge"), conf_b))
        .join()
        .expect("our run");
    assert_eq!(ours.result, reference.result, "{name}: result JSON differs");
    assert_eq!(ours.pod, reference.pod, "{name}: pod state differs");
    assert_eq!(ours.node, reference.node, "{name}: node state differs");
    assert_eq!(
        ours.after_del, reference.after_del,
        "{name}: state after DEL differs"
    );
}

fn base(extra: Value) -> Value {
    let mut v = json!({
        "cniVersion": "1.0.0", "name": NETWORK, "type": "bridge", "bridge": BRIDGE,
        "ipam": {"type": "host-local", "subnet": "10.88.0.0/24"}
    });
    merge(&mut v, extra);
    v
}

#[test]
fn same_as_reference_plain() {
    require_root!();
    compare("plain", base(json!({})));
}

#[test]
fn same_as_reference_gateway() {
    require_root!();
    compare("gateway", base(json!({"isGateway": true})));
    compare(
        "default gateway",
        base(json!({"isDefaultGateway": true, "mtu": 1400, "hairpinMode": true})),
    );
}

#[test]
fn same_as_reference_masquerade() {
    require_root!();
    compare("ipMasq", base(json!({"isGateway": true, "ipMasq": true})));
}

#[test]
fn same_as_reference_dual_stack() {
    require_root!();
    let ipam = json!({"ipam": {"subnet": null, "ranges": [[{"subnet": "10.89.0.0/24"}], [{"subnet": "fd10:89::/64"}]],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}});
    let mut conf = base(json!({"isGateway": true}));
    merge(&mut conf, ipam);
    compare("dual stack", conf);
}

#[test]
fn same_as_reference_older_versions() {
    require_root!();
    for v in ["0.2.0", "0.3.1", "0.4.0"] {
        compare(v, base(json!({"cniVersion": v, "isDefaultGateway": true})));
    }
}

#[test]
fn same_as_reference_promisc_and_dns() {
    require_root!();
    compare(
        "promisc+dns",
        base(
            json!({"promiscMode": true, "dns": {"nameservers": ["10.88.0.53"], "search": ["svc.local"]}}),
        ),
    );
}

#[test]
fn attachments_move_between_implementations() {
    require_root!();
    let node = Node::new();
    let reference = PathBuf::from(REFERENCE_BRIDGE);
    let mut conf = base(json!({"isGateway": true, "ipMasq": true}));
    conf["ipam"]["dataDir"] = json!(node.data.path().display().to_string());

    // Made by the reference, checked and deleted by us (even with an empty
    // netns, where the reference itself would leak the nat rules).
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap().to_string();
    let r = node
        .call_binary(&reference, "ADD", "old-pod", &ns, &conf)
        .expect_ok()
        .json();
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    node.call("CHECK", "old-pod", &ns, &with_prev(&conf, &r))
        .expect_ok();
    assert!(nat_rules(false).contains(&ip));
    node.call("DEL", "old-pod", "", &with_prev(&conf, &r))
        .expect_ok();
    assert!(!nat_rules(false).contains(&ip), "{}", nat_rules(false));
    assert!(node.leases().is_empty());
    drop(pod);

    // Made by us, checked and deleted by the reference.
    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap().to_string();
    let r = node.call("ADD", "new-pod", &ns, &conf).expect_ok().json();
    let ip = result_ip(&r, false);
    node.call_binary(&reference, "CHECK", "new-pod", &ns, &with_prev(&conf, &r))
        .expect_ok();
    node.call_binary(&reference, "DEL", "new-pod", &ns, &with_prev(&conf, &r))
        .expect_ok();
    assert!(!nat_rules(false).contains(&ip), "{}", nat_rules(false));
    assert!(node.leases().is_empty());
    pod.assert_no_link("eth0");
}

/// On a node whose `ip nat` table exists, our ipMasq ADD writes the new
/// pod's chain over nf_tables netlink without running iptables at all (the
/// `iptables-save`/`iptables-restore` on PATH are stubs that would fail it),
/// and the reference DEL removes everything it made.
#[test]
fn fast_path_add_is_deleted_by_reference() {
    require_root!();
    let node = Node::new();
    let mut conf = base(json!({"isGateway": true, "ipMasq": true}));
    conf["ipam"]["dataDir"] = json!(node.data.path().display().to_string());
    let nat_before = nat_rules(false);
    for rule in ["-A", "-D"] {
        let out = std::process::Command::new("iptables")
            .args([
                "-t",
                "nat",
                rule,
                "POSTROUTING",
                "-s",
                "192.0.2.1/32",
                "-j",
                "ACCEPT",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let clean = nat_rules(false);

    let (_stubs, marker, path) = failing_iptables_stubs();

    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap().to_string();
    let call = PluginCall::new("ADD", "fast-pod", &ns, "eth0", node.bin.path())
        .stdin(serde_json::to_vec(&conf).unwrap())
        .env("PATH", &path);
    let r = run_plugin(&bin("bridge"), &call).expect_ok().json();
    assert!(
        !marker.exists(),
        "iptables ran: {:?}",
        std::fs::read_to_string(&marker)
    );
    let ip = result_ip(&r, false);
    let made = nat_rules(false);
    assert!(
        made.contains(&format!("-A POSTROUTING -s {ip}/32")),
        "{made}"
    );

    node.call_binary(
        Path::new(REFERENCE_BRIDGE),
        "CHECK",
        "fast-pod",
        &ns,
        &with_prev(&conf, &r),
    )
    .expect_ok();
    node.call_binary(
        Path::new(REFERENCE_BRIDGE),
        "DEL",
        "fast-pod",
        &ns,
        &with_prev(&conf, &r),
    )
    .expect_ok();
    assert_eq!(nat_rules(false), clean);
    assert!(!nat_before.contains("CNI-"), "{nat_before}");
    assert!(node.leases().is_empty());
    pod.assert_no_link("eth0");
}

/// A `PATH` whose `iptables-save`/`-restore` and `ip6tables-save`/`-restore`
/// are stubs named like the nft variant, which record being run (in the
/// returned marker file) and fail: a plugin run with it must not need them.
fn failing_iptables_stubs() -> (TempDir, PathBuf, String) {
    let stubs = TempDir::new("ipt-stubs");
    let marker = stubs.path().join("ran");
    let stub = stubs.path().join("xtables-nft-stub");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\necho \"$0 $*\" >> {}\nexit 1\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for name in [
        "iptables-restore",
        "iptables-save",
        "ip6tables-restore",
        "ip6tables-save",
    ] {
        std::os::unix::fs::symlink(&stub, stubs.path().join(name)).unwrap();
    }
    let path = format!(
        "{}:{}",
        stubs.path().display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    );
    (stubs, marker, path)
}

/// The reference ADD's dual-stack ipMasq rules are removed by our DEL over
/// nf_tables netlink, in both families, without running iptables at all
/// (failing `*tables-save`/`*tables-restore` stubs first on PATH).
#[test]
fn reference_add_is_deleted_by_our_netlink_del() {
    require_root!();
    let node = Node::new();
    let mut conf = base(json!({"isGateway": true, "ipMasq": true}));
    conf["ipam"] = json!({
        "type": "host-local", "dataDir": node.data.path().display().to_string(),
        "ranges": [[{"subnet": "10.88.0.0/24"}], [{"subnet": "fd10:88::/64"}]]
    });
    let clean = (nat_rules(false), nat_rules(true));
    assert!(
        !clean.0.contains("CNI-") && !clean.1.contains("CNI-"),
        "{clean:?}"
    );

    let pod = PodNs::new();
    let ns = pod.path.to_str().unwrap().to_string();
    let r = node
        .call_binary(Path::new(REFERENCE_BRIDGE), "ADD", "ref-pod", &ns, &conf)
        .expect_ok()
        .json();
    for v6 in [false, true] {
        let ip = result_ip(&r, v6);
        let rules = nat_rules(v6);
        let prefix = if v6 { 128 } else { 32 };
        assert!(
            rules.contains(&format!("-A POSTROUTING -s {ip}/{prefix}")),
            "{rules}"
        );
    }

    let (_stubs, marker, path) = failing_iptables_stubs();
    let call = PluginCall::new("DEL", "ref-pod", &ns, "eth0", node.bin.path())
        .stdin(serde_json::to_vec(&with_prev(&conf, &r)).unwrap())
        .env("PATH", &path);
    run_plugin(&bin("bridge"), &call).expect_ok();
    assert!(
        !marker.exists(),
        "iptables ran: {:?}",
        std::fs::read_to_string(&marker)
    );
    let after = (nat_rules(false), nat_rules(true));
    assert!(!after.0.contains("CNI-"), "{}", after.0);
    assert!(!after.1.contains("CNI-"), "{}", after.1);
    assert!(node.leases().is_empty());
    pod.assert_no_link("eth0");
}
