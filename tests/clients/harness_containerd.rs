//! `kubesim --runtime containerd`: kubesim as the kubelet only, a private
//! Debian containerd 1.6 per node driving our plugins, everything over CRI.
//!
//! - the whole demo passes every check and names the runtime CRI `Version`
//!   reported, the hostPort checks included (the mapping travels in
//!   `PodSandboxConfig.port_mappings`; a second sandbox asking for the same
//!   host port fails RunPodSandbox with portmap's error);
//! - `kubesim down` after kubesim *and* the containerd daemons were
//!   SIGKILLed (pods still running under their shims) leaves no process,
//!   cgroup or state behind.
//!
//! Needs root, containerd, runc, tini and busybox-static (see .ci/run);
//! under CI=true a missing tool fails the test instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use cni_test_support::clients::{kubesim, processes_mentioning, KubesimDown};
use cni_test_support::common::TempDir;

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn demo_with_containerd_passes_every_check_and_leaves_nothing() {
    require_root!();
    if !cni_test_support::clients::containerd_prerequisites() {
        return;
    }
    let dir = TempDir::new("kubesim-cri");
    let state = dir.path().join("state");
    let _down = KubesimDown(state.clone());
    let out = kubesim(&state)
        .args(["demo", "--runtime", "containerd"])
        .output()
        .expect("run kubesim demo");
    let report = text(&out);
    eprintln!("{report}");
    assert!(out.status.success(), "demo failed: {report}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("[FAIL]"), "{report}");
    assert!(
        stdout.contains("containerd 1.6") && stdout.contains("(CRI v1"),
        "the output names the runtime CRI Version reported: {report}"
    );
    for claim in [
        "not NATed",
        "reach each other by pod IP from inside their containers",
        "10 pods on one node",
        "[PASS] a hostPort is an opt-in DNAT on the node's address: node-1:5000 reaches one pod's :8080 from node-2",
        "[PASS] a second pod asking for hostPort 5000 on that node is refused by portmap and leaves nothing behind",
        "is already allocated",
        "a hostPort is an opt-in NAT on the node's address, and two pods cannot share one",
        "keeps every live pod's lease and hostPort rules",
        "masquerade or hostPort (DNAT) rule, or cache entry is left",
        "CNI CHECK passes",
        "talk over 127.0.0.1",
        "cannot bind the same port",
        "makes no CNI call",
        "new sandbox and a new IP",
        "GC with an empty valid-attachment list",
        "leaves no process, mount, cgroup or netns",
    ] {
        assert!(stdout.contains(claim), "missing check {claim:?}: {report}");
    }
    assert!(!state.exists(), "the demo removes its state dir");
    let left = processes_mentioning(&state.display().to_string());
    assert!(left.is_empty(), "processes left: {left:?}");
}

/// The daemon record of a node: the pid of its `tini -s`.
fn tini_pid(state: &Path, node: &str) -> Option<i32> {
    let path = state.join(format!("nodes/{node}/containerd/daemon.json"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v.get("pid")?.as_i64().map(|p| p as i32)
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}

/// The cgroup parent kubesim gives a node's pods (`/kubesim-<hash of the
/// node's containerd dir>`).
fn cgroup_parent(state: &Path, node: &str) -> String {
    use sha2::Digest;
    let base = state.join(format!("nodes/{node}/containerd"));
    let hash = sha2::Sha256::digest(base.to_string_lossy().as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("kubesim-{hex}")
}

#[test]
fn down_cleans_up_after_kubesim_and_containerd_were_killed() {
    require_root!();
    if !cni_test_support::clients::containerd_prerequisites() {
        return;
    }
    let dir = TempDir::new("kubesim-cri-crash");
    let state = dir.path().join("state");
    let _down = KubesimDown(state.clone());
    let log = std::fs::File::create(dir.path().join("demo.log")).expect("log");
    let mut demo: Child = kubesim(&state)
        .args(["demo", "--runtime", "containerd"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn demo");
    // Wait until a few pods run on node-1 (the demo logs each step).
    let log_path = dir.path().join("demo.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("pod default/web-4 on node-1 … done")
    {
        assert!(
            demo.try_wait().expect("wait").is_none(),
            "demo ended before pods ran: {}",
            std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "no pods after 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Crash: kubesim, then each node's containerd (the child of its tini).
    let _ = demo.kill();
    let _ = demo.wait();
    for node in ["node-1", "node-2"] {
        if let Some(tini) = tini_pid(&state, node) {
            // Only containerd: the shims (also tini's children) live on.
            for pid in children(tini) {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmd.starts_with(b"containerd\0") {
                    kill9(pid);
                }
            }
        }
    }
    let needle = state.display().to_string();
    let shims = processes_mentioning("containerd-shim")
        .into_iter()
        .filter(|(_, c)| c.contains(&needle))
        .count();
    assert!(shims >= 3, "pods' shims survive the crash: {shims}");

    let canon = state.canonicalize().expect("state dir exists before down");
    let parents = [
        cgroup_parent(&canon, "node-1"),
        cgroup_parent(&canon, "node-2"),
    ];
    let out = kubesim(&state).arg("down").output().expect("run down");
    assert!(out.status.success(), "down: {}", text(&out));
    let left = processes_mentioning(&needle);
    assert!(left.is_empty(), "processes left after down: {left:?}");
    assert!(!state.exists(), "state dir left after down");
    // Every hierarchy (v1: /sys/fs/cgroup/<controller>, v2: the root itself).
    let mut hierarchies: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.flatten().map(|h| h.path()).collect())
        .unwrap_or_default();
    hierarchies.push(PathBuf::from("/sys/fs/cgroup"));
    let cgroups: Vec<PathBuf> = hierarchies
        .iter()
        .flat_map(|h| parents.iter().map(move |c| h.join(c)))
        .filter(|p| p.is_dir())
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}
