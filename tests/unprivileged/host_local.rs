//! Integration tests of the `host-local` binary: every verb, every config
//! version, requested addresses, exhaustion, GC, STATUS and bad input.

use cni_test_support::common;
use cni_test_support::common::{TempDir, ALL_VERSIONS};
use cni_test_support::host_local::*;
use serde_json::{json, Value};

#[test]
fn add_del_v4_every_version() {
    for version in ALL_VERSIONS {
        let tmp = TempDir::new("hl-v4");
        let mut ipam = ipam(tmp.path(), &[&["10.60.0.0/24"]]);
        ipam["routes"] =
            json!([{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.60.0.254"}]);
        let c = conf(version, "net1", ipam);
        let r = add_ok(&ours(), "ctr1", &c);
        assert_eq!(r["cniVersion"], version);
        assert!(
            r.get("interfaces").is_none(),
            "{version}: IPAM result has no interfaces: {r}"
        );
        match version {
            "0.1.0" | "0.2.0" => {
                assert_eq!(r["ip4"]["ip"], "10.60.0.2/24", "{r}");
                assert_eq!(r["ip4"]["gateway"], "10.60.0.1");
                assert_eq!(
                    r["ip4"]["routes"],
                    json!([{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.60.0.254"}])
                );
                assert!(r.get("ip6").is_none());
                assert_eq!(r["dns"], json!({}));
            }
            "0.3.0" | "0.3.1" | "0.4.0" => {
                assert_eq!(
                    r["ips"],
                    json!([{"version": "4", "address": "10.60.0.2/24", "gateway": "10.60.0.1"}])
                );
                assert_eq!(
                    r["routes"],
                    json!([{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.60.0.254"}])
                );
                assert_eq!(r["dns"], json!({}));
            }
            _ => {
                assert_eq!(
                    r["ips"],
                    json!([{"address": "10.60.0.2/24", "gateway": "10.60.0.1"}])
                );
                assert_eq!(
                    r["routes"],
                    json!([{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.60.0.254"}])
                );
                assert_eq!(r["dns"], json!({}), "1.x prints an empty dns too: {r}");
            }
        }
        let dir = tmp.path().join("net1");
        assert_eq!(
            leases(&dir),
            [("10.60.0.2".to_string(), lease_text("ctr1", "eth0"))].into()
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("last_reserved_ip.0")).expect("last"),
            "10.60.0.2"
        );
        if version >= "0.4.0" {
            run(&ours(), "CHECK", "ctr1", "eth0", &c).expect_ok();
        }
        run(&ours(), "DEL", "ctr1", "eth0", &c).expect_ok();
        assert!(leases(&dir).is_empty(), "{version}: DEL left leases");
        assert!(dir.join("lock").exists() && dir.join("last_reserved_ip.0").exists());
    }
}

#[test]
fn dual_stack_and_v6_every_version() {
    for version in ALL_VERSIONS {
        let tmp = TempDir::new("hl-dual");
        let c = conf(
            version,
            "dual",
            ipam(tmp.path(), &[&["10.61.0.0/24"], &["fd61:0:0:1::/64"]]),
        );
        let r = add_ok(&ours(), "ctr1", &c);
        if version < "0.3.0" {
            assert_eq!(r["ip4"]["ip"], "10.61.0.2/24");
            assert_eq!(r["ip6"]["ip"], "fd61:0:0:1::2/64");
            assert_eq!(r["ip6"]["gateway"], "fd61:0:0:1::1");
        } else {
            assert_eq!(addresses(&r), vec!["10.61.0.2/24", "fd61:0:0:1::2/64"]);
            assert_eq!(r["ips"][1]["gateway"], "fd61:0:0:1::1");
            if version < "1.0.0" {
                assert_eq!(r["ips"][1]["version"], "6");
            }
        }
        let dir = tmp.path().join("dual");
        assert_eq!(
            leases(&dir).keys().cloned().collect::<Vec<_>>(),
            vec!["10.61.0.2", "fd61:0:0:1::2"]
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("last_reserved_ip.1")).expect("last"),
            "fd61:0:0:1::2"
        );
        run(&ours(), "DEL", "ctr1", "eth0", &c).expect_ok();
        assert!(leases(&dir).is_empty());

        let c6 = conf(version, "v6", ipam(tmp.path(), &[&["fd62::/120"]]));
        let r = add_ok(&ours(), "ctr2", &c6);
        let got = if version < "0.3.0" {
            r["ip6"]["ip"].clone()
        } else {
            r["ips"][0]["address"].clone()
        };
        assert_eq!(got, "fd62::2/120");
    }
}

#[test]
fn round_robin_does_not_reuse_freed_address_at_once() {
    let tmp = TempDir::new("hl-rr");
    let c = conf("1.0.0", "rr", ipam(tmp.path(), &[&["10.62.0.0/29"]]));
    assert_eq!(addresses(&add_ok(&ours(), "a", &c)), vec!["10.62.0.2/29"]);
    assert_eq!(addresses(&add_ok(&ours(), "b", &c)), vec!["10.62.0.3/29"]);
    run(&ours(), "DEL", "a", "eth0", &c).expect_ok();
    assert_eq!(addresses(&add_ok(&ours(), "c", &c)), vec!["10.62.0.4/29"]);
    assert_eq!(addresses(&add_ok(&ours(), "d", &c)), vec!["10.62.0.5/29"]);
    assert_eq!(addresses(&add_ok(&ours(), "e", &c)), vec!["10.62.0.6/29"]);
    // Wraps around to the freed .2 (skipping gateway .1).
    assert_eq!(addresses(&add_ok(&ours(), "f", &c)), vec!["10.62.0.2/29"]);
    // A corrupt last_reserved_ip is ignored (start from the beginning).
    run(&ours(), "DEL", "b", "eth0", &c).expect_ok();
    std::fs::write(tmp.path().join("rr/last_reserved_ip.0"), b"\x00garbage").expect("corrupt");
    assert_eq!(addresses(&add_ok(&ours(), "g", &c)), vec!["10.62.0.3/29"]);
}

#[test]
fn requested_ips_from_all_three_sources() {
    let tmp = TempDir::new("hl-req");
    let base = conf(
        "1.0.0",
        "req",
        ipam(tmp.path(), &[&["10.63.0.0/24"], &["fd63::/64"]]),
    );

    // CNI_ARGS IP= (with a prefix, which is ignored).
    let r = run_env(
        &ours(),
        "ADD",
        "c1",
        "eth0",
        &base,
        &[(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.63.0.10/24",
        )],
    )
    .expect_ok()
    .json();
    assert_eq!(addresses(&r), vec!["10.63.0.10/24", "fd63::2/64"]);

    // args.cni.ips, both families.
    let mut c = base.clone();
    c["args"] = json!({"cni": {"ips": ["10.63.0.20", "fd63::20"]}});
    assert_eq!(
        addresses(&add_ok(&ours(), "c2", &c)),
        vec!["10.63.0.20/24", "fd63::20/64"]
    );

    // runtimeConfig.ips, Go spelling of the key.
    let mut c = base.clone();
    c["runtimeConfig"] = json!({"IPs": ["10.63.0.30/24"]});
    assert_eq!(
        addresses(&add_ok(&ours(), "c3", &c)),
        vec!["10.63.0.30/24", "fd63::21/64"]
    );

    // Errors, with the reference's texts; nothing is left behind.
    let before = leases(&tmp.path().join("req"));
    let cases: &[(&str, u64, &str)] = &[
        ("10.63.0.1", 7, "failed to allocate for range 0: requested ip 10.63.0.1 is subnet's gateway"),
        ("10.63.0.20", 11, "failed to allocate for range 0: requested IP address 10.63.0.20 is not available in range set 10.63.0.1-10.63.0.254"),
        ("10.64.0.5", 7, "failed to allocate all requested IPs: 10.64.0.5"),
    ];
    for (ip, code, msg) in cases {
        let run = run_env(
            &ours(),
            "ADD",
            "c4",
            "eth0",
            &base,
            &[("CNI_ARGS", &format!("IP={ip}"))],
        );
        let e = run.expect_err(*code);
        assert_eq!(e["msg"], *msg);
    }
    assert_eq!(leases(&tmp.path().join("req")), before);

    // A bad IP= value is an env error.
    let e = run_env(
        &ours(),
        "ADD",
        "c4",
        "eth0",
        &base,
        &[("CNI_ARGS", "IP=bogus")],
    )
    .expect_err(4);
    assert!(
        e["msg"].as_str().expect("msg").contains("IP=\"bogus\""),
        "{e}"
    );
    // Unknown CNI_ARGS keys fail without IgnoreUnknown (as in the reference).
    let e = run_env(
        &ours(),
        "ADD",
        "c4",
        "eth0",
        &base,
        &[("CNI_ARGS", "FOO=bar")],
    )
    .expect_err(4);
    assert!(
        e["msg"].as_str().expect("msg").contains("unknown args"),
        "{e}"
    );
    assert_eq!(leases(&tmp.path().join("req")), before);
}

#[test]
fn runtime_config_ip_ranges_come_first() {
    let tmp = TempDir::new("hl-rt");
    let mut ipam = ipam(tmp.path(), &[&["10.65.0.0/24"]]);
    ipam["subnet"] = json!("10.66.0.0/24");
    let mut c = conf("1.1.0", "rt", ipam);
    c["runtimeConfig"] =
        json!({"ipRanges": [[{"Subnet": "10.67.0.0/24", "RangeStart": "10.67.0.100"}]]});
    let r = add_ok(&ours(), "c1", &c);
    assert_eq!(
        addresses(&r),
        vec!["10.67.0.100/24", "10.66.0.2/24", "10.65.0.2/24"]
    );
    let dir = tmp.path().join("rt");
    for (i, ip) in ["10.67.0.100", "10.66.0.2", "10.65.0.2"].iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("last_reserved_ip.{i}"))).expect("last"),
            *ip
        );
    }
}

#[test]
fn exhaustion_is_reported_and_leaves_store_alone() {
    let tmp = TempDir::new("hl-full");
    let c = conf(
        "1.0.0",
        "full",
        ipam(tmp.path(), &[&["10.68.0.0/30", "10.68.1.0/30"]]),
    );
    add_ok(&ours(), "a", &c);
    add_ok(&ours(), "b", &c);
    let dir = tmp.path().join("full");
    let before = common::tree_snapshot(&dir);
    let e = run(&ours(), "ADD", "c", "eth0", &c).expect_err(11);
    assert_eq!(
        e["msg"],
        "failed to allocate for range 0: no IP addresses available in range set: 10.68.0.1-10.68.0.2,10.68.1.1-10.68.1.2"
    );
    assert_eq!(common::tree_snapshot(&dir), before);
    // Dual stack: set 1 full → set 0's lease is rolled back.
    let tmp2 = TempDir::new("hl-full2");
    let c2 = conf(
        "1.0.0",
        "f2",
        ipam(tmp2.path(), &[&["10.69.0.0/24"], &["fd69::/126"]]),
    );
    add_ok(&ours(), "a", &c2);
    add_ok(&ours(), "b", &c2); // fd69::/126 has fd69::2 and fd69::3 (::1 is the gateway)
    let e = run(&ours(), "ADD", "c", "eth0", &c2).expect_err(11);
    assert_eq!(
        e["msg"],
        "failed to allocate for range 1: no IP addresses available in range set: fd69::1-fd69::3"
    );
    assert_eq!(
        leases(&tmp2.path().join("f2")).len(),
        4,
        "only a's and b's leases"
    );
}

#[test]
fn duplicate_add_is_a_clear_error() {
    let tmp = TempDir::new("hl-dup");
    let c = conf("1.0.0", "dup", ipam(tmp.path(), &[&["10.70.0.0/24"]]));
    add_ok(&ours(), "ctr", &c);
    let e = run(&ours(), "ADD", "ctr", "eth0", &c).expect_err(999);
    assert_eq!(
        e["msg"],
        "failed to allocate for range 0: 10.70.0.2 has been allocated to ctr, duplicate allocation is not allowed"
    );
    // Another interface of the same container is a different attachment.
    let r = run(&ours(), "ADD", "ctr", "eth1", &c).expect_ok().json();
    assert_eq!(addresses(&r), vec!["10.70.0.3/24"]);
    assert_eq!(leases(&tmp.path().join("dup")).len(), 2);
}

#[test]
fn del_is_idempotent_and_touches_nothing_it_does_not_own() {
    let tmp = TempDir::new("hl-del");
    let c = conf("1.0.0", "del", ipam(tmp.path(), &[&["10.71.0.0/24"]]));
    // DEL before anything exists: success, and no directory is created.
    run(&ours(), "DEL", "ghost", "eth0", &c).expect_ok();
    assert!(!tmp.path().join("del").exists());
    add_ok(&ours(), "a", &c);
    add_ok(&ours(), "b", &c);
    run(&ours(), "DEL", "a", "eth0", &c).expect_ok();
    run(&ours(), "DEL", "a", "eth0", &c).expect_ok();
    run(&ours(), "DEL", "a", "eth9", &c).expect_ok();
    run(&ours(), "DEL", "unknown", "eth0", &c).expect_ok();
    // DEL with an empty CNI_NETNS (containerd after the task exited).
    let mut call = common::PluginCall::new("DEL", "b", "", "eth0", &common::our_cni_path())
        .stdin(c.to_string());
    call.env.insert("CNI_NETNS".into(), String::new());
    let before = leases(&tmp.path().join("del"));
    assert_eq!(before.len(), 1);
    common::run_plugin(&ours(), &call).expect_ok();
    assert!(leases(&tmp.path().join("del")).is_empty());
    // An invalid config is an error even for DEL.
    let bad = conf(
        "1.0.0",
        "del",
        json!({"type": "host-local", "dataDir": tmp.path(), "subnet": "10.71.0.0/33"}),
    );
    run(&ours(), "DEL", "a", "eth0", &bad).expect_err(7);
}

#[test]
fn check_finds_exact_and_legacy_leases() {
    let tmp = TempDir::new("hl-check");
    let c = conf("0.4.0", "chk", ipam(tmp.path(), &[&["10.72.0.0/24"]]));
    let e = run(&ours(), "CHECK", "ctr", "eth0", &c).expect_err(999);
    assert_eq!(
        e["msg"],
        "host-local: Failed to find address added by container ctr"
    );
    add_ok(&ours(), "ctr", &c);
    run(&ours(), "CHECK", "ctr", "eth0", &c).expect_ok();
    let e = run(&ours(), "CHECK", "ctr", "eth1", &c).expect_err(999);
    assert_eq!(
        e["msg"],
        "host-local: Failed to find address added by container ctr"
    );
    run(&ours(), "DEL", "ctr", "eth0", &c).expect_ok();
    run(&ours(), "CHECK", "ctr", "eth0", &c).expect_err(999);
    // A legacy id-only lease satisfies CHECK for any ifname and is released by DEL.
    std::fs::write(tmp.path().join("chk/10.72.0.50"), b"old").expect("legacy");
    run(&ours(), "CHECK", "old", "eth3", &c).expect_ok();
    run(&ours(), "DEL", "old", "eth3", &c).expect_ok();
    assert!(leases(&tmp.path().join("chk")).is_empty());
    // CHECK is refused by the skel below 0.4.0.
    let old = conf("0.3.1", "chk", ipam(tmp.path(), &[&["10.72.0.0/24"]]));
    run(&ours(), "CHECK", "ctr", "eth0", &old).expect_err(1);
}

fn gc_conf(tmp: &TempDir, key: Option<&str>, valid: Value) -> Value {
    let mut c = conf(
        "1.1.0",
        "gc",
        ipam(tmp.path(), &[&["10.73.0.0/24"], &["fd73::/64"]]),
    );
    if let Some(k) = key {
        c[k] = valid;
    }
    c
}

fn gc_call(c: &Value) -> common::PluginRun {
    let call =
        common::PluginCall::new("GC", "", "", "", &common::our_cni_path()).stdin(c.to_string());
    let mut call = call;
    call.env.remove("CNI_CONTAINERID");
    call.env.remove("CNI_NETNS");
    call.env.remove("CNI_IFNAME");
    common::run_plugin(&ours(), &call)
}

#[test]
fn gc_releases_everything_not_valid() {
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        let tmp = TempDir::new("hl-gc");
        let c = gc_conf(&tmp, None, Value::Null);
        add_ok(&ours(), "keep", &c);
        add_ok(&ours(), "drop", &c);
        run(&ours(), "ADD", "keep", "eth1", &c).expect_ok();
        let dir = tmp.path().join("gc");
        std::fs::write(dir.join("10.73.0.200"), b"keep").expect("legacy of a valid id");
        std::fs::write(dir.join("10.73.0.201"), b"gone").expect("legacy of an invalid id");
        std::fs::write(dir.join("10.73.0.202"), b"").expect("orphan");
        let last_before: Vec<Vec<u8>> = (0..2)
            .map(|i| std::fs::read(dir.join(format!("last_reserved_ip.{i}"))).expect("last"))
            .collect();

        // Key absent: nothing happens.
        gc_call(&gc_conf(&tmp, None, Value::Null)).expect_ok();
        assert_eq!(leases(&dir).len(), 9);

        let valid = json!([{"containerID": "keep", "ifname": "eth0"}]);
        gc_call(&gc_conf(&tmp, Some(key), valid)).expect_ok();
        let left = leases(&dir);
        let want: Vec<&str> = vec!["10.73.0.2", "10.73.0.200", "fd73::2"];
        assert_eq!(
            left.keys().map(String::as_str).collect::<Vec<_>>(),
            want,
            "{key}"
        );
        assert_eq!(left["10.73.0.2"], lease_text("keep", "eth0"));
        for (i, before) in last_before.iter().enumerate() {
            assert_eq!(
                &std::fs::read(dir.join(format!("last_reserved_ip.{i}"))).expect("last"),
                before
            );
        }
        assert!(dir.join("lock").exists());

        // Present but empty: release all.
        gc_call(&gc_conf(&tmp, Some(key), json!([]))).expect_ok();
        assert!(leases(&dir).is_empty(), "{key}");
    }
    // GC on a network that never had a store: success, nothing created.
    let tmp = TempDir::new("hl-gc-none");
    gc_call(&gc_conf(&tmp, Some("cni.dev/valid-attachments"), json!([]))).expect_ok();
    assert!(!tmp.path().join("gc").exists());
    // A malformed list is a decode error.
    gc_call(&gc_conf(
        &tmp,
        Some("cni.dev/valid-attachments"),
        json!("x"),
    ))
    .expect_err(6);
}

fn status_call(c: &Value) -> common::PluginRun {
    let mut call =
        common::PluginCall::new("STATUS", "", "", "", &common::our_cni_path()).stdin(c.to_string());
    call.env.remove("CNI_CONTAINERID");
    call.env.remove("CNI_NETNS");
    call.env.remove("CNI_IFNAME");
    common::run_plugin(&ours(), &call)
}

#[test]
fn status_reports_50_when_a_range_set_is_full() {
    let tmp = TempDir::new("hl-status");
    let c = conf(
        "1.1.0",
        "st",
        ipam(tmp.path(), &[&["10.74.0.0/30"], &["fd74::/126"]]),
    );
    // No store yet: available, and STATUS creates nothing.
    status_call(&c).expect_ok();
    assert!(!tmp.path().join("st").exists());
    // fd74::/126 has fd74::2 and fd74::3 usable; 10.74.0.0/30 only .2.
    add_ok(&ours(), "a", &c);
    let e = status_call(&c).expect_err(50);
    assert_eq!(
        e["msg"],
        "no IP addresses available in range set 0: 10.74.0.1-10.74.0.2"
    );
    // ADD agrees: it cannot be serviced.
    run(&ours(), "ADD", "b", "eth0", &c).expect_err(11);
    run(&ours(), "DEL", "a", "eth0", &c).expect_ok();
    status_call(&c).expect_ok();
    // Every set full → 50 as well.
    let c1 = conf("1.1.0", "st1", ipam(tmp.path(), &[&["10.75.0.0/30"]]));
    add_ok(&ours(), "a", &c1);
    status_call(&c1).expect_err(50);
    // An empty (half-written) lease file counts as free: ADD reclaims it.
    let dir = tmp.path().join("st1");
    std::fs::write(dir.join("10.75.0.2"), b"").expect("orphan");
    status_call(&c1).expect_ok();
    assert_eq!(addresses(&add_ok(&ours(), "b", &c1)), vec!["10.75.0.2/30"]);
    // STATUS is refused by the skel below 1.1.0.
    let old = conf("1.0.0", "st", ipam(tmp.path(), &[&["10.74.0.0/30"]]));
    status_call(&old).expect_err(1);
}

#[test]
fn resolv_conf_becomes_dns() {
    let tmp = TempDir::new("hl-dns");
    let rc = tmp.path().join("resolv.conf");
    std::fs::write(&rc, "# comment\nnameserver 10.0.0.10\nnameserver fd00:53::1\ndomain example.org\nsearch a.example b.example\noptions ndots:5\n").expect("write");
    let mut ipam = ipam(tmp.path(), &[&["10.76.0.0/24"]]);
    ipam["resolvConf"] = json!(rc);
    let r = add_ok(&ours(), "c", &conf("1.0.0", "dns", ipam.clone()));
    assert_eq!(
        r["dns"],
        json!({"nameservers": ["10.0.0.10", "fd00:53::1"], "domain": "example.org", "search": ["a.example", "b.example"], "options": ["ndots:5"]})
    );
    // A missing resolvConf fails ADD with an I/O error and no lease.
    ipam["resolvConf"] = json!(tmp.path().join("missing"));
    let e = run(&ours(), "ADD", "d", "eth0", &conf("1.0.0", "dns", ipam)).expect_err(5);
    assert!(
        e["msg"].as_str().expect("msg").contains("resolvConf"),
        "{e}"
    );
    assert_eq!(leases(&tmp.path().join("dns")).len(), 1);
}

#[test]
fn bad_input_gets_the_right_code_and_leaves_store_untouched() {
    let tmp = TempDir::new("hl-bad");
    let good = conf("1.0.0", "bad", ipam(tmp.path(), &[&["10.77.0.0/24"]]));
    add_ok(&ours(), "existing", &good);
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"").expect("file");
    let snapshot = || common::tree_snapshot(tmp.path());
    let before = snapshot();

    let with_ipam = |ipam: Value| conf("1.0.0", "bad", ipam);
    let dd = tmp.path().display().to_string();
    let cases: Vec<(&str, String, u64, &str)> = vec![
        ("malformed JSON", "{\"cniVersion\":".to_string(), 6, ""),
        ("wrong type", with_ipam(json!({"dataDir": dd, "subnet": 10})).to_string(), 6, "ipam.subnet: expected a string"),
        ("unknown cniVersion", conf("9.9.9", "bad", ipam(tmp.path(), &[&["10.77.0.0/24"]])).to_string(), 1, ""),
        ("missing ipam", json!({"cniVersion": "1.0.0", "name": "bad"}).to_string(), 7, "IPAM config missing 'ipam' key"),
        ("no ranges", with_ipam(json!({"dataDir": dd})).to_string(), 7, "no IP ranges specified"),
        ("bad CIDR", with_ipam(json!({"dataDir": dd, "subnet": "10.77.0.0/40"})).to_string(), 7, "is not a CIDR"),
        ("too small", with_ipam(json!({"dataDir": dd, "subnet": "10.77.0.0/31"})).to_string(), 7, "too small to allocate from"),
        ("host bits", with_ipam(json!({"dataDir": dd, "subnet": "10.77.0.1/24"})).to_string(), 7, "Network has host bits set"),
        ("start outside", with_ipam(json!({"dataDir": dd, "subnet": "10.77.0.0/24", "rangeStart": "10.78.0.1"})).to_string(), 7, "RangeStart 10.78.0.1 not in network 10.77.0.0/24"),
        ("end outside", with_ipam(json!({"dataDir": dd, "subnet": "10.77.0.0/24", "rangeEnd": "10.78.0.1"})).to_string(), 7, "RangeEnd 10.78.0.1 not in network 10.77.0.0/24"),
        ("start > end", with_ipam(json!({"dataDir": dd, "subnet": "10.77.0.0/24", "rangeStart": "10.77.0.9", "rangeEnd": "10.77.0.5"})).to_string(), 7, "is after RangeEnd"),
        ("overlap", with_ipam(json!({"dataDir": dd, "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "10.77.0.0/25"}]]})).to_string(), 7, "range set 0 overlaps with 1"),
        ("name with slash", conf("1.0.0", "../escape", ipam(tmp.path(), &[&["10.77.0.0/24"]])).to_string(), 7, ""),
        ("name dotdot", conf("1.0.0", "..", ipam(tmp.path(), &[&["10.77.0.0/24"]])).to_string(), 7, ""),
        ("unwritable dataDir", with_ipam(json!({"dataDir": file, "subnet": "10.77.0.0/24"})).to_string(), 5, "failed to create the IPAM store directory"),
    ];
    for (what, stdin, code, msg) in cases {
        let call = common::PluginCall::new("ADD", "c1", NETS, "eth0", &common::our_cni_path())
            .stdin(stdin);
        let run = common::run_plugin(&ours(), &call);
        let e = run.expect_err(code);
        assert!(e["msg"].as_str().expect("msg").contains(msg), "{what}: {e}");
        assert_eq!(snapshot(), before, "{what}: store changed");
    }
    // Container ids that could escape or forge lease content, and missing env.
    for id in ["../x", "a/b", "..", "a\r\nb"] {
        let call = common::PluginCall::new("ADD", id, NETS, "eth0", &common::our_cni_path())
            .stdin(good.to_string());
        common::run_plugin(&ours(), &call).expect_err(4);
    }
    let mut call = common::PluginCall::new("ADD", "c1", NETS, "eth0", &common::our_cni_path())
        .stdin(good.to_string());
    call.env.remove("CNI_IFNAME");
    common::run_plugin(&ours(), &call).expect_err(4);
    assert_eq!(snapshot(), before, "store changed by bad env");
}

const NETS: &str = NETNS;

/// What, stdin, extra env, expected code, expected message part.
type RefutedCase<'a> = (&'a str, Value, &'a [(&'a str, &'a str)], u64, &'a str);

/// Requests that the configuration alone refutes (an address outside every
/// range set, a gateway, a set with nothing allocatable) fail before the
/// store is opened: an existing store (leases, `last_reserved_ip.*`, index)
/// stays byte-identical, and on a fresh node nothing is created at all.
#[test]
fn refuted_requests_touch_nothing_on_disk() {
    let ranges = [&["10.77.0.0/24"][..], &["fd77::/64"][..]];
    let with_runtime_ips = |c: &Value, ips: &[&str]| {
        let mut c = c.clone();
        c["runtimeConfig"] = json!({ "ips": ips });
        c
    };
    let with_args_ips = |c: &Value, ips: &[&str]| {
        let mut c = c.clone();
        c["args"] = json!({ "cni": { "ips": ips } });
        c
    };
    for fresh in [false, true] {
        let tmp = TempDir::new("hl-refuted");
        let good = conf("1.0.0", "refuted", ipam(tmp.path(), &ranges));
        if !fresh {
            add_ok(&ours(), "existing", &good);
        }
        let before = common::tree_snapshot(tmp.path());
        let mut gw_only = good.clone();
        gw_only["ipam"]["ranges"] = json!([[{
            "subnet": "10.77.0.0/30", "rangeStart": "10.77.0.1", "rangeEnd": "10.77.0.1"
        }]]);
        let cases: Vec<RefutedCase> = vec![
            (
                "runtimeConfig.ips outside",
                with_runtime_ips(&good, &["10.99.0.5"]),
                &[],
                7,
                "failed to allocate all requested IPs: 10.99.0.5",
            ),
            (
                "args.cni.ips outside",
                with_args_ips(&good, &["fd99::5"]),
                &[],
                7,
                "failed to allocate all requested IPs: fd99::5",
            ),
            (
                "CNI_ARGS IP outside",
                good.clone(),
                &[("CNI_ARGS", "IP=10.99.0.6")],
                7,
                "failed to allocate all requested IPs: 10.99.0.6",
            ),
            (
                "second request in one set",
                with_runtime_ips(&good, &["10.77.0.5", "10.77.0.6"]),
                &[],
                7,
                "10.77.0.6",
            ),
            (
                "gateway",
                with_runtime_ips(&good, &["10.77.0.1"]),
                &[],
                7,
                "is subnet's gateway",
            ),
            (
                "gateway in second set",
                with_runtime_ips(&good, &["10.77.0.5", "fd77::1"]),
                &[],
                7,
                "failed to allocate for range 1",
            ),
            (
                "nothing allocatable",
                gw_only,
                &[],
                11,
                "no IP addresses available",
            ),
        ];
        for (what, stdin, env, code, msg) in cases {
            let run = run_env(&ours(), "ADD", "c1", "eth0", &stdin, env);
            let e = run.expect_err(code);
            assert!(
                e["msg"].as_str().expect("msg").contains(msg),
                "{what} (fresh={fresh}): {e}"
            );
            assert_eq!(
                common::tree_snapshot(tmp.path()),
                before,
                "{what} (fresh={fresh}): disk changed"
            );
        }
        if fresh {
            assert!(before.is_empty(), "{before:?}");
        }
    }
}
