//! Helpers for the real-client and differential tests (`tests/clients/`,
//! `tests/netns/differential.rs`): which plugin directory is under test, building
//! `cnitool`, running a client in a private mount namespace so that paths it
//! hard-codes (`/var/lib/cni`, `/etc/cni/net.d`, `/opt/cni/bin`) point at temp
//! dirs, and reading kernel state for comparisons.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::common::{our_cni_path, TempDir, REFERENCE_CNI_PATH};

/// True under `CI=true`, where a missing tool is a failure, never a skip.
pub fn is_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// A prerequisite is missing: panic under CI, otherwise say why the caller
/// is about to skip.
pub fn missing(what: &str) {
    if is_ci() {
        panic!("CI=true: {what}; the test must not be skipped");
    }
    report(&format!("skipped: {what}"));
}

/// Writes one line to the test process's real stderr. libtest captures
/// `println!`/`eprintln!` of passing tests, but CI logs must show which
/// client and version each real-client test drove.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The plugin directory under test: `$CNI_RS_CLIENT_PLUGINS` when set (e.g.
/// `/usr/lib/cni` to validate a test against the reference), else ours.
pub fn plugins_under_test() -> PathBuf {
    match std::env::var_os("CNI_RS_CLIENT_PLUGINS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => our_cni_path(),
    }
}

/// `CNI_PATH` for a client: the plugins under test first, then the reference
/// dir (a fallback for plugins we do not ship).
pub fn client_cni_path(plugins: &Path) -> String {
    format!("{}:{REFERENCE_CNI_PATH}", plugins.display())
}

/// One line naming a plugin dir and what its `bridge` answers to VERSION,
/// printed by every real-client test.
pub fn describe_plugins(dir: &Path) -> String {
    let out = Command::new(dir.join("bridge"))
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output();
    let version = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(e) => format!("(cannot run: {e})"),
    };
    format!("{} (bridge VERSION: {version})", dir.display())
}

/// Runs `cmd`, panicking with its full output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Makes `dir/rootfs.tar`: a root filesystem of the static busybox (every
/// applet linked, root in /etc/passwd), for `podman import`. No registry is
/// reachable from the tests, so images are built here.
pub fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    let rootfs = dir.join("rootfs");
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var",
    ] {
        std::fs::create_dir_all(rootfs.join(d))
            .unwrap_or_else(|e| panic!("mkdir {}/{d}: {e}", rootfs.display()));
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("copy /bin/busybox: {e}"));
    let list = run_ok(Command::new(busybox).arg("--list"));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .unwrap_or_else(|e| panic!("symlink applet {applet}: {e}"));
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .unwrap_or_else(|e| panic!("write /etc/passwd: {e}"));
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")
        .unwrap_or_else(|e| panic!("write /etc/group: {e}"));
    let tar = dir.join("rootfs.tar");
    run_ok(
        Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .args(["--mtime=2024-01-01 00:00:00Z", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    tar
}

/// Output of a command as trimmed text (first line of `--version` etc.).
pub fn first_line(argv: &[&str]) -> String {
    match Command::new(argv[0]).args(&argv[1..]).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(e) => format!("({} not runnable: {e})", argv[0]),
    }
}

/// Where Debian's `golang-github-appc-cni-dev` puts libcni (GOPATH layout).
const GOCODE: &str = "/usr/share/gocode";

/// Builds `cnitool` (a real libcni client) once per test binary, offline,
/// GOPATH mode against Debian's libcni source, no module proxy. Source:
/// `tests/support/cnitool/main.go` (upstream v1.1.2, vendored: Debian
/// ships libcni but not cnitool's main), else a `cnitool` package under
/// /usr/share/gocode if a Debian version ships one.
/// `None` (skip) only outside CI.
pub fn cnitool() -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build_cnitool) {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            missing(why);
            None
        }
    }
}

