//! The kubelet-like harness (`kubesim`) end to end: the story of issue 5 as
//! tests, each on its own cluster (own state dir, own namespaces), torn down
//! by a Drop guard even when the test fails.
//!
//! Plugins: ours (the dir of `common::bin("bridge")`). To run the same story
//! against other plugins, set `CNI_RS_HARNESS_PLUGINS=/usr/lib/cni` and
//! `CNI_RS_HARNESS_CNI_VERSION=1.0.0` (Debian's reference plugins stop at 1.0.0).
//! (`plugin_gc_frees_what_the_cache_forgot` needs plugins that implement GC,
//! which the reference v1.1.1 plugins do not.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cni_test_support::common;
use cni_test_support::common::TempDir;
use serde_json::Value;

fn version_args() -> Vec<String> {
    match std::env::var("CNI_RS_HARNESS_CNI_VERSION") {
        Ok(v) => vec!["--cni-version".into(), v],
        Err(_) => Vec::new(),
    }
}

fn kubesim(state: &Path, args: &[&str]) -> Output {
    Command::new(common::bin("kubesim"))
        .arg("--state-dir")
        .arg(state)
        .arg("--quiet")
        .args(args)
        .output()
        .expect("run kubesim")
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "kubesim {args:?} -> {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A cluster in its own state dir; `kubesim down` on drop.
struct Cluster {
    state: PathBuf,
    _dir: TempDir,
}

impl Cluster {
    fn up(nodes: u8) -> Cluster {
        Cluster::up_with(nodes, &common::harness_plugin_dir(), &[])
    }

    fn up_with(nodes: u8, plugins: &Path, extra: &[&str]) -> Cluster {
        let dir = TempDir::new("kubesim");
        let c = Cluster {
            state: dir.path().join("state"),
            _dir: dir,
        };
        let n = nodes.to_string();
        let plugins = plugins.display().to_string();
        let mut args = vec!["up", "--nodes", &n, "--cni-bin-dir", &plugins];
        let versions = version_args();
        args.extend(versions.iter().map(String::as_str));
        args.extend_from_slice(extra);
        c.ok(&args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        kubesim(&self.state, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{}", describe(args, &out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "expected failure: {}",
            describe(args, &out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn state(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status --json")
    }

    fn pod(&self, key: &str) -> Value {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        self.state()["pods"]
            .as_array()
            .expect("pods")
            .iter()
            .find(|p| p["namespace"] == ns && p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no pod {key}"))
    }

    fn pod_ip(&self, key: &str) -> String {
        let pod = self.pod(key);
        let ip = pod["ips"][0].as_str().expect("pod IP");
        ip.split('/').next().expect("ip").to_string()
    }

    fn run_pod(&self, name: &str, node: &str) -> String {
        self.ok(&["run-pod", name, "--node", node]);
        self.pod_ip(name)
    }

    /// TCP probe from inside pod `from` to `ip:port`, expecting `server`.
    fn reach(&self, from: &str, ip: &str, port: u16, server: &str) {
        let exe = common::bin("kubesim").display().to_string();
        let port = port.to_string();
        let args = [
            "exec",
            from,
            "--",
            &exe,
            "__tcp-check",
            ip,
            &port,
            "--expect",
            server,
        ];
        self.ok(&args);
    }

    fn cni_calls(&self) -> usize {
        std::fs::read_to_string(self.state.join("cni-calls.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn node(&self, name: &str) -> Value {
        self.state()["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Runs a command inside a node's netns.
    fn in_node(&self, node: &str, argv: &[&str]) -> String {
        let pid = self.node(node)["holder"]["pid"]
            .as_i64()
            .expect("holder pid");
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(argv)
            .output()
            .expect("nsenter");
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = kubesim(&self.state, &["down"]);
        if !out.status.success() {
            eprintln!("cleanup failed: {}", describe(&["down"], &out));
        }
    }
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// kubesim with exactly `args` (no state dir): for the command line itself,
/// which is checked before anything needs root or a cluster.
fn kubesim_cli(args: &[&str]) -> Output {
    Command::new(common::bin("kubesim"))
        .args(args)
        .output()
        .expect("run kubesim")
}

/// Every user-facing command.
const COMMANDS: [&str; 11] = [
    "demo",
    "up",
    "run-pod",
    "delete-pod",
    "add-container",
    "restart",
    "exec",
    "check",
    "gc",
    "status",
    "down",
];

/// Asserts a usage error: exit 2, nothing on stdout, the reason on stderr.
fn assert_usage_error(args: &[&str], want: &str) {
    let out = kubesim_cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(args, &out));
    assert!(out.stdout.is_empty(), "{}", describe(args, &out));
    assert!(
        err.contains(want),
        "want {want:?}: {}",
        describe(args, &out)
    );
}

#[test]
fn unknown_flags_and_commands_are_usage_errors() {
    // `--node 3` once silently built the default 2 nodes.
    assert_usage_error(&["up", "--node", "3"], "Usage: kubesim up");
    assert_usage_error(&["demo", "--anything"], "Usage: kubesim demo");
    assert_usage_error(&["status", "--jsn"], "Usage: kubesim status");
    assert_usage_error(&["delete-pod", "web", "extra"], "Usage: kubesim delete-pod");
    assert_usage_error(&["frobnicate"], "Usage: kubesim");
    assert_usage_error(&[], "Usage: kubesim");
}

#[test]
fn missing_or_bad_values_are_usage_errors() {
    let cases: [(&[&str], &str); 9] = [
        (&["up", "--nodes"], "--nodes"),
        (&["demo", "--cni-bin-dir"], "--cni-bin-dir"),
        (&["run-pod", "web", "--node"], "--node"),
        (&["status", "--state-dir"], "--state-dir"),
        (&["up", "--nodes", "two"], "--nodes"),
        (&["up", "--runtime", "rkt"], "builtin"),
        (&["run-pod", "web", "--container", "app"], "NAME:PORT"),
        (&["exec", "web"], "CMD"),
        (&["restart", "web"], "CONTAINER"),
    ];
    for (args, want) in cases {
        assert_usage_error(args, want);
    }
}

#[test]
fn help_for_every_command_exits_zero() {
    for top in [&["--help"][..], &["-h"], &["help"]] {
        let out = kubesim_cli(top);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", describe(top, &out));
        for cmd in COMMANDS {
            assert!(text.contains(cmd), "{cmd} listed: {text}");
        }
        assert!(!text.contains("__"), "helpers stay hidden: {text}");
    }
    for cmd in COMMANDS {
        for args in [[cmd, "--help"], [cmd, "-h"], ["help", cmd]] {
            let out = kubesim_cli(&args);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}", describe(&args, &out));
            assert!(
                text.contains(&format!("Usage: kubesim {cmd}")),
                "{}",
                describe(&args, &out)
            );
        }
    }
    let out = kubesim_cli(&["up", "--help"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--runtime <RUNTIME>"),
        "{}",
        describe(&["up", "--help"], &out)
    );
}

#[test]
fn version_is_printed() {
    let out = kubesim_cli(&["--version"]);
    assert!(out.status.success(), "{}", describe(&["--version"], &out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("kubesim {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn restart_keeps_ip() {
    require_root!();
    let c = Cluster::up(1);
    let ip = c.run_pod("web", "node-1");
    c.run_pod("client", "node-1");
    let pid_before = c.pod("web")["containers"][0]["process"]["pid"].as_i64();
    let calls = c.cni_calls();
    c.ok(&["restart", "web", "app"]);
    assert_eq!(
        c.cni_calls(),
        calls,
        "a container restart makes no CNI call"
    );
    let web = c.pod("web");
    assert_ne!(web["containers"][0]["process"]["pid"].as_i64(), pid_before);
    assert_eq!(web["containers"][0]["restarts"], 1);
    assert_eq!(c.pod_ip("web"), ip);
    let addrs = c.ok(&[
        "exec", "web", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0",
    ]);
    assert!(addrs.contains(&format!("inet {ip}/")), "{addrs}");
    c.reach("client", &ip, 8080, "default/web/app");
}

#[test]
fn recreate_gets_new_ip() {
    require_root!();
    let c = Cluster::up(1);
    let ip1 = c.run_pod("web", "node-1");
    let sandbox1 = c.pod("web")["sandbox_id"].as_str().expect("id").to_string();
    c.ok(&["delete-pod", "web"]);
    let ip2 = c.run_pod("web", "node-1");
    let sandbox2 = c.pod("web")["sandbox_id"].as_str().expect("id").to_string();
    assert_ne!(sandbox1, sandbox2);
    assert!(sandbox2.len() == 64 && sandbox2.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_ne!(
        ip1, ip2,
        "round-robin allocation gives the recreated pod a new IP"
    );
    c.run_pod("client", "node-1");
    c.reach("client", &ip2, 8080, "default/web/app");
}

#[test]
fn ten_pods_same_port() {
    require_root!();
    let c = Cluster::up(1);
    let mut ips = Vec::new();
    for i in 1..=10 {
        ips.push(c.run_pod(&format!("web-{i}"), "node-1"));
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "unique pod IPs: {ips:?}");
    c.run_pod("client", "node-1");
    for (i, ip) in ips.iter().enumerate() {
        c.reach("client", ip, 8080, &format!("default/web-{}/app", i + 1));
    }
}

#[test]
fn cross_node_reachability() {
    require_root!();
    let c = Cluster::up(2);
    let a = c.run_pod("a", "node-1");
    let b = c.run_pod("b", "node-2");
    let a2 = c.run_pod("a2", "node-1");
    assert!(
        a.starts_with("10.244.1.") && a2.starts_with("10.244.1."),
        "{a} {a2}"
    );
    assert!(b.starts_with("10.244.2."), "{b}");
    for (from, ip, to) in [
        ("a", &b, "b"),
        ("b", &a, "a"),
        ("b", &a2, "a2"),
        ("a", &a2, "a2"),
        ("a2", &a, "a"),
    ] {
        c.reach(from, ip, 8080, &format!("default/{to}/app"));
    }
}

#[test]
fn dual_stack_pods_reach_each_other_over_both_families() {
    require_root!();
    let conf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/20-bridge-dualstack.conflist"
    );
    let c = Cluster::up_with(2, &common::harness_plugin_dir(), &["--conflist", conf]);
    c.run_pod("a", "node-1");
    c.run_pod("b", "node-2");
    let ips = |pod: &str| -> Vec<String> {
        c.pod(pod)["ips"]
            .as_array()
            .expect("ips")
            .iter()
            .map(|ip| {
                ip.as_str()
                    .unwrap_or_default()
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let (a, b) = (ips("a"), ips("b"));
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(
        a[1].starts_with("fd10:244:1::") && b[1].starts_with("fd10:244:2::"),
        "{a:?} {b:?}"
    );
    for ip in &b {
        c.reach("a", ip, 8080, "default/b/app");
    }
    for ip in &a {
        c.reach("b", ip, 8080, "default/a/app");
    }
}

#[test]
fn containers_share_localhost() {
    require_root!();
    let c = Cluster::up(1);
    c.ok(&["run-pod", "duo", "--container", "server:9000"]);
    let exe = common::bin("kubesim").display().to_string();
    let reply = c.ok(&[
        "exec",
        "duo",
        "--",
        &exe,
        "__tcp-check",
        "127.0.0.1",
        "9000",
        "--expect",
        "default/duo/server",
    ]);
    assert!(reply.contains("saw us as 127.0.0.1"), "{reply}");
    let err = c.fails(&["add-container", "duo", "second:9000"]);
    assert!(err.contains("EADDRINUSE"), "{err}");
    c.ok(&["add-container", "duo", "sidecar:9001"]);
    let names: Vec<String> = c.pod("duo")["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|x| x["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        names,
        ["server", "sidecar"],
        "the failed container is not recorded"
    );
}

#[test]
fn cleanup_leaves_nothing() {
    require_root!();
    let c = Cluster::up(2);
    for (pod, node) in [
        ("a", "node-1"),
        ("b", "node-1"),
        ("c", "node-2"),
        ("d", "node-2"),
    ] {
        c.run_pod(pod, node);
    }
    let state = c.state();
    let pauses: Vec<i64> = state["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .filter_map(|p| p["pause"]["pid"].as_i64())
        .collect();
    let sandboxes: Vec<String> = state["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .filter_map(|p| p["sandbox_id"].as_str().map(String::from))
        .collect();
    for pod in ["a", "b", "c", "d"] {
        c.ok(&["delete-pod", pod]);
    }
    // Like containerd: DEL at StopPodSandbox and again (empty netns) at
    // RemovePodSandbox; both succeed.
    let log = std::fs::read_to_string(c.state.join("cni-calls.log")).expect("call log");
    for id in &sandboxes {
        let dels = log
            .lines()
            .filter(|l| l.starts_with("DEL bridge ") && l.contains(id.as_str()))
            .count();
        assert_eq!(dels, 2, "two bridge DELs for {id}:\n{log}");
        // The pod's lo: loopback ADD once, DEL at both DELs, as containerd.
        let lo = |verb: &str| {
            log.lines()
                .filter(|l| l.starts_with(&format!("{verb} loopback {id} lo ")))
                .count()
        };
        assert_eq!((lo("ADD"), lo("DEL")), (1, 2), "loopback calls:\n{log}");
        assert!(
            !log.lines()
                .any(|l| l.contains(id.as_str()) && !l.ends_with(" ok")),
            "{log}"
        );
    }
    for pid in &pauses {
        assert!(!alive(*pid), "pause {pid} still running");
    }
    for node in ["node-1", "node-2"] {
        let n = c.node(node);
        let data = PathBuf::from(n["data_dir"].as_str().expect("data dir"));
        for net in std::fs::read_dir(&data)
            .expect("data dir")
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        {
            for f in std::fs::read_dir(net.path()).expect("net dir").flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                assert!(
                    name == "lock" || name.starts_with("last_reserved_ip"),
                    "lease left: {name}"
                );
            }
        }
        let cache = PathBuf::from(n["cache_dir"].as_str().expect("cache dir")).join("results");
        assert_eq!(
            std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0),
            0,
            "cache entries left"
        );
        let veths = c.in_node(node, &["ip", "-o", "link", "show", "type", "veth"]);
        let pod_veths: Vec<&str> = veths.lines().filter(|l| !l.contains(" ul0@")).collect();
        assert!(pod_veths.is_empty(), "veths left on {node}: {pod_veths:?}");
        let nat = c.in_node(node, &["iptables", "-w", "-t", "nat", "-S"]);
        assert!(
            !nat.contains("CNI-"),
            "masquerade rules left on {node}:\n{nat}"
        );
        let nft = c.in_node(node, &["nft", "list", "ruleset"]);
        assert!(
            !nft.lines()
                .any(|l| l.contains("saddr") && l.contains("masquerade")),
            "{nft}"
        );
    }
    let gc = c.ok(&["gc", "--none-valid"]);
    assert_eq!(
        gc.matches("0 stale attachments deleted").count(),
        4,
        "two nodes, two networks each: {gc}"
    );
    let holders: Vec<i64> = ["node-1", "node-2"]
        .iter()
        .filter_map(|n| c.node(n)["holder"]["pid"].as_i64())
        .collect();
    c.ok(&["down"]);
    assert!(!c.state.exists(), "state dir removed by down");
    for pid in holders {
        assert!(!alive(pid), "node holder {pid} still running");
    }
}

/// Makes pod `name` vanish without a DEL, as with `ctr task delete`: the
/// runtime forgets it and its processes die, so only GC can free its lease.
/// Returns its sandbox id.
fn vanish_without_del(c: &Cluster, name: &str) -> String {
    let mut state = c.state();
    let pods = state["pods"].as_array_mut().expect("pods");
    let idx = pods.iter().position(|p| p["name"] == name).expect("pod");
    let gone = pods.remove(idx);
    std::fs::write(
        c.state.join("state.json"),
        serde_json::to_vec(&state).expect("json"),
    )
    .expect("write state");
    let mut pids: Vec<i64> = gone["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|x| x["process"]["pid"].as_i64())
        .collect();
    pids.push(gone["pause"]["pid"].as_i64().expect("pause pid"));
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        assert!(
            cmdline.contains(&c.state.display().to_string()),
            "pid {pid} is ours: {cmdline}"
        );
        let target = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
        nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL).expect("kill");
        while alive(pid) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    gone["sandbox_id"].as_str().expect("sandbox id").to_string()
}

fn lease_count(c: &Cluster, node: &str) -> usize {
    let data = PathBuf::from(c.node(node)["data_dir"].as_str().expect("data dir"));
    std::fs::read_dir(&data)
        .expect("data")
        .flatten()
        .flat_map(|net| std::fs::read_dir(net.path()).expect("net").flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with("10."))
        .count()
}

fn cache_entries(c: &Cluster, node: &str) -> Vec<String> {
    let dir = PathBuf::from(c.node(node)["cache_dir"].as_str().expect("cache")).join("results");
    common::dir_names(&dir)
}

#[test]
fn gc_removes_leaked_attachment() {
    require_root!();
    let c = Cluster::up(1);
    c.run_pod("keep", "node-1");
    c.run_pod("leak", "node-1");
    // Each pod: its eth0 on the node's network and its lo on cni-loopback.
    assert_eq!(cache_entries(&c, "node-1").len(), 4);
    vanish_without_del(&c, "leak");
    // The runtime finds `leak` in its cache, not in the valid set: full DEL,
    // on both networks.
    let report = c.ok(&["gc"]);
    for network in ["cni-rs", "cni-loopback"] {
        assert!(
            report.contains(&format!(
                "network {network}: 1 valid, 1 stale attachments deleted"
            )),
            "{report}"
        );
    }
    let keep = c.pod("keep")["sandbox_id"]
        .as_str()
        .expect("id")
        .to_string();
    let left = cache_entries(&c, "node-1");
    assert!(
        left.len() == 2 && left.iter().all(|e| e.contains(&keep)),
        "{left:?}"
    );
    assert_eq!(lease_count(&c, "node-1"), 1, "only keep's lease remains");
}

#[test]
fn plugin_gc_frees_what_the_cache_forgot() {
    require_root!();
    // ipMasq on, so the leaked pod also leaves masquerade rules to collect.
    let conf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/30-bridge-ipmasq.conflist"
    );
    let c = Cluster::up_with(1, &common::harness_plugin_dir(), &["--conflist", conf]);
    c.run_pod("keep", "node-1");
    c.run_pod("leak", "node-1");
    let leaked = vanish_without_del(&c, "leak");
    // Lose the cache entry too: only the plugins' own GC (bridge forwards to
    // host-local; cni.dev/valid-attachments) can find the lease and rules.
    let cache =
        PathBuf::from(c.node("node-1")["cache_dir"].as_str().expect("cache")).join("results");
    for entry in std::fs::read_dir(&cache).expect("cache").flatten() {
        if entry.file_name().to_string_lossy().contains(&leaked) {
            std::fs::remove_file(entry.path()).expect("remove cache entry");
        }
    }
    let chains = |c: &Cluster| {
        c.in_node(
            "node-1",
            &["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"],
        )
        .matches("CNI-")
        .count()
    };
    assert_eq!(lease_count(&c, "node-1"), 2);
    let before = chains(&c);
    let report = c.ok(&["gc"]);
    assert!(
        report.contains("1 valid, 0 stale attachments deleted, GC sent to 1 plugins"),
        "{report}"
    );
    assert_eq!(
        lease_count(&c, "node-1"),
        1,
        "plugin GC released the leaked lease"
    );
    assert!(
        chains(&c) < before,
        "plugin GC removed the leaked masquerade rules"
    );
    let ip = c.pod_ip("keep");
    c.run_pod("client", "node-1");
    c.reach("client", &ip, 8080, "default/keep/app");
}

#[test]
fn pod_name_reused_is_refused_and_changes_nothing() {
    require_root!();
    let c = Cluster::up(1);
    let ip = c.run_pod("web", "node-1");
    let before = c.state();
    let err = c.fails(&["run-pod", "web"]);
    assert!(err.contains("pod default/web already exists"), "{err}");
    assert_eq!(c.state()["pods"], before["pods"], "state unchanged");
    c.run_pod("client", "node-1");
    c.reach("client", &ip, 8080, "default/web/app");
    let err = c.fails(&["run-pod", "x", "--node", "node-9"]);
    assert!(err.contains("no node \"node-9\""), "{err}");
    let err = c.fails(&["run-pod", "x;K8S_POD_NAME=evil"]);
    assert!(err.contains("invalid pod name"), "{err}");
    let err = c.fails(&["run-pod", "ok", "--container", "Bad_Name:80"]);
    assert!(err.contains("invalid container name"), "{err}");
    let err = c.fails(&["up"]);
    assert!(err.contains("a cluster already exists"), "{err}");
    let err = c.fails(&["delete-pod", "ghost"]);
    assert!(err.contains("no pod default/ghost"), "{err}");
}

#[test]
fn plugin_missing_from_cni_path_at_pod_creation_leaves_nothing() {
    require_root!();
    let bin = TempDir::new("plugins");
    for p in ["bridge", "host-local", "loopback", "portmap"] {
        let dst = bin.path().join(p);
        std::fs::copy(common::harness_plugin_dir().join(p), &dst).expect("copy plugin");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let c = Cluster::up_with(1, bin.path(), &[]);
    std::fs::remove_file(bin.path().join("bridge")).expect("remove bridge");
    let err = c.fails(&["run-pod", "web"]);
    assert!(err.contains("failed to find plugin \"bridge\""), "{err}");
    assert!(c.state()["pods"].as_array().expect("pods").is_empty());
    let logs = std::fs::read_dir(c.state.join("logs"))
        .expect("logs")
        .count();
    assert!(logs > 0);
    let veths = c.in_node("node-1", &["ip", "-o", "link", "show", "type", "veth"]);
    assert_eq!(
        veths.lines().count(),
        1,
        "only the underlay uplink: {veths}"
    );
}

#[test]
fn bad_up_input_is_explained_and_leaves_nothing() {
    require_root!();
    let dir = TempDir::new("badup");
    let state = dir.path().join("state");
    let plugins = common::harness_plugin_dir().display().to_string();
    let invalid = dir.path().join("bad.conflist");
    std::fs::write(
        &invalid,
        r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
    )
    .expect("write");
    let no_ipam = dir.path().join("noipam.conflist");
    std::fs::write(
        &no_ipam,
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#,
    )
    .expect("write");
    let empty_bin = dir.path().join("empty-bin");
    std::fs::create_dir(&empty_bin).expect("mkdir");
    let missing = dir.path().join("missing.conflist");
    // Everything the conflist needs, but no loopback for the pods' lo.
    let no_lo_bin = dir.path().join("no-lo-bin");
    std::fs::create_dir(&no_lo_bin).expect("mkdir");
    for p in ["bridge", "host-local", "portmap"] {
        let dst = no_lo_bin.join(p);
        std::fs::copy(common::harness_plugin_dir().join(p), &dst).expect("copy plugin");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--conflist".into(), missing.display().to_string()],
            "cannot read conflist",
        ),
        (
            vec!["--conflist".into(), invalid.display().to_string()],
            "missing network \"name\"",
        ),
        (
            vec!["--conflist".into(), no_ipam.display().to_string()],
            "no plugin uses host-local",
        ),
        (
            vec!["--cni-bin-dir".into(), empty_bin.display().to_string()],
            "plugin \"bridge\"",
        ),
        (vec!["--nodes".into(), "0".into()], "--nodes must be"),
        (
            vec!["--cni-bin-dir".into(), no_lo_bin.display().to_string()],
            "sets up each pod's lo with the loopback plugin",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["up".to_string(), "--cni-bin-dir".into(), plugins.clone()];
        args.extend(version_args());
        args.extend(extra);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = kubesim(&state, &argv);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{want}: {}",
            describe(&argv, &out)
        );
        assert!(!state.exists(), "nothing left behind after {want}");
    }
    let out = kubesim(&state, &["run-pod", "web"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no cluster in"),
        "{}",
        describe(&["run-pod"], &out)
    );
    let out = kubesim(&state, &["down"]);
    assert!(out.status.success(), "down without a cluster is fine");
}

#[test]
fn demo_passes() {
    require_root!();
    let dir = TempDir::new("demo");
    let state = dir.path().join("state");
    let plugins = common::harness_plugin_dir().display().to_string();
    let mut args = vec!["demo".to_string(), "--cni-bin-dir".into(), plugins];
    args.extend(["--runtime".into(), "builtin".into()]);
    args.extend(version_args());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kubesim(&state, &argv);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&argv, &out));
    assert!(stdout.contains("runtime builtin"), "{stdout}");
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    assert!(stdout.contains("checks passed"), "{stdout}");
    for check in [
        "[PASS] 10 pods on one node all listen on :8080",
        "[PASS] a hostPort is an opt-in DNAT on the node's address: node-1:5000 reaches one pod's :8080 from node-2",
        "[PASS] a second pod asking for hostPort 5000 on that node is refused by portmap and leaves nothing behind",
        "[PASS] two containers in one pod talk over 127.0.0.1",
        "[PASS] after deleting all pods no lease, veth, masquerade or hostPort (DNAT) rule, or cache entry is left",
    ] {
        assert!(stdout.contains(check), "missing {check:?}: {stdout}");
    }
    assert!(
        stdout.contains("is already allocated"),
        "portmap's own error is shown: {stdout}"
    );
    assert!(
        stdout.contains(
            "a hostPort is an opt-in NAT on the node's address, and two pods cannot share one"
        ),
        "the demo says what the contrast shows: {stdout}"
    );
    assert!(!state.exists(), "demo tears everything down");
}

#[test]
fn host_port_twice_on_one_node_refuses_the_second() {
    require_root!();
    let c = Cluster::up(2);
    let out = c.ok(&[
        "run-pod",
        "a",
        "--node",
        "node-1",
        "--host-port",
        "5000:8080",
    ]);
    assert!(out.contains("host-ports=5000:8080/tcp"), "{out}");
    c.run_pod("client", "node-2");
    let node1 = c.node("node-1")["underlay_ip"]
        .as_str()
        .expect("underlay ip")
        .to_string();
    // From the other node, at node-1's address: the DNAT to a's :8080.
    c.reach("client", &node1, 5000, "default/a/app");
    let cache_before = cache_entries(&c, "node-1");
    let nat_before = c.in_node("node-1", &["iptables", "-w", "-t", "nat", "-S"]);
    let err = c.fails(&[
        "run-pod",
        "b",
        "--node",
        "node-1",
        "--host-port",
        "5000:8080",
    ]);
    assert!(
        err.contains("plugin type=\"portmap\" failed (ADD)")
            && err.contains("host port tcp 0.0.0.0:5000 is already allocated"),
        "{err}"
    );
    // Nothing of b is left: no pod, veth, cache entry, lease or rule.
    let pods = c.state()["pods"].clone();
    assert!(
        !pods
            .as_array()
            .expect("pods")
            .iter()
            .any(|p| p["name"] == "b"),
        "{pods}"
    );
    assert_eq!(cache_entries(&c, "node-1"), cache_before);
    assert_eq!(lease_count(&c, "node-1"), 1, "only a's lease");
    let veths = c.in_node("node-1", &["ip", "-o", "link", "show", "type", "veth"]);
    assert_eq!(veths.lines().count(), 2, "ul0 and a's veth: {veths}");
    assert_eq!(
        c.in_node("node-1", &["iptables", "-w", "-t", "nat", "-S"]),
        nat_before
    );
    c.reach("client", &node1, 5000, "default/a/app");
    // The same host port on another node is another address: fine.
    c.ok(&[
        "run-pod",
        "b",
        "--node",
        "node-2",
        "--host-port",
        "5000:8080",
    ]);
    let node2 = c.node("node-2")["underlay_ip"]
        .as_str()
        .expect("underlay ip")
        .to_string();
    c.run_pod("client-1", "node-1");
    c.reach("client-1", &node2, 5000, "default/b/app");
    // DEL removes a's rules (portmap's shared chains stay, as in the reference).
    c.ok(&["delete-pod", "a"]);
    let nat = c.in_node("node-1", &["iptables", "-w", "-t", "nat", "-S"]);
    assert!(
        !nat.contains("CNI-DN-") && !nat.contains("-j DNAT"),
        "a's hostPort rules left:\n{nat}"
    );
    let err = c.fails(&["run-pod", "c", "--host-port", "5000"]);
    assert!(err.contains("HOST:CONTAINER"), "{err}");
}
