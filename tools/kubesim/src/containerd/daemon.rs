//! One containerd per node: started inside the node's netns and in its own
//! mount namespace, recorded by PID before it is waited for, stopped by PID
//! together with every shim and container process under it.
//!
//! The process chain is `unshare --mount --propagation slave -- sh -c
//! MOUNT_SCRIPT … -- tini -s -- containerd --config …` (each step execs the
//! next, so the recorded PID is tini's). `tini -s` is a subreaper: shims
//! and orphaned container processes stay its descendants, which is how a
//! later `kubesim down` finds them even after kubesim itself was killed.
//!
//! The mount namespace gets a fresh tmpfs on `/run` and on `/var/lib`, so
//! the paths containerd 1.6 hard-codes (`/run/containerd/s` for shim
//! sockets, `/var/lib/cni` for libcni's cache) never touch the machine;
//! kubesim's state dir is bound back on top (it may live under `/run`), and
//! the node's `cni-cache` dir is bound at `/var/lib/cni`. Every mount dies
//! with the namespace's last process.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::config::{self, NodeDirs};
use super::error::{io, NodeError, Result};
use super::image;
use super::pidfd::{self, cmdline, stat, ProcId};
use crate::cri::CriClient;
use crate::harness::nsutil::Netns;

/// How long containerd gets to answer CRI `Version` after start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the kill loop may take before giving up.
const KILL_TIMEOUT: Duration = Duration::from_secs(15);

/// Run by `unshare` in the new mount namespace: private `/run` and
/// `/var/lib`, the state dir bound back (through an fd opened before it was
/// hidden; `--no-canonicalize` keeps `mount` from resolving the magic link
/// to the now-hidden path), libcni's cache at `/var/lib/cni`, then exec.
const MOUNT_SCRIPT: &str = r#"set -eu
keep=$1 cache=$2; shift 2
exec 3<"$keep"
mount -t tmpfs -o mode=0755 kubesim-run /run
mount -t tmpfs -o mode=0755 kubesim-varlib /var/lib
mkdir -p "$keep"
mount --no-canonicalize --bind /proc/self/fd/3 "$keep"
exec 3<&-
mkdir -p /var/lib/cni /run/containerd
mount --bind "$cache" /var/lib/cni
exec "$@"
"#;

/// Tools the containerd runtime drives.
const TOOLS: [&str; 5] = ["containerd", "ctr", "runc", "tini", "unshare"];

/// The running daemon of a node, as recorded in `daemon.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DaemonRecord {
    /// PID of `tini -s` (containerd is its child).
    pub pid: i32,
    /// Its start time (`/proc/<pid>/stat` field 22): no pid-reuse accidents.
    pub start_time: u64,
    /// The config file on its command line.
    pub config: PathBuf,
}

impl DaemonRecord {
    /// Loads the record of a node, if one was written.
    pub fn load(dirs: &NodeDirs) -> Option<DaemonRecord> {
        let text = std::fs::read_to_string(dirs.record()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// True if the pid still runs our tini with this config.
    pub fn is_ours(&self) -> bool {
        let Some((start, zombie)) = stat(self.pid) else {
            return false;
        };
        let config = self.config.to_string_lossy();
        !zombie && start == self.start_time && cmdline(self.pid).iter().any(|a| *a == *config)
    }
}

/// Every descendant of `pid` (children first found, deepest last).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for child in pidfd::children(p) {
            if !out.contains(&child) {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out
}

/// Fails with the first missing tool of the containerd runtime.
pub fn check_tools() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in TOOLS {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            return Err(NodeError::Missing(format!(
                "`{tool}` (apt-get install containerd runc tini util-linux)"
            )));
        }
    }
    if !Path::new(image::BUSYBOX).is_file() {
        return Err(NodeError::Missing(format!(
            "{} (apt-get install busybox-static)",
            image::BUSYBOX
        )));
    }
    Ok(())
}

