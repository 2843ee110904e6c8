//! Helpers shared by the integration tests: throwaway network namespaces,
//! unique temp dirs, and running a plugin binary through the CNI protocol.
//!
//! Network safety: every test that touches the kernel first calls
//! [`NodeNs::enter`], which moves the *test thread* into a fresh network
//! namespace (the fake "node") and asserts that it is not the machine's own.
//! Processes spawned from that thread inherit it. The namespace disappears
//! with the thread, so nothing leaks even when the test panics.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// True when running as root; tests that need root call [`require_root!`].
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skip a root-only test when not root, but never under `CI=true`.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
                panic!("CI=true: this test needs root and must not be skipped");
            }
            eprintln!("skipped: needs root (network namespaces); run as root to execute it");
            return;
        }
    };
}

fn netns_inode(path: &str) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
}

/// Inode of the network namespace the process started in (the machine's).
pub fn root_netns_inode() -> u64 {
    netns_inode("/proc/self/ns/net")
}

/// The current thread's network namespace inode.
pub fn thread_netns_inode() -> u64 {
    netns_inode("/proc/thread-self/ns/net")
}

/// What a test could leak into the machine: links, CNI nat rules and nft
/// tables of the machine's own netns, `/run/netns` entries, and the CNI
/// paths of the machine's filesystem. Taken when a test enters its node and
/// compared when the node is dropped (the leak check after every test).
#[derive(Debug, PartialEq, Eq)]
pub struct MachineSnapshot {
    links: Vec<String>,
    cni_nat_rules: Vec<String>,
    nft_tables: Vec<String>,
    run_netns: Vec<String>,
    cni_paths: Vec<(String, bool)>,
}

impl MachineSnapshot {
    /// Reads everything from the calling thread's netns (read-only commands).
    pub fn take() -> MachineSnapshot {
        let lines = |argv: &[&str]| -> Vec<String> {
            Command::new(argv[0])
                .args(&argv[1..])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut links: Vec<String> = lines(&["ip", "-o", "link", "show"])
            .iter()
            .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
            .collect();
        links.sort();
        let cni_nat_rules = ["iptables-save", "ip6tables-save"]
            .iter()
            .flat_map(|tool| lines(&[tool, "-t", "nat"]))
            .filter(|l| l.contains("CNI-") || l.contains("cni"))
            .collect();
        let mut run_netns: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        run_netns.sort();
        let cni_paths = ["/var/lib/cni", "/etc/cni/net.d", "/opt/cni/bin"]
            .iter()
            .map(|p| (p.to_string(), Path::new(p).exists()))
            .collect();
        MachineSnapshot {
            links,
            cni_nat_rules,
            nft_tables: lines(&["nft", "list", "tables"]),
            run_netns,
            cni_paths,
        }
    }

    /// Takes the snapshot in the namespace `ns` refers to, from a helper
    /// thread, so the test thread stays in its node.
    pub fn take_in(ns: &std::fs::File) -> MachineSnapshot {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the machine netns for the leak check");
                MachineSnapshot::take()
            })
            .join()
            .expect("leak check thread")
        })
    }
}

/// The fake node: the calling test thread moved into a fresh netns with `lo` up.
/// When dropped at the end of a test that did not fail, it checks that the
/// machine's own netns and CNI paths are exactly as before the test.
pub struct NodeNs {
    /// `/proc/<pid>/task/<tid>/ns/net` of the test thread: usable by `nsenter`.
    pub path: PathBuf,
    machine_ns: std::fs::File,
    machine_before: MachineSnapshot,
}

impl Drop for NodeNs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let after = MachineSnapshot::take_in(&self.machine_ns);
        assert_eq!(
            self.machine_before, after,
            "leak check: the machine's netns or CNI paths changed during this test"
        );
    }
}

impl NodeNs {
    /// Unshares the test thread's network namespace. Panics if that fails or
    /// if the thread somehow stays in the original namespace.
    pub fn enter() -> NodeNs {
        let machine_ns =
            std::fs::File::open("/proc/thread-self/ns/net").expect("open the original netns");
        let machine_before = MachineSnapshot::take();
        let before = thread_netns_inode();
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let after = thread_netns_inode();
        assert_ne!(before, after, "still in the original netns after unshare");
        // PID 1's netns may be unreadable in a sandbox; check it when we can.
        if let Ok(meta) = std::fs::metadata("/proc/1/ns/net") {
            assert_ne!(after, meta.ino(), "refusing to act in the root netns");
        }
        let status = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip link set lo up failed");
        NodeNs {
            path: PathBuf::from(format!(
                "/proc/{}/task/{}/ns/net",
                std::process::id(),
                nix::unistd::gettid()
            )),
            machine_ns,
            machine_before,
        }
    }