fn build_cnitool() -> Result<PathBuf, String> {
    if !Path::new(GOCODE)
        .join("src/github.com/containernetworking/cni/libcni")
        .is_dir()
    {
        return Err(format!(
            "libcni source missing under {GOCODE} (apt-get install golang-github-appc-cni-dev)"
        ));
    }
    let tmp = crate::common::target_tmp_dir();
    let tmp = tmp.as_path();
    remove_stale_builds(tmp);
    let work = tmp.join(format!("cnitool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let pkg = work.join("gopath/src/cnitool");
    std::fs::create_dir_all(&pkg).map_err(|e| format!("mkdir {}: {e}", pkg.display()))?;
    let vendored = crate::common::repo_root().join("tests/support/cnitool/main.go");
    let debian_pkg = Path::new(GOCODE).join("src/github.com/containernetworking/cni/cnitool");
    let build_dir = match vendored {
        src if src.is_file() => {
            std::fs::copy(&src, pkg.join("main.go"))
                .map_err(|e| format!("copy {}: {e}", src.display()))?;
            pkg.clone()
        }
        _ if debian_pkg.is_dir() => debian_pkg,
        _ => {
            return Err(format!(
                "no cnitool source: neither {} nor {}",
                vendored.display(),
                debian_pkg.display()
            ))
        }
    };
    let out = work.join("cnitool");
    // A go cache shared by runs keeps rebuilds at a few seconds.
    let cache = tmp.join("go-cache");
    let res = Command::new("go")
        .current_dir(&build_dir)
        .args(["build", "-trimpath", "-o"])
        .arg(&out)
        .arg(".")
        .env(
            "GOPATH",
            format!("{}:{GOCODE}", work.join("gopath").display()),
        )
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOCACHE", &cache)
        .env("CGO_ENABLED", "0")
        .output()
        .map_err(|e| format!("run go (apt-get install golang-go): {e}"))?;
    if !res.status.success() {
        return Err(format!(
            "go build cnitool failed: {}",
            String::from_utf8_lossy(&res.stderr)
        ));
    }
    Ok(out)
}

/// Removes `cnitool-<pid>` build dirs of earlier test runs whose process is gone.
fn remove_stale_builds(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("cnitool-") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A set of bind mounts applied, in a private mount namespace, around one
/// client command: the client sees `source` at `target`, the machine never
/// does. A missing target (e.g. `/var/lib/cni` on a fresh machine) is made
/// inside an overlay of its nearest existing ancestor whose upper layer is a
/// temp dir, so not even an empty directory is created on the machine.
pub struct PrivateMounts {
    binds: Vec<(PathBuf, PathBuf)>,
    scratch: TempDir,
}

/// The shell run by `unshare`: mount, then exec the client. Two passes:
/// every missing target is made first (one overlay per ancestor, even when
/// two targets share it, e.g. `/run/netns` and `/run/containers`), then the
/// binds; an overlay mounted after a bind would hide it.
const MOUNT_SCRIPT: &str = r#"set -eu
scratch=$1; shift
n=0 overlaid=" " is_dst=0
for arg; do
  [ "$arg" = "--" ] && break
  if [ $is_dst = 0 ]; then is_dst=1; continue; fi
  is_dst=0
  [ -d "$arg" ] && continue
  anc=$arg
  while [ ! -d "$anc" ]; do anc=$(dirname "$anc"); done
  case "$overlaid" in *" $anc "*) ;; *)
    n=$((n+1))
    mkdir -p "$scratch/ov$n/upper" "$scratch/ov$n/work"
    mount -t overlay "ov$n" -o "lowerdir=$anc,upperdir=$scratch/ov$n/upper,workdir=$scratch/ov$n/work" "$anc"
    overlaid="$overlaid$anc "
  esac
  mkdir -p "$arg"
done
while [ "$1" != "--" ]; do
  mount --bind "$1" "$2"; shift 2
done
shift
exec "$@"
"#;

impl PrivateMounts {
    pub fn new() -> PrivateMounts {
        PrivateMounts {
            binds: Vec::new(),
            scratch: TempDir::new("mounts"),
        }
    }

    /// Show `source` (a dir) at `target` to the wrapped command.
    pub fn bind(mut self, source: &Path, target: &str) -> PrivateMounts {
        self.binds
            .push((source.to_path_buf(), PathBuf::from(target)));
        self
    }

    /// `argv` wrapped in `unshare --mount --propagation private` plus the
    /// binds. The process inherits the calling thread's network namespace.
    pub fn command(&self, argv: &[OsString]) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(MOUNT_SCRIPT)
            .arg("sh")
            .arg(self.scratch.path());
        for (src, dst) in &self.binds {
            cmd.arg(src).arg(dst);
        }
        cmd.arg("--").args(argv);
        cmd
    }

    /// Mounts the binds in a new mount namespace held open by a `cat`
    /// reading a pipe from this process, for clients run as many commands
    /// that must share it (e.g. podman's `/run/netns` mounts). The holder
    /// exits when dropped, or with this process, however it ends.
    pub fn hold(self) -> HeldMounts {
        let mut holder = self
            .command(&["cat".into()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn unshare: {e}"));
        let pid = holder.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // `unshare` execs sh, which execs cat once every bind is mounted.
        while std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .as_deref()
            != Some(b"cat\0")
        {
            if let Ok(Some(status)) = holder.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = holder.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("private mounts failed ({status}): {err}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "private mounts not ready after 20 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        HeldMounts {
            holder,
            _mounts: self,
        }
    }
}

/// A mount namespace made by [`PrivateMounts::hold`].
pub struct HeldMounts {
    holder: std::process::Child,
    _mounts: PrivateMounts,
}

impl HeldMounts {
    /// `argv` run inside the held mount namespace (network namespace: the
    /// calling thread's).
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg("--")
            .args(argv);
        cmd
    }
}

impl Drop for HeldMounts {
    /// Closes the holder's stdin (cat exits), then kills it by PID if it
    /// has not exited within a few seconds.
    fn drop(&mut self) {
        drop(self.holder.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.holder.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `iptables-save` and `nft list ruleset` of the calling thread's netns,
/// concatenated: used to prove that no masquerade rule is left.
pub fn firewall_dump() -> String {
    let mut all = String::new();
    for argv in [
        &["iptables-save"][..],
        &["ip6tables-save"],
        &["nft", "list", "ruleset"],
    ] {
        if let Ok(o) = Command::new(argv[0]).args(&argv[1..]).output() {
            all.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    }
    all
}

/// Lines of [`firewall_dump`] mentioning `needle` (a network name or container id).
pub fn firewall_lines_with(needle: &str) -> Vec<String> {
    firewall_dump()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Names of veth links in the calling thread's netns.
pub fn veth_names() -> Vec<String> {
    crate::common::ip_json(&["-d", "link", "show", "type", "veth"])
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that no veth is left in the calling thread's netns, waiting a
/// bounded time: when a pod netns is destroyed (its last process or holder
/// gone), the kernel removes the veth pair asynchronously (netns cleanup runs
/// in a workqueue). A veth a plugin failed to delete from a live netns never
/// vanishes, so the wait hides no bug.
pub fn assert_no_veths_left(what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = veth_names();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: veths left on the node: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Entries of libcni's result cache (`<cache dir>/results`), sorted.
pub fn cache_entries(cache_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache_dir.join("results"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Lease files (`<ip>`) in a host-local store dir `<dataDir>/<net>`.
pub fn leases(store: &Path) -> Vec<String> {
    crate::common::lease_files(store)
}

/// `ping` from inside a pod netns (3 packets, bounded in time): only to
/// addresses the test assigned inside namespaces it created.
pub fn ping_from(pod: &crate::common::PodNs, addr: &str) {
    let out = pod.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", addr]);
    assert!(
        out.status.success(),
        "ping {addr} from {} failed:\n{}{}",
        pod.path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the tools of a private containerd node (kubesim's containerd
/// runtime, the soak) are installed. When one is missing: a failure under
/// `CI=true` (see [`missing`]), otherwise `false` after saying why.
pub fn containerd_prerequisites() -> bool {
    for tool in ["containerd", "ctr", "runc", "tini", "nsenter", "unshare"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
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

/// Processes (pid, command line) other than this one whose command line
/// mentions `needle`: what a run left behind.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then_some((pid, cmd))
        })
        .collect()
}

/// Removes the cgroup dirs a runtime (podman, runc under containerd) made
/// under `parent` (rmdir
/// only: a cgroup with a process left stays), in every hierarchy.
pub fn remove_cgroups(parent: &str) {
    fn rmdir_tree(dir: &Path) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let name = parent.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    rmdir_tree(&root.join(name));
    for hierarchy in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let dir = hierarchy.path().join(name);
        if dir.is_dir() {
            rmdir_tree(&dir);
        }
    }
}

/// `kubesim --state-dir STATE` (our binary), ready for a command.
pub fn kubesim(state: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(crate::common::bin("kubesim"));
    cmd.arg("--state-dir").arg(state);
    cmd
}

/// `kubesim down` on drop for a state dir, so a failing test leaves no
/// containerd, shim or namespace running.
pub struct KubesimDown(pub PathBuf);

impl Drop for KubesimDown {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = kubesim(&self.0).arg("down").output();
        }
    }
}