/// The plugins the CRI plugin may run: every plugin `needed` names, copied
/// from `plugin_dir`, plus a `loopback` (containerd sets up `lo` through
/// CNI): ours next to the plugins if present, else the reference one.
pub fn install_plugins(dirs: &NodeDirs, plugin_dir: &Path, needed: &[String]) -> Result<()> {
    let bin = dirs.cni_bin();
    std::fs::create_dir_all(&bin).map_err(io(format!("create {}", bin.display())))?;
    let mut sources: Vec<(String, PathBuf)> = needed
        .iter()
        .map(|n| (n.clone(), plugin_dir.join(n)))
        .collect();
    let loopback = [plugin_dir.join("loopback"), "/usr/lib/cni/loopback".into()]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            NodeError::Missing(format!(
                "a loopback plugin in {} or /usr/lib/cni (apt-get install containernetworking-plugins)",
                plugin_dir.display()
            ))
        })?;
    sources.push(("loopback".into(), loopback));
    for (name, src) in sources {
        std::fs::copy(&src, bin.join(&name))
            .map_err(io(format!("copy plugin {}", src.display())))?;
    }
    Ok(())
}

/// Writes, for every plugin in the node's `cni_bin`, a wrapper that runs it
/// inside the mount namespace of the daemon `rec` (where the pod netns
/// paths in containerd's cached results resolve), for the verbs containerd
/// 1.6 never sends (CHECK, GC) and kubesim sends the same way.
pub fn write_mntns_wrappers(dirs: &NodeDirs, rec: &DaemonRecord) -> Result<()> {
    let out = dirs.cni_bin_mntns();
    std::fs::create_dir_all(&out).map_err(io(format!("create {}", out.display())))?;
    let plugins = std::fs::read_dir(dirs.cni_bin()).map_err(io("list cni-bin"))?;
    for p in plugins.flatten() {
        let name = p.file_name().to_string_lossy().into_owned();
        let script = format!(
            "#!/bin/sh\nexec nsenter --mount=/proc/{}/ns/mnt -- '{}' \"$@\"\n",
            rec.pid,
            p.path().display()
        );
        let path = out.join(&name);
        std::fs::write(&path, script).map_err(io(format!("write wrapper {name}")))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod wrapper {name}")))?;
    }
    Ok(())
}

/// Starts the node's containerd in the netns `ns`, records it, waits until
/// CRI answers and imports the images from `archive`. On failure the caller
/// stops it with [`stop`] (the record is written first).
pub fn start(
    node: &str,
    ns: &Netns,
    state_root: &Path,
    dirs: &NodeDirs,
    conf_dir: &Path,
    archive: &Path,
) -> Result<CriClient> {
    for d in [dirs.root(), dirs.state(), dirs.cni_cache(), dirs.pod_logs()] {
        std::fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
    }
    std::fs::write(dirs.config(), config::render(dirs, conf_dir))
        .map_err(io("write containerd config.toml"))?;
    let log = std::fs::File::create(dirs.log()).map_err(io("create containerd log"))?;
    let log_err = log.try_clone().map_err(io("dup containerd log"))?;
    let mut cmd = ns
        .command("unshare")
        .map_err(|e| NodeError::Safety(e.to_string()))?;
    cmd.args(["--mount", "--propagation", "slave", "--", "sh", "-c"])
        .arg(MOUNT_SCRIPT)
        .arg("sh")
        .arg(state_root)
        .arg(dirs.cni_cache())
        .args(["tini", "-s", "--", "containerd", "--config"])
        .arg(dirs.config())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: setsid(2) only; the daemon outlives this kubesim invocation.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().map_err(io("spawn containerd"))?;
    let (client, deadline) = record_and_wait(node, dirs, child.id() as i32)?;
    image::import(&dirs.socket(), archive)?;
    wait_images(node, dirs, &client, deadline)?;
    Ok(client)
}