    /// Panics unless the calling thread is in this node's namespace; call
    /// before any command that changes kernel state.
    pub fn assert_inside(&self) {
        assert_eq!(
            thread_netns_inode(),
            netns_inode(self.path.to_str().expect("utf-8 path")),
            "not inside the test node netns"
        );
    }
}

/// A pod sandbox netns held open by a parked thread (the "pause" process).
/// Dropping it releases the thread, and the namespace vanishes.
pub struct PodNs {
    /// `/proc/<pid>/task/<tid>/ns/net` of the parked thread: pass as `CNI_NETNS`.
    pub path: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PodNs {
    /// Creates a fresh netns (with `lo` down, as a runtime would).
    pub fn new() -> PodNs {
        let (path_tx, path_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare pod netns");
            let path = format!(
                "/proc/{}/task/{}/ns/net",
                std::process::id(),
                nix::unistd::gettid()
            );
            path_tx
                .send(PathBuf::from(path))
                .expect("send pod netns path");
            let _ = stop_rx.recv();
        });
        let path = path_rx.recv().expect("pod netns thread died");
        PodNs {
            path,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Runs a command inside this pod netns (via `nsenter --net`).
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path.display()));
        cmd.args(argv);
        cmd.output().expect("run nsenter")
    }

    /// Panics (listing the pod's links) if `ifname` exists in the pod.
    pub fn assert_no_link(&self, ifname: &str) {
        let links = self.ip_json(&["link", "show"]);
        assert!(
            links
                .as_array()
                .is_some_and(|ls| ls.iter().all(|l| l["ifname"] != ifname)),
            "{ifname} still in the pod: {links}"
        );
    }

    /// `ip -j <args>` inside the pod, parsed.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut argv = vec!["ip", "-j"];
        argv.extend_from_slice(args);
        let out = self.exec(&argv);
        assert!(
            out.status.success(),
            "ip {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ip -j output is JSON")
    }
}

impl Drop for PodNs {
    /// Stops the parked thread and waits until its netns path is gone.
    /// Why wait: `join` returns when the thread has cleared its tid (early
    /// in the kernel's exit), but `/proc/<pid>/task/<tid>` lingers until the
    /// task is released a moment later; tests that check "the pod netns is
    /// gone" right after the drop must not race that.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// `ip -j <args>` in the calling thread's netns (the node), parsed.
pub fn ip_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(|b| b.is_ascii_whitespace()) {
        return serde_json::Value::Array(vec![]);
    }
    serde_json::from_slice(&out.stdout).expect("ip -j output is JSON")
}

/// A unique, empty temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("cni-rs-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    /// Like [`TempDir::new`], but on tmpfs (`/dev/shm`) when there is one:
    /// stores with tens of thousands of lease files should measure the
    /// plugin, not the disk.
    pub fn on_tmpfs(tag: &str) -> TempDir {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return TempDir::new(tag);
        }
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = shm.join(format!("cni-rs-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create tmpfs dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository's root (the workspace and its root package `cni`).
/// This crate sits at `tests/support`, so its own `CARGO_MANIFEST_DIR` is
/// two levels below.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support has a grandparent")
        .to_path_buf()
}

/// Where the running test executable was built: `target/[<triple>/]<profile>`
/// (the parent of its `deps/`), and the Cargo target dir above it.
struct BuildDirs {
    profile: PathBuf,
    target: PathBuf,
    /// `Some(<triple>)` when built with an explicit `--target`.
    triple: Option<std::ffi::OsString>,
}

fn build_dirs() -> BuildDirs {
    let exe = std::env::current_exe().expect("test executable path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps")
        .to_path_buf();
    let under = profile.parent().expect("profile dir has a parent");
    // Cargo marks its target dir with CACHEDIR.TAG; one level further up
    // means target/<triple>/<profile>.
    match under.parent() {
        Some(target) if target.join("CACHEDIR.TAG").exists() => BuildDirs {
            target: target.to_path_buf(),
            triple: under.file_name().map(ToOwned::to_owned),
            profile,
        },
        _ => BuildDirs {
            target: under.to_path_buf(),
            triple: None,
            profile,
        },
    }
}

/// `<target dir>/tmp`, what Cargo passes integration tests as
/// `CARGO_TARGET_TMPDIR` (this library is not one, so it derives it): for
/// build products kept between runs, such as the Go cache of `cnitool`.
pub fn target_tmp_dir() -> PathBuf {
    let dir = build_dirs().target.join("tmp");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Our executables are other packages of the workspace, so Cargo gives the
/// tests no `CARGO_BIN_EXE_*` for them, and `cargo test` does not build
/// them. The first call builds every binary of the workspace with the same
/// Cargo, profile and target as this test (a no-op when up to date, so the
/// binaries are never stale) and returns their directory:
/// `target/[<triple>/]<profile>`, the parent of this test's `deps/`.
/// They are built with the library's `test-hooks` feature (crash points),
/// which release builds leave out; the tests' own view of the library has
/// it too (the root's self dev-dependency), so the library is built once.
pub fn bin_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dirs = build_dirs();
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args([
            "build",
            "--workspace",
            "--bins",
            "--quiet",
            "--features",
            "cni/test-hooks",
            "--manifest-path",
        ]);
        cargo.arg(repo_root().join("Cargo.toml"));
        if dirs.profile.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        if let Some(triple) = &dirs.triple {
            cargo.arg("--target").arg(triple);
        }
        let status = cargo.status().expect("run cargo build for the binaries");
        assert!(
            status.success(),
            "cargo build of the workspace binaries failed"
        );
        dirs.profile
    })
}

