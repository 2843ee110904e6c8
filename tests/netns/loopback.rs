//! The `loopback` plugin against Debian's reference
//! (`/usr/lib/cni/loopback`, containernetworking-plugins 1.1.1): the same
//! calls in two fresh pods, comparing stdout byte for byte (modulo the
//! netns path) and the state of `lo` they leave; plus the verbs the
//! reference lacks (GC, STATUS, cniVersion 1.1.0) and mixed runs.

use std::path::Path;

use cni_test_support::common::*;
use serde_json::{json, Value};

const REFERENCE: &str = "/usr/lib/cni/loopback";
/// The versions Debian's 1.1.1 loopback accepts (it predates 1.1.0).
const REFERENCE_VERSIONS: [&str; 6] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];

fn ours() -> std::path::PathBuf {
    bin("loopback")
}

fn conf(version: &str) -> String {
    format!(r#"{{"cniVersion":"{version}","name":"lo","type":"loopback"}}"#)
}

fn call(cmd: &str, pod: &Path, stdin: &str) -> PluginCall {
    PluginCall::new(
        cmd,
        "lo-ctr-1",
        &pod.display().to_string(),
        "eth0",
        Path::new("/nonexistent"),
    )
    .stdin(stdin.as_bytes().to_vec())
}

/// `lo` as the kernel reports it: admin state and addresses.
fn lo_state(pod: &PodNs) -> Value {
    let link = pod.ip_json(&["addr", "show", "dev", "lo"]);
    let l = &link[0];
    let up = l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    let mut addrs: Vec<String> = l["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or(""), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default();
    addrs.sort();
    json!({"up": up, "addrs": addrs})
}

/// Runs `cmd` with `binary` in a fresh pod; returns stdout (netns path
/// replaced by `<netns>`), exit code and `lo`'s state afterwards.
fn run_in_fresh_pod(binary: &Path, cmd: &str, stdin: &str) -> (String, Option<i32>, Value) {
    let pod = PodNs::new();
    let run = run_plugin(binary, &call(cmd, &pod.path, stdin));
    let stdout = run
        .stdout
        .replace(&pod.path.display().to_string(), "<netns>");
    (stdout, run.code, lo_state(&pod))
}

#[test]
fn add_prints_the_reference_bytes_in_every_version() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    for v in REFERENCE_VERSIONS {
        let reference = run_in_fresh_pod(Path::new(REFERENCE), "ADD", &conf(v));
        let our = run_in_fresh_pod(&ours(), "ADD", &conf(v));
        assert_eq!(reference.1, Some(0), "reference ADD {v}: {}", reference.0);
        assert_eq!(our, reference, "ADD at {v}");
        assert_eq!(
            our.2,
            json!({"up": true, "addrs": ["127.0.0.1/8", "::1/128"]})
        );
    }
    // 1.1.0 is ours only: the same shape.
    let (out, code, _) = run_in_fresh_pod(&ours(), "ADD", &conf("1.1.0"));
    assert_eq!(code, Some(0), "{out}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        v,
        json!({"cniVersion":"1.1.0",
               "interfaces":[{"name":"lo","mac":"00:00:00:00:00:00","sandbox":"<netns>"}],
               "ips":[{"interface":0,"address":"127.0.0.1/8"},{"interface":0,"address":"::1/128"}],
               "dns":{}})
    );
}

#[test]
fn prev_result_is_passed_through_like_the_reference() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let prev = json!({"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/x"}],
        "ips":[{"version":"4","interface":0,"address":"10.1.0.5/24","gateway":"10.1.0.1"}],
        "routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.1.0.1"]}});
    for v in ["0.3.1", "0.4.0", "1.0.0"] {
        let mut c: Value = serde_json::from_str(&conf(v)).expect("conf");
        let mut p = prev.clone();
        p["cniVersion"] = json!(v);
        c["prevResult"] = p;
        let stdin = c.to_string();
        let reference = run_in_fresh_pod(Path::new(REFERENCE), "ADD", &stdin);
        let our = run_in_fresh_pod(&ours(), "ADD", &stdin);
        assert_eq!(reference.1, Some(0), "{}", reference.0);
        assert_eq!(our, reference, "prevResult at {v}");
    }
}

#[test]
fn del_sets_lo_down_like_the_reference() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let mut states = Vec::new();
    for binary in [Path::new(REFERENCE), &ours()] {
        let pod = PodNs::new();
        run_plugin(binary, &call("ADD", &pod.path, &conf("1.0.0"))).expect_ok();
        let del = run_plugin(binary, &call("DEL", &pod.path, &conf("1.0.0"))).expect_ok();
        assert!(del.stdout.is_empty(), "{del:#?}");
        // A repeated DEL (the CRI repeats them) is fine too.
        run_plugin(binary, &call("DEL", &pod.path, &conf("1.0.0"))).expect_ok();
        states.push(lo_state(&pod));
    }
    assert_eq!(states[1], states[0]);
    assert_eq!(states[1]["up"], false);
}