/// Records the daemon whose `tini` is `pid` (before anything can fail, so
/// [`stop`] finds it), points the mount-namespace wrappers at it and waits
/// until CRI answers `Version`; returns the client and the deadline left.
fn record_and_wait(node: &str, dirs: &NodeDirs, pid: i32) -> Result<(CriClient, Instant)> {
    let start_time = stat(pid).map(|(t, _)| t).unwrap_or_default();
    let record = DaemonRecord {
        pid,
        start_time,
        config: dirs.config(),
    };
    let text = serde_json::to_string(&record).unwrap_or_default();
    std::fs::write(dirs.record(), text).map_err(io("write daemon.json"))?;
    write_mntns_wrappers(dirs, &record)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let client = loop {
        if stat(pid).is_none_or(|(_, zombie)| zombie) {
            return Err(start_failed(
                node,
                dirs,
                format!("it exited; {}", log_tail(&dirs.log())),
            ));
        }
        if dirs.socket().exists() {
            if let Ok(c) = CriClient::connect(&dirs.socket()) {
                if c.version().is_ok() {
                    break c;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(start_failed(
                node,
                dirs,
                format!("no CRI answer within {READY_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok((client, deadline))
}

/// The CRI plugin learns about imported images from events: waits until it
/// lists both.
fn wait_images(node: &str, dirs: &NodeDirs, client: &CriClient, deadline: Instant) -> Result<()> {
    for img in [image::PAUSE_IMAGE, image::APP_IMAGE] {
        while !client.image_present(img).unwrap_or(false) {
            if Instant::now() > deadline {
                return Err(start_failed(
                    node,
                    dirs,
                    format!("CRI does not see the imported image {img}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn start_failed(node: &str, dirs: &NodeDirs, reason: String) -> NodeError {
    NodeError::Start {
        node: node.to_string(),
        reason,
        log: dirs.log(),
    }
}

/// What a restart of a node's containerd did.
#[derive(Clone, Debug)]
pub struct Restart {
    /// PID of the containerd that was killed.
    pub killed_pid: i32,
    /// The new daemon's record.
    pub record: DaemonRecord,
    /// From the SIGKILL until CRI answered again, images listed.
    pub downtime: Duration,
}

/// A crash and restart of a node's containerd, as systemd would do it:
/// SIGKILL to containerd (found as the child of the recorded `tini`, and
/// killed through a pidfd after its start time was checked), then a new
/// `tini -s -- containerd` on the same config and dirs, in the node's netns
/// and the *same* mount namespace (held open by an fd across the gap, so
/// the shims' sockets under the private `/run` and the pod netns mounts
/// stay where the new daemon looks for them). Shims and pods live on.
pub fn restart(node: &str, ns: &Netns, dirs: &NodeDirs) -> Result<Restart> {
    let rec = DaemonRecord::load(dirs)
        .filter(DaemonRecord::is_ours)
        .ok_or_else(|| start_failed(node, dirs, "no running containerd to restart".into()))?;
    let mnt = std::fs::File::open(format!("/proc/{}/ns/mnt", rec.pid))
        .map_err(io("open containerd's mount namespace"))?;
    let daemon = pidfd::children(rec.pid)
        .into_iter()
        .find(|p| {
            pidfd::cmdline(*p)
                .first()
                .is_some_and(|a| a == "containerd")
        })
        .and_then(ProcId::of)
        .ok_or_else(|| start_failed(node, dirs, "no containerd under its tini".into()))?;
    // Re-checked after the fd was opened: it names our daemon's namespace.
    if !rec.is_ours() {
        return Err(NodeError::Safety(format!(
            "tini {} of {node} changed while restarting containerd",
            rec.pid
        )));
    }
    let t0 = Instant::now();
    let parent_is_tini = || pidfd::ppid(daemon.pid) == Some(rec.pid);
    if !daemon
        .kill_if(parent_is_tini)
        .map_err(io("kill containerd"))?
    {
        return Err(start_failed(
            node,
            dirs,
            "containerd exited before the kill".into(),
        ));
    }
    // tini exits with its child; the shims are reparented and live on.
    wait_gone(&rec);
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dirs.log())
        .map_err(io("open containerd log"))?;
    let log_err = log.try_clone().map_err(io("dup containerd log"))?;
    let mut cmd = ns
        .command("tini")
        .map_err(|e| NodeError::Safety(e.to_string()))?;
    cmd.args(["-s", "--", "containerd", "--config"])
        .arg(dirs.config())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mnt_fd = std::os::fd::AsRawFd::as_raw_fd(&mnt);
    // SAFETY: setns(2) and setsid(2) only, between fork and exec, on an fd
    // that stays open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(mnt_fd);
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(std::io::Error::from)?;
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().map_err(io("spawn containerd again"))?;
    drop(mnt);
    let (client, deadline) = record_and_wait(node, dirs, child.id() as i32)?;
    wait_images(node, dirs, &client, deadline)?;
    // `Version` answers before the CRI plugin has recovered its sandboxes;
    // until then everything else says "server is not initialized yet".
    while client.list_pod_sandbox().is_err() {
        if Instant::now() > deadline {
            return Err(start_failed(
                node,
                dirs,
                "CRI ListPodSandbox does not answer after the restart".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let record = DaemonRecord::load(dirs)
        .ok_or_else(|| start_failed(node, dirs, "daemon.json vanished".into()))?;
    Ok(Restart {
        killed_pid: daemon.pid,
        record,
        downtime: t0.elapsed(),
    })
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    format!(
        "log: {}",
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )
}

/// What stopping one daemon did.
#[derive(Clone, Debug, Default)]
pub struct StopReport {
    /// Processes (tini, containerd, shims, containers) killed by PID
    /// (a process killed in two rounds counts twice).
    pub killed: usize,
    /// Cgroups left by killed containers and removed.
    pub cgroups_removed: usize,
    /// Problems that did not stop the teardown.
    pub warnings: Vec<String>,
}

/// The shims of the daemon whose socket is `socket` (their command line
/// names it): after a crash of containerd they are no descendants of tini.
fn shims_of(socket: &Path) -> Vec<i32> {
    let sock = socket.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    let args = cmdline(*pid);
                    args.first().is_some_and(|a| a.contains("containerd-shim"))
                        && args.contains(&sock)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How long teardown retries removing the node's cgroups.
const CGROUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Stops a node's daemon by PID: every shim of its socket, every
/// descendant of its tini and of those shims (containerd, containers) and
/// every process in the node's pod cgroups (SIGKILL until none is left),
/// then tini. The mount namespace, and with it
/// every mount and pod netns, goes with them. Then the pods' cgroups that
/// runc had no chance to remove, and the node's cgroup parent.
pub fn stop(dirs: &NodeDirs) -> StopReport {
    let mut report = StopReport::default();
    let rec = DaemonRecord::load(dirs).filter(DaemonRecord::is_ours);
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let shims = shims_of(&dirs.socket());
        let mut procs: Vec<i32> = rec.iter().flat_map(|r| descendants(r.pid)).collect();
        for shim in shims {
            procs.extend(descendants(shim));
            procs.push(shim);
        }
        // Containers orphaned by a shim killed earlier are found by cgroup.
        procs.extend(super::cgroups::procs(&dirs.cgroup_parent()));
        procs.sort_unstable();
        procs.dedup();
        if procs.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            report.warnings.push(format!(
                "containerd of {}: processes {procs:?} survived SIGKILL",
                dirs.base.display()
            ));
            break;
        }
        for p in procs {
            if kill(Pid::from_raw(p), Signal::SIGKILL).is_ok() {
                report.killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(rec) = &rec {
        if kill(Pid::from_raw(rec.pid), Signal::SIGKILL).is_ok() {
            report.killed += 1;
            wait_gone(rec);
        }
    }
    // A SIGKILLed task leaves its cgroup a moment after kill(2) returns.
    let parent = dirs.cgroup_parent();
    let deadline = Instant::now() + CGROUP_TIMEOUT;
    loop {
        report.cgroups_removed += super::cgroups::remove_tree(&parent);
        if super::cgroups::present_in(&parent).is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(dirs.record());
    report
}

fn wait_gone(rec: &DaemonRecord) {
    let pid = Pid::from_raw(rec.pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return,
            Err(_) => match stat(rec.pid) {
                None => return,
                Some((start, zombie)) if zombie || start != rec.start_time => return,
                Some(_) => {}
            },
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