/// One of our executables (see [`bin_dir`]).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Directory holding our plugin binaries: use as `CNI_PATH`.
pub fn our_cni_path() -> PathBuf {
    bin("host-local").parent().expect("bin dir").to_path_buf()
}

/// The plugins the harness tests drive: `CNI_RS_HARNESS_PLUGINS` if set
/// (e.g. a release or musl build), else [`our_cni_path`].
pub fn harness_plugin_dir() -> PathBuf {
    std::env::var_os("CNI_RS_HARNESS_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(our_cni_path)
}

/// Sorted names of the entries of `dir` (none if it cannot be read).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Lease files (named `<ip>`) in a host-local store dir `<dataDir>/<net>`.
pub fn lease_files(store: &Path) -> Vec<String> {
    dir_names(store)
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

/// Debian's reference plugins (package `containernetworking-plugins`).
pub const REFERENCE_CNI_PATH: &str = "/usr/lib/cni";

/// One plugin invocation: env (CNI_* etc.) and stdin.
#[derive(Clone, Debug, Default)]
pub struct PluginCall {
    pub env: BTreeMap<String, String>,
    pub stdin: Vec<u8>,
}

impl PluginCall {
    /// A call with the usual CNI env for `command`.
    pub fn new(
        command: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        cni_path: &Path,
    ) -> Self {
        let mut env = BTreeMap::new();
        env.insert("CNI_COMMAND".into(), command.into());
        env.insert("CNI_CONTAINERID".into(), container_id.into());
        env.insert("CNI_NETNS".into(), netns.into());
        env.insert("CNI_IFNAME".into(), ifname.into());
        env.insert("CNI_PATH".into(), cni_path.display().to_string());
        PluginCall {
            env,
            stdin: Vec::new(),
        }
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }
    pub fn stdin(mut self, s: impl Into<Vec<u8>>) -> Self {
        self.stdin = s.into();
        self
    }
}

/// The outcome of running a plugin.
#[derive(Debug)]
pub struct PluginRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub call: PluginCall,
    pub binary: PathBuf,
}

impl PluginRun {
    /// stdout parsed as JSON (panics with full context if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:#?}"))
    }
    /// Panics with the whole call unless the plugin exited 0.
    pub fn expect_ok(self) -> Self {
        assert_eq!(self.code, Some(0), "plugin failed:\n{self:#?}");
        self
    }
    /// Panics unless the plugin exited 1 with a CNI error of `code`; returns the error JSON.
    pub fn expect_err(&self, code: u64) -> serde_json::Value {
        assert_eq!(self.code, Some(1), "expected exit 1:\n{self:#?}");
        let v = self.json();
        assert_eq!(
            v["code"].as_u64(),
            Some(code),
            "wrong error code:\n{self:#?}"
        );
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "error without msg:\n{self:#?}"
        );
        v
    }
}

/// Runs `binary` with a clean env (plus PATH) and the call's env and stdin.
/// stdin is written from a separate thread to avoid pipe deadlocks.
pub fn run_plugin(binary: &Path, call: &PluginCall) -> PluginRun {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .envs(&call.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = call.stdin.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait plugin");
    let _ = writer.join();
    PluginRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        call: call.clone(),
        binary: binary.to_path_buf(),
    }
}

/// The addresses of a CNI result (any version), through the library's own
/// result parser.
pub fn result_nets(result: &serde_json::Value) -> Vec<ipnet::IpNet> {
    cni::spec::CniResult::from_json_any(result, "1.1.0")
        .unwrap_or_else(|e| panic!("not a CNI result ({e}): {result}"))
        .ips
        .iter()
        .map(|i| i.address)
        .collect()
}

/// Every config version a drop-in must accept.
pub const ALL_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Lists every file under `dir` with its bytes and mode, for byte-for-byte
/// comparisons of host-local stores.
pub fn tree_snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            let rel = p.strip_prefix(base).expect("prefix").display().to_string();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), (Vec::new(), meta.mode() & 0o7777));
                walk(base, &p, out);
            } else {
                out.insert(
                    rel,
                    (std::fs::read(&p).unwrap_or_default(), meta.mode() & 0o7777),
                );
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}