#[test]
fn mixed_runs_leave_lo_down() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let pairs = [
        (Path::new(REFERENCE).to_path_buf(), ours()),
        (ours(), Path::new(REFERENCE).to_path_buf()),
    ];
    for (adder, deleter) in pairs {
        let pod = PodNs::new();
        run_plugin(&adder, &call("ADD", &pod.path, &conf("1.0.0"))).expect_ok();
        run_plugin(&deleter, &call("CHECK", &pod.path, &conf("1.0.0"))).expect_ok();
        run_plugin(&deleter, &call("DEL", &pod.path, &conf("1.0.0"))).expect_ok();
        assert_eq!(
            lo_state(&pod)["up"],
            false,
            "{} ADD, {} DEL",
            adder.display(),
            deleter.display()
        );
    }
}

#[test]
fn del_with_empty_or_vanished_netns_succeeds() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let gone = {
        let pod = PodNs::new();
        pod.path.clone()
    };
    for binary in [Path::new(REFERENCE), &ours()] {
        for netns in ["", gone.to_str().expect("utf-8")] {
            let run = run_plugin(binary, &call("DEL", Path::new(netns), &conf("1.0.0")));
            assert_eq!(run.code, Some(0), "{run:#?}");
            assert!(run.stdout.is_empty(), "{run:#?}");
        }
        let mut c = call("DEL", Path::new(""), &conf("1.0.0"));
        c.env.remove("CNI_NETNS");
        run_plugin(binary, &c).expect_ok();
    }
}

#[test]
fn check_fails_when_lo_is_down() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let mut errors = Vec::new();
    for binary in [Path::new(REFERENCE), &ours()] {
        let pod = PodNs::new();
        run_plugin(binary, &call("ADD", &pod.path, &conf("1.0.0"))).expect_ok();
        run_plugin(binary, &call("CHECK", &pod.path, &conf("1.0.0"))).expect_ok();
        assert!(pod
            .exec(&["ip", "link", "set", "lo", "down"])
            .status
            .success());
        let run = run_plugin(binary, &call("CHECK", &pod.path, &conf("1.0.0")));
        errors.push(run.expect_err(999));
        // CHECK needs 0.4.0, for both.
        run_plugin(binary, &call("CHECK", &pod.path, &conf("0.3.1"))).expect_err(1);
    }
    assert_eq!(errors[1]["msg"], errors[0]["msg"]);
    assert_eq!(errors[1]["msg"], "loopback interface is down");
}

#[test]
fn non_loopback_address_on_lo_fails_like_the_reference() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let mut errors = Vec::new();
    for binary in [Path::new(REFERENCE), &ours()] {
        let pod = PodNs::new();
        let out = pod.exec(&["ip", "addr", "add", "192.0.2.9/32", "dev", "lo"]);
        assert!(out.status.success(), "{out:?}");
        let run = run_plugin(binary, &call("ADD", &pod.path, &conf("1.0.0")));
        errors.push(run.expect_err(999));
    }
    assert_eq!(errors[1]["msg"], errors[0]["msg"]);
    assert!(errors[1]["msg"]
        .as_str()
        .is_some_and(|m| m.contains("\"192.0.2.9\"")));
}

#[test]
fn missing_netns_on_add_is_code_4_like_the_reference() {
    let mut msgs = Vec::new();
    for binary in [Path::new(REFERENCE), &ours()] {
        let mut c = call("ADD", Path::new("/nonexistent"), &conf("1.0.0"));
        c.env.remove("CNI_NETNS");
        msgs.push(run_plugin(binary, &c).expect_err(4)["msg"].clone());
    }
    assert_eq!(msgs[1], msgs[0]);
}

#[test]
fn version_gc_and_status() {
    let c = call("VERSION", Path::new(""), &conf("1.1.0"));
    let v = run_plugin(&ours(), &c).expect_ok().json();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(v["supportedVersions"], json!(ALL_VERSIONS));
    for cmd in ["GC", "STATUS"] {
        let mut c = call(cmd, Path::new(""), &conf("1.1.0"));
        c.env.remove("CNI_NETNS");
        let run = run_plugin(&ours(), &c).expect_ok();
        assert!(run.stdout.is_empty(), "{run:#?}");
        let run = run_plugin(&ours(), &call(cmd, Path::new(""), &conf("1.0.0")));
        run.expect_err(1);
    }
    // GC with a list of valid attachments: nothing to collect, success.
    let stdin = json!({"cniVersion":"1.1.0","name":"lo","type":"loopback",
        "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]})
    .to_string();
    run_plugin(&ours(), &call("GC", Path::new(""), &stdin)).expect_ok();
}
