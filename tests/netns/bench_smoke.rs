//! Smoke test of the benchmark tool (issue 7): it runs, against our own
//! binaries, and writes well-formed JSON with numbers for both sides.
//! No timing assertions: benchmarks are not tests.

use cni_test_support::common;
use std::process::Command;

#[test]
fn hostlocal_scenario_writes_json_for_both_sides() {
    require_root!();
    // The tool makes its own namespaces; start it from a throwaway node
    // netns anyway so nothing can reach the machine's network.
    let _node = common::NodeNs::enter();
    let tmp = common::TempDir::new("bench-smoke");
    let json_path = tmp.path().join("bench.json");
    let out = Command::new(common::bin("cni-bench"))
        .arg("--ours")
        .arg(common::our_cni_path())
        .args(["--only", "hostlocal", "--iterations", "3", "--json"])
        .arg(&json_path)
        .arg("--tmpdir")
        .arg(tmp.path())
        .output()
        .expect("run cni-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cni-bench failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    assert!(
        stdout.contains("host-local ADD+DEL cycle"),
        "no table:\n{stdout}"
    );

    let text = std::fs::read_to_string(&json_path).expect("JSON file written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
    assert_eq!(v["tool"], "cni-bench");
    assert!(v["machine"]["nproc"].as_u64().is_some_and(|n| n >= 1));
    let scenarios = v["scenarios"].as_array().expect("scenarios array");
    assert_eq!(scenarios.len(), 1, "only hostlocal ran: {v:#}");
    let s = &scenarios[0];
    assert_eq!(s["name"], "hostlocal");
    assert!(s["error"].is_null(), "scenario error: {}", s["error"]);
    let metrics = s["metrics"].as_array().expect("metrics");
    for key in ["hostlocal.add_del", "hostlocal.add", "hostlocal.del"] {
        let m = metrics
            .iter()
            .find(|m| m["key"] == key)
            .unwrap_or_else(|| panic!("metric {key} missing: {s:#}"));
        for side in ["ours", "reference"] {
            let sum = &m[side];
            assert_eq!(sum["n"], 3, "{key} {side}: {sum}");
            assert_eq!(sum["samples"].as_array().map(Vec::len), Some(3));
            for stat in ["median", "p95", "min", "max"] {
                let x = sum[stat].as_f64().unwrap_or(f64::NAN);
                assert!(x.is_finite() && x > 0.0, "{key} {side} {stat} = {x}");
            }
        }
        assert!(
            m["ratio"].as_f64().is_some_and(f64::is_finite),
            "{key} ratio"
        );
    }
    let cycle = metrics
        .iter()
        .find(|m| m["key"] == "hostlocal.add_del")
        .unwrap();
    assert!(cycle["pass"].is_boolean(), "target evaluated: {cycle}");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = Command::new(common::bin("cni-bench"))
        .args(["--only", "nonsense"])
        .output()
        .expect("run cni-bench");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario"));

    let out = Command::new(common::bin("cni-bench"))
        .arg("--help")
        .output()
        .expect("run cni-bench");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--iterations"));
}
