//! `kubesim soak --runtime containerd`: pod sandboxes through a real
//! containerd 1.6 over CRI while a killer SIGKILLs running plugin processes
//! (bridge, host-local, portmap, loopback) and containerd itself is killed
//! and restarted midway. The run must end with every pod having reached
//! Ready once and been removed, no IP ever held by two live pods (the pod
//! CIDR wraps, so IPs are reused), the live pods surviving the restart,
//! and after a CNI GC no lease, veth, masquerade or hostPort rule, or
//! libcni cache entry left; then no process of the run and no state dir.
//!
//! The full 1,000-sandbox run is recorded in docs/reliability.md. Needs
//! root, containerd, runc, tini and busybox-static (see .ci/run); under
//! CI=true a missing tool fails the test instead of skipping it.

use cni_test_support::clients::{kubesim, processes_mentioning, KubesimDown};
use cni_test_support::common::TempDir;

/// Sandboxes of the CI soak: more than the 253 addresses of the node's /24,
/// so host-local wraps around and hands out freed IPs again.
const PODS: usize = 300;

/// The first number after `prefix` in the line that contains it.
fn figure(out: &str, prefix: &str) -> usize {
    let rest = out
        .split_once(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
        .1;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in:\n{out}"))
}

#[test]
fn soak_through_containerd_with_plugin_kills_and_a_restart_leaves_nothing() {
    require_root!();
    if !cni_test_support::clients::containerd_prerequisites() {
        return;
    }
    let dir = TempDir::new("kubesim-soak");
    let state = dir.path().join("state");
    let _down = KubesimDown(state.clone());
    let out = kubesim(&state)
        .args(["soak", "--runtime", "containerd", "--seed", "16"])
        .args(["--pods", &PODS.to_string(), "--kill-rate", "0.05"])
        .output()
        .expect("run kubesim soak");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = format!(
        "{}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(out.status.success(), "soak failed: {report}");
    assert!(
        stdout.contains("PASS: no IP held by two live pods; nothing left after GC"),
        "{report}"
    );
    assert!(!stdout.contains("FAIL:"), "{report}");

    // Every pod ran and went, through real failures.
    assert_eq!(figure(&stdout, "sandboxes:"), PODS, "{report}");
    assert!(
        stdout.contains(&format!("{PODS} ready and removed of {PODS} asked")),
        "{report}"
    );
    assert!(
        figure(&stdout, "plugin processes seen:") >= 4 * PODS,
        "{report}"
    );
    assert!(figure(&stdout, "kills that landed:") > 0, "{report}");
    assert!(
        figure(&stdout, "RunPodSandbox failed and retried:") > 0,
        "{report}"
    );

    // No double allocation, although IPs were reused.
    let handed = figure(&stdout, "pod IPs:");
    let distinct = figure(&stdout, "handed out,");
    assert_eq!(handed, PODS, "{report}");
    assert!(distinct < handed, "the pod CIDR wrapped: {report}");
    assert!(stdout.contains(", 0 held by two live pods"), "{report}");

    // The restart: live pods survived it, none lost.
    assert!(stdout.contains("containerd restart after"), "{report}");
    assert!(figure(&stdout, "back in") < 60, "{report}");
    let line = stdout
        .lines()
        .find(|l| l.contains("containerd restart after"))
        .unwrap_or_default();
    // "…; L live pods on the node, S still Ready …, M stopped …, X lost"
    let counts: Vec<usize> = line
        .rsplit_once("; ")
        .map(|(_, tail)| tail)
        .unwrap_or_default()
        .split(", ")
        .filter_map(|part| part.split(' ').next()?.parse().ok())
        .collect();
    let [live, survived, stopped, lost] = counts[..] else {
        panic!("restart line {line:?}: {report}");
    };
    assert!(live > 0, "pods were live at the restart: {report}");
    assert_eq!(lost, 0, "{report}");
    assert_eq!(survived + stopped, live, "{report}");

    // Clean after GC, and nothing of the run left on the machine.
    assert!(
        stdout.contains(
            "after GC 0 leases, 0 veths, 0 masquerade rules, 0 hostPort rules, 0 cache entries"
        ),
        "{report}"
    );
    assert!(!state.exists(), "the soak removes its state dir");
    let left = processes_mentioning(&state.display().to_string());
    assert!(left.is_empty(), "processes left: {left:?}");
}
