//! Debian's containerd + runc drive the plugins under test through
//! `ctr run --cni --rm`: two busybox containers ping each other through the
//! bridge, and once they exit, no lease, veth, cache entry or (for ours)
//! masquerade rule is left.
//!
//! Isolation: the test thread enters a fresh node netns; containerd (under
//! `tini -s`, so exited shims are reaped) runs there in a private mount
//! namespace where temp dirs are bound over the paths ctr and the runc shim
//! hard-code: `/etc/cni/net.d` (first conflist), `/opt/cni/bin` (our plugins;
//! Debian's ctr also searches `/usr/lib/cni` for the rest), `/var/lib/cni`
//! (libcni's cache), `/run/containerd` (state, shim sockets, runc root, ctr's
//! fifos). Every `ctr` call joins that mount namespace with `nsenter`. Root
//! dir and socket are temp too; the daemon is stopped by PID. No registry is
//! used: the image is built here from `busybox-static` and imported.
//!
//! Plugins under test: ours, or `$CNI_RS_CLIENT_PLUGINS` (e.g. `/usr/lib/cni`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cni_test_support::clients::*;
use cni_test_support::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NET: &str = "clictr";
const BRIDGE: &str = "cni-ctr0";
const SUBNET_PREFIX: &str = "10.244.62.";
const GATEWAY: &str = "10.244.62.1";
const CTR_NS: &str = "cnirs";
const IMAGE: &str = "localhost/cni-rs/busybox:latest";
/// Upper bound for any wait on containerd or a container (never hit when healthy).
const WAIT: Duration = Duration::from_secs(60);

