//! Debian's podman (CNI backend) drives the plugins under test: a podman
//! network on our `bridge` + `host-local` + `portmap`, two busybox
//! containers that fetch each other's hostname over HTTP by IP, a published
//! port reached from the node, and after `podman rm -f` no lease, veth,
//! libcni cache entry, netns, iptables/nft rule or conmon is left.
//!
//! Isolation: the test thread enters a fresh node netns; every podman
//! command runs there, inside one private mount namespace (held open by
//! [`HeldMounts`]) where temp dirs are bound over the paths podman
//! hard-codes: `/var/lib/cni` (libcni's cache), `/run/netns` (podman's
//! netns mounts, which must outlive each command), `/var/lib/containers`
//! (containers/image's blob cache), `/run/containers` and `/etc/cni/net.d`.
//! Everything else is private by configuration: `--root`, `--runroot`,
//! `--tmpdir`, containers.conf (`$CONTAINERS_CONF`), storage.conf
//! (`$CONTAINERS_STORAGE_CONF`), registries.conf (no registry is used: the
//! image is imported from a busybox rootfs built here). Containers get a
//! cgroup parent of their own, removed at the end.
//!
//! The sandbox's lack of CAP_SYS_RESOURCE: podman's default rlimits
//! (nofile and nproc raised to 1048576 / 4194304) cannot be set, so
//! containers.conf sets low `default_ulimits`.
//!
//! conmon daemonizes: the test process makes itself a child subreaper so the
//! conmons it orphans are its own, checked gone and reaped by PID.
//!
//! Plugins under test: ours, or `$CNI_RS_CLIENT_PLUGINS` (e.g. `/usr/lib/cni`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cni_test_support::clients::*;
use cni_test_support::common::*;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::json;

const NET: &str = "clipod";
const BRIDGE: &str = "cni-pod0";
const SUBNET_PREFIX: &str = "10.244.63.";
const GATEWAY: &str = "10.244.63.1";
const IMAGE: &str = "localhost/cni-rs/busybox:latest";
/// Port the containers serve on, and the node port published for `a`.
const PORT: u16 = 8080;
const HOST_PORT: u16 = 18080;
/// Upper bound for any wait (never hit when healthy).
const WAIT: Duration = Duration::from_secs(30);

/// One container as `podman inspect` describes it.
#[derive(Debug, Clone)]
struct Container {
    name: String,
    id: String,
    ip: String,
    conmon: i32,
    pid: i32,
}

/// A private podman "installation": config, storage and the mount namespace
/// its commands run in. Field order = drop order.
struct Podman {
    mounts: HeldMounts,
    /// Container and conmon PIDs seen, killed by PID if a failed test
    /// leaves them.
    started: Vec<Container>,
    cgroup_parent: String,
    dir: TempDir,
}