/// Builds a one-layer OCI image archive from the static busybox, with the
/// `io.containerd.image.name` annotation `ctr image import` uses for its name.
fn build_busybox_image(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    let rootfs = dir.join("rootfs");
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy /bin/busybox");
    let list = run_ok(Command::new(busybox).arg("--list"));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet symlink");
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");

    let layout = dir.join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");
    let layer = dir.join("layer.tar");
    run_ok(
        Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .args(["--mtime=2024-01-01 00:00:00Z", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg("."),
    );
    let blob = |bytes: &[u8]| -> (String, usize) {
        let digest = format!("{:x}", Sha256::digest(bytes));
        std::fs::write(blobs.join(&digest), bytes).expect("write blob");
        (format!("sha256:{digest}"), bytes.len())
    };
    let (layer_digest, layer_size) = blob(&std::fs::read(&layer).expect("read layer"));
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = blob(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = blob(manifest.to_string().as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": IMAGE,
                                       "org.opencontainers.image.ref.name": "latest"}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let archive = dir.join("busybox-oci.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .args(["oci-layout", "index.json", "blobs"]),
    );
    archive
}

/// A containerd daemon private to one test; stopped by PID on drop.
struct Containerd {
    /// `tini -s` (pid of the process we spawned: unshare → sh → exec tini).
    tini: Child,
    /// The conflist installed as /etc/cni/net.d/10-clictr.conflist.
    conflist: Value,
    dir: TempDir,
    cni_cache: TempDir,
    data: TempDir,
    _netd: TempDir,
    _bin: TempDir,
    _mounts: PrivateMounts,
}

impl Containerd {
    /// Starts containerd in the calling thread's netns (the node), with
    /// `plugins` (bridge, host-local) at `/opt/cni/bin` and our conflist first
    /// in `/etc/cni/net.d`.
    fn start(plugins: &Path) -> Containerd {
        let dir = TempDir::new("containerd");
        let (netd, bin, cni_cache, data, run) = (
            TempDir::new("ctr-netd"),
            TempDir::new("ctr-bin"),
            TempDir::new("ctr-cnicache"),
            TempDir::new("ctr-data"),
            dir.path().join("run"),
        );
        std::fs::create_dir_all(&run).expect("mkdir run");
        for p in ["bridge", "host-local"] {
            std::fs::copy(plugins.join(p), bin.path().join(p))
                .unwrap_or_else(|e| panic!("copy {p} from {}: {e}", plugins.display()));
        }
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": NET,
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": true,
                "ipam": {"type": "host-local",
                         "ranges": [[{"subnet": format!("{SUBNET_PREFIX}0/24")}]],
                         "routes": [{"dst": "0.0.0.0/0"}],
                         "dataDir": data.path()}
            }]
        });
        std::fs::write(netd.path().join("10-clictr.conflist"), conflist.to_string())
            .expect("write conflist");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "/run/containerd"
# No CRI (not used by ctr); no /opt/containerd dir made on the machine.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
"#,
            root = dir.path().join("root").display(),
            sock = dir.path().join("containerd.sock").display(),
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write config.toml");
        let mounts = PrivateMounts::new()
            .bind(netd.path(), "/etc/cni/net.d")
            .bind(bin.path(), "/opt/cni/bin")
            .bind(cni_cache.path(), "/var/lib/cni")
            .bind(&run, "/run/containerd");
        let argv: Vec<OsString> = vec![
            "tini".into(),
            "-s".into(),
            "--".into(),
            "containerd".into(),
            "--config".into(),
            dir.path().join("config.toml").into(),
        ];
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log file");
        let tini = mounts
            .command(&argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let daemon = Containerd {
            tini,
            conflist,
            dir,
            cni_cache,
            data,
            _netd: netd,
            _bin: bin,
            _mounts: mounts,
        };
        daemon.wait_ready();
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.dir.path().join("containerd.sock").exists()
                && self.ctr(&["version"]).status.success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ctr` inside the daemon's mount namespace (net: the calling thread's).
    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.tini.id()))
            .arg("--")
            .arg("ctr")
            .arg("-a")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["-n", CTR_NS])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().expect("run ctr")
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}):\nstdout: {}\nstderr: {}\ncontainerd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn store(&self) -> PathBuf {
        self.data.path().join(NET)
    }

    /// The IP host-local leased to `container_id` (lease file "<id>\r\neth0").
    fn lease_of(&self, container_id: &str) -> Option<String> {
        leases(&self.store()).into_iter().find(|ip| {
            std::fs::read(self.store().join(ip))
                .map(|b| b == format!("{container_id}\r\neth0").as_bytes())
                .unwrap_or(false)
        })
    }
}

impl Drop for Containerd {
    /// Kills what is left (only on a failed test: a passing one has no task
    /// left), then stops containerd and any shim reparented to `tini -s`, all
    /// by PID, and tini itself. The mount namespace goes with them.
    fn drop(&mut self) {
        let tasks = self.ctr(&["task", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
            let _ = self.ctr(&["task", "kill", "-a", "-s", "SIGKILL", id]);
        }
        let tini = self.tini.id();
        for signal in [Signal::SIGTERM, Signal::SIGKILL] {
            for pid in children_of(tini) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
            if wait_bounded(&mut self.tini, Duration::from_secs(15)) {
                break;
            }
        }
        if self.tini.try_wait().ok().flatten().is_none() {
            let _ = self.tini.kill();
            let _ = self.tini.wait();
        }
        // runc removes a task's own cgroup, not the namespace's parent. Only
        // the parent, and only once empty: another test's containerd may be
        // creating a task cgroup under it right now.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join(CTR_NS));
        }
    }
}

/// Direct children of `pid` (containerd and reparented shims under tini).
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The `ctr run` client processes of a test; killed by PID if the test
/// fails before they exit.
struct CtrRuns(Vec<(String, Child)>);

impl Drop for CtrRuns {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Waits for `child` at most `limit`; false if it is still running.
fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn task_running(d: &Containerd, id: &str) -> bool {
    d.ctr(&["task", "ls"])
        .stdout
        .split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&id) && cols.last() == Some(&"RUNNING")
        })
}

/// True when every tool the containerd tests drive is installed; otherwise
/// fails under CI, or says why the test is skipped.
fn prerequisites() -> bool {
    for tool in ["containerd", "ctr", "runc", "tini", "nsenter", "unshare"] {
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

/// A running private containerd with the busybox image imported, in a node
/// netns the calling test thread has entered. Field order = drop order.
struct Setup {
    d: Containerd,
    plugins: PathBuf,
    reference: bool,
    _image: TempDir,
    _node: NodeNs,
}

fn setup() -> Setup {
    let plugins = plugins_under_test();
    let reference = plugins == Path::new(REFERENCE_CNI_PATH);
    report(&format!(
        "client: {}, ctr run --cni; {}; {}",
        first_line(&["containerd", "--version"]),
        first_line(&["runc", "--version"]),
        first_line(&["tini", "--version"])
    ));
    report(&format!("plugins: {}", describe_plugins(&plugins)));
    let image = TempDir::new("ctr-image");
    let archive = build_busybox_image(image.path());
    let node = NodeNs::enter();
    node.assert_inside();
    let d = Containerd::start(&plugins);
    d.ctr_ok(&["image", "import", archive.to_str().expect("utf-8 path")]);
    Setup {
        d,
        plugins,
        reference,
        _image: image,
        _node: node,
    }
}

#[test]
fn ctr_run_cni_two_containers_ping_each_other_and_leave_nothing() {
    require_root!();
    if !prerequisites() {
        return;
    }
    let s = setup();
    let (d, reference) = (&s.d, s.reference);

    // Two containers, each held by a foreground `ctr run --cni --rm`
    // (ctr refuses --rm with --detach); ctr does ADD before the task starts
    // and DEL after it exits.
    let mut runs = CtrRuns(Vec::new());
    for id in ["a", "b"] {
        let child = d
            .ctr_command(&["run", "--cni", "--rm", IMAGE, id, "sleep", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ctr run");
        runs.0.push((id.to_string(), child));
    }
    for (id, child) in runs.0.iter_mut() {
        wait_until(&format!("container {id} running with a lease"), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "ctr run {id} exited early ({status}); containerd log:\n{}",
                    d.log()
                );
            }
            task_running(d, id) && d.lease_of(&format!("{CTR_NS}-{id}")).is_some()
        });
    }
    let ip_a = d.lease_of("cnirs-a").expect("lease of a");
    let ip_b = d.lease_of("cnirs-b").expect("lease of b");
    report(&format!("containers: a={ip_a} b={ip_b}"));
    assert!(ip_a.starts_with(SUBNET_PREFIX) && ip_b.starts_with(SUBNET_PREFIX));
    assert_ne!(ip_a, ip_b);
    assert_eq!(veth_names().len(), 2, "one host veth per container");

    // Inside the containers: the address on eth0, then ping each other and the gateway.
    let addr = d.ctr_ok(&[
        "task",
        "exec",
        "--exec-id",
        "addr-a",
        "a",
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(
        addr.contains(&format!("inet {ip_a}/24")),
        "a's eth0: {addr}"
    );
    d.ctr_ok(&[
        "task",
        "exec",
        "--exec-id",
        "ping-a",
        "a",
        "ping",
        "-c",
        "3",
        "-W",
        "1",
        &ip_b,
    ]);
    d.ctr_ok(&[
        "task",
        "exec",
        "--exec-id",
        "ping-b",
        "b",
        "ping",
        "-c",
        "3",
        "-W",
        "1",
        &ip_a,
    ]);
    d.ctr_ok(&[
        "task",
        "exec",
        "--exec-id",
        "ping-gw",
        "b",
        "ping",
        "-c",
        "2",
        "-W",
        "1",
        GATEWAY,
    ]);
    let cached = cache_entries(d.cni_cache.path());
    assert_eq!(
        cached.len(),
        2,
        "libcni cache entries after ADD: {cached:?}"
    );

    // Stop both: `ctr run --rm` then sends DEL with CNI_NETNS="" and removes the container.
    for (id, child) in runs.0.iter_mut() {
        d.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
        if !wait_bounded(child, WAIT) {
            let _ = child.kill();
            panic!("ctr run {id} did not exit after its task was killed");
        }
    }
    for (id, child) in runs.0.iter_mut() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        // The task was SIGKILLed: ctr exits with the task's status (137), and
        // must not report a CNI error from the DEL on the way out.
        assert!(
            !err.contains("cni") && !err.contains("plugin type"),
            "ctr run {id} reported a CNI error on removal: {err}"
        );
    }
    assert_eq!(
        leases(&d.store()),
        Vec::<String>::new(),
        "leases left after the containers exited"
    );
    assert_no_veths_left("after the containers exited");
    let cached = cache_entries(d.cni_cache.path());
    assert!(cached.is_empty(), "libcni cache entries left: {cached:?}");
    let containers = d.ctr_ok(&["container", "ls", "-q"]);
    assert!(
        containers.trim().is_empty(),
        "--rm left containers: {containers}"
    );
    let masq = firewall_lines_with(NET);
    if reference {
        // The reference finds the IPs to un-masquerade on the veth, which is gone
        // when the DEL arrives with CNI_NETNS="": it leaks these rules.
        report(&format!(
            "reference plugins leaked {} nat rule line(s) of {NET}",
            masq.len()
        ));
    } else {
        assert!(
            masq.is_empty(),
            "masquerade rules left after DEL with empty CNI_NETNS: {masq:?}"
        );
    }
}

/// `ctr run -d` + `ctr task delete` (a detached container removed without
/// `--rm`) never sends DEL: the lease and the masquerade rules stay. A CNI
/// 1.1 GC through our bridge, with no valid attachment left, reclaims both.
#[test]
fn ctr_task_delete_sends_no_del_and_gc_reclaims_the_lease() {
    require_root!();
    if !prerequisites() {
        return;
    }
    let s = setup();
    let d = &s.d;
    d.ctr_ok(&["run", "--cni", "-d", IMAGE, "c", "sleep", "120"]);
    wait_until("container c running with a lease", || {
        task_running(d, "c") && d.lease_of("cnirs-c").is_some()
    });
    let ip = d.lease_of("cnirs-c").expect("lease of c");
    d.ctr_ok(&["task", "kill", "-s", "SIGKILL", "c"]);
    wait_until("task c stopped", || !task_running(d, "c"));
    d.ctr_ok(&["task", "delete", "c"]);
    d.ctr_ok(&["container", "delete", "c"]);
    assert_eq!(
        leases(&d.store()),
        vec![ip.clone()],
        "containerd 1.6 sends no DEL for `ctr task delete`: the lease of {ip} should have leaked \
         (if containerd now sends DEL, update README's client notes)"
    );
    assert_no_veths_left("the veth goes with the container's netns");
    if s.reference {
        report(&format!(
            "reference plugins (CNI <= 1.0.0) have no GC: lease of {ip} stays"
        ));
        return;
    }
    assert!(
        !firewall_lines_with("cnirs-c").is_empty(),
        "masquerade rules of c before GC"
    );

    // What libcni's GCNetworkList sends: the plugin object in 1.1.0 with
    // the valid attachments (none: c is gone), env CNI_COMMAND + CNI_PATH.
    let mut conf = d.conflist["plugins"][0].clone();
    conf["cniVersion"] = json!("1.1.0");
    conf["name"] = d.conflist["name"].clone();
    conf["cni.dev/valid-attachments"] = json!([]);
    let call = PluginCall::default()
        .env("CNI_COMMAND", "GC")
        .env("CNI_PATH", &s.plugins.display().to_string())
        .stdin(conf.to_string());
    let run = run_plugin(&s.plugins.join("bridge"), &call).expect_ok();
    assert!(run.stdout.trim().is_empty(), "GC prints nothing: {run:#?}");
    assert_eq!(
        leases(&d.store()),
        Vec::<String>::new(),
        "GC left the leaked lease"
    );
    let rules = firewall_lines_with(NET);
    assert!(rules.is_empty(), "GC left masquerade rules: {rules:#?}");
}