impl Podman {
    /// Writes the configs and the conflist (bridge + host-local + portmap
    /// from `plugins`) and mounts the private paths.
    fn new(plugins: &Path) -> Podman {
        let dir = TempDir::new("podman");
        let d = dir.path();
        for sub in [
            "netd",
            "data",
            "cni-cache",
            "netns",
            "var-lib-containers",
            "run-containers",
            "root",
            "runroot",
            "tmp",
        ] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir podman dirs");
        }
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": NET,
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": true,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local",
                          "ranges": [[{"subnet": format!("{SUBNET_PREFIX}0/24"),
                                       "gateway": GATEWAY}]],
                          "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": d.join("data")}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        write(&d.join("netd/clipod.conflist"), &conflist.to_string());
        let containers_conf = format!(
            r#"[containers]
# No CAP_SYS_RESOURCE in the sandbox: rlimits may only be lowered.
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{netd}"
default_network = "{NET}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
# File locks under tmp_dir instead of a machine-wide /dev/shm segment.
lock_type = "file"
runtime = "runc"
static_dir = "{root}/libpod"
volume_path = "{root}/volumes"
tmp_dir = "{tmp}"
"#,
            plugins = plugins.display(),
            netd = d.join("netd").display(),
            root = d.join("root").display(),
            tmp = d.join("tmp").display(),
        );
        write(&d.join("containers.conf"), &containers_conf);
        // vfs: no overlay-on-whatever-/tmp-is dependence; the image is 2 MB.
        let storage_conf = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            d.join("root").display(),
            d.join("runroot").display()
        );
        write(&d.join("storage.conf"), &storage_conf);
        write(
            &d.join("registries.conf"),
            "unqualified-search-registries = []\n",
        );
        let mounts = PrivateMounts::new()
            .bind(&d.join("netd"), "/etc/cni/net.d")
            .bind(&d.join("cni-cache"), "/var/lib/cni")
            .bind(&d.join("netns"), "/run/netns")
            .bind(&d.join("var-lib-containers"), "/var/lib/containers")
            .bind(&d.join("run-containers"), "/run/containers")
            .hold();
        Podman {
            mounts,
            started: Vec::new(),
            cgroup_parent: format!("/cni-rs-test-podman-{}", std::process::id()),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = self.mounts.command(&["podman"]);
        cmd.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(args)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run podman")
    }

    /// Runs podman, panicking with its output unless it exits 0; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman run -d` of a busybox httpd serving `/etc` (so `/hostname`
    /// names the container) on [`PORT`], plus `extra` flags.
    fn run_httpd(&mut self, name: &str, extra: &[&str]) -> Container {
        let (port, parent) = (PORT.to_string(), self.cgroup_parent.clone());
        let mut args = vec!["run", "-d", "--name", name, "--network", NET];
        args.extend_from_slice(&["--cgroup-parent", parent.as_str()]);
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "httpd", "-f", "-p", port.as_str(), "-h", "/etc"]);
        self.ok(&args);
        let fields = self.ok(&[
            "inspect",
            name,
            "--format",
            "{{.Id}} {{.State.ConmonPid}} {{.State.Pid}} \
             {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        ]);
        let f: Vec<&str> = fields.split_whitespace().collect();
        assert_eq!(f.len(), 4, "podman inspect {name}: {fields}");
        let c = Container {
            name: name.to_string(),
            id: f[0].to_string(),
            conmon: f[1].parse().expect("conmon pid"),
            pid: f[2].parse().expect("container pid"),
            ip: f[3].to_string(),
        };
        self.started.push(c.clone());
        c
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("data").join(NET)
    }

    fn cni_cache(&self) -> PathBuf {
        self.dir.path().join("cni-cache")
    }
}

impl Drop for Podman {
    /// On a failed test: removes what is left through podman, then kills
    /// leftover container processes and conmons by PID. Always: reaps
    /// orphaned conmons, removes the (empty) cgroups.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.run(&["rm", "-af", "-t", "0"]);
            // A killed conmon hands its container process to us (the
            // nearest subreaper): conmons first, then the containers.
            for pids in [
                self.started.iter().map(|c| c.conmon).collect::<Vec<_>>(),
                self.started.iter().map(|c| c.pid).collect(),
            ] {
                for &pid in &pids {
                    if is_our_child(pid) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                for pid in pids {
                    let _ = wait_gone(pid);
                }
            }
        }
        reap_orphaned_conmons();
        cni_test_support::clients::remove_cgroups(&self.cgroup_parent);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Command name, state and parent of `pid` (from `/proc/<pid>/stat`).
fn stat_of(pid: i32) -> Option<(String, char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

fn is_our_child(pid: i32) -> bool {
    stat_of(pid).is_some_and(|(_, _, ppid)| ppid == std::process::id() as i32)
}

/// Waits until `pid` has exited, reaping it if it is our (adopted) child.
/// Err if it is still running after [`WAIT`].
fn wait_gone(pid: i32) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if is_our_child(pid) {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) => return Ok(()),
                Err(e) => return Err(format!("waitpid {pid}: {e}")),
            }
        } else if stat_of(pid).is_none() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("process {pid} {:?} still running", stat_of(pid)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reaps exited conmons adopted by this process (those of `podman exec`
/// sessions included); nothing else, so no `Child` of std is stolen.
fn reap_orphaned_conmons() {
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            if let Some((comm, 'Z', _)) = stat_of(pid) {
                if comm == "conmon" {
                    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                }
            }
        }
    }
}

/// Runs a busybox wget until it succeeds or `WAIT` passes (the server may
/// still be starting); its output. Each try is bounded by busybox
/// `timeout`: Debian's static busybox 1.35 segfaults on `wget -T`.
fn fetch(what: &str, mut get: impl FnMut() -> Output) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = get();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True when every tool this test drives is installed; otherwise fails
/// under CI, or says why the test is skipped.
fn prerequisites() -> bool {
    for tool in [
        "podman",
        "conmon",
        "runc",
        "nsenter",
        "unshare",
        "iptables-save",
    ] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            missing(&format!("{tool} not installed (see .ci/run)"));
            return false;
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        missing("/bin/busybox missing (apt-get install busybox-static)");
        return false;
    }
    true
}

#[test]
fn podman_cni_two_containers_reach_each_other_and_rm_leaves_nothing() {
    require_root!();
    if !prerequisites() {
        return;
    }
    // conmon double-forks: adopt it, so it is reaped and checked by PID.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let plugins = plugins_under_test();
    let reference = plugins == Path::new(REFERENCE_CNI_PATH);
    report(&format!(
        "client: {} (CNI backend); {}; {}",
        first_line(&["podman", "--version"]),
        first_line(&["conmon", "--version"]),
        first_line(&["runc", "--version"])
    ));
    report(&format!("plugins: {}", describe_plugins(&plugins)));
    let image = TempDir::new("podman-image");
    let rootfs = busybox_rootfs_tar(image.path());

    let node = NodeNs::enter();
    node.assert_inside();
    let mut p = Podman::new(&plugins);
    p.ok(&[
        "import",
        "--change",
        "CMD=/bin/sh",
        rootfs.to_str().expect("utf-8 path"),
        IMAGE,
    ]);
    let networks = p.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        networks.lines().any(|n| n == NET),
        "podman does not list {NET}: {networks}"
    );

    let published = format!("{HOST_PORT}:{PORT}");
    let a = p.run_httpd("a", &["-p", &published]);
    let b = p.run_httpd("b", &[]);
    report(&format!("containers: a={} b={}", a.ip, b.ip));
    for c in [&a, &b] {
        assert!(c.ip.starts_with(SUBNET_PREFIX), "{c:?}");
        let lease = std::fs::read(p.store().join(&c.ip)).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&lease),
            format!("{}\r\neth0", c.id),
            "lease of {}",
            c.ip
        );
    }
    assert_ne!(a.ip, b.ip);
    assert_eq!(leases(&p.store()).len(), 2, "one lease per container");
    assert_eq!(veth_names().len(), 2, "one host veth per container");
    assert_eq!(cache_entries(&p.cni_cache()).len(), 2, "libcni cache");
    assert!(
        !firewall_lines_with(&a.id).is_empty(),
        "no masquerade rule for a"
    );

    // Each container fetches the other's /etc/hostname (podman sets it to
    // the short id) from its IP: both directions through the bridge.
    for (from, to) in [(&a, &b), (&b, &a)] {
        let url = format!("http://{}:{PORT}/hostname", to.ip);
        let body = fetch(&format!("{} -> {url}", from.name), || {
            p.run(&[
                "exec",
                from.name.as_str(),
                "timeout",
                "5",
                "wget",
                "-q",
                "-O",
                "-",
                url.as_str(),
            ])
        });
        assert_eq!(body, to.id[..12], "{} fetched {url}", from.name);
    }
    // The published port, from the node (portmap's DNAT in OUTPUT), to
    // the node's address on the bridge and to localhost (portmap's SNAT).
    for host in [GATEWAY, "127.0.0.1"] {
        let url = format!("http://{host}:{HOST_PORT}/hostname");
        let body = fetch(&format!("node -> {url}"), || {
            Command::new("/bin/busybox")
                .args(["timeout", "5", "/bin/busybox", "wget", "-q", "-O", "-"])
                .arg(&url)
                .output()
                .expect("run busybox wget")
        });
        assert_eq!(body, a.id[..12], "node fetched {url}");
    }

    p.ok(&["rm", "-f", "-t", "0", "a", "b"]);
    for c in [&a, &b] {
        wait_gone(c.conmon).unwrap_or_else(|e| panic!("conmon of {}: {e}", c.name));
        wait_gone(c.pid).unwrap_or_else(|e| panic!("container {}: {e}", c.name));
    }
    assert_eq!(p.ok(&["ps", "-aq"]), "", "podman rm -f left containers");
    assert_eq!(leases(&p.store()), Vec::<String>::new(), "leases left");
    assert_no_veths_left("after podman rm -f");
    let cached = cache_entries(&p.cni_cache());
    assert!(cached.is_empty(), "libcni cache entries left: {cached:?}");
    let netns = dir_names(&p.dir.path().join("netns"));
    assert!(netns.is_empty(), "podman netns left: {netns:?}");
    let mut rules = Vec::new();
    for needle in [&a.id, &b.id, &a.ip, &b.ip, &format!("{HOST_PORT}")] {
        rules.extend(firewall_lines_with(needle));
    }
    assert!(rules.is_empty(), "iptables/nft rules left: {rules:#?}");
    if reference {
        report("reference plugins: validated the test");
    }
}
