//! The plugin killer: while the soak runs, it watches each node's
//! containerd for plugin processes and SIGKILLs a random share of them, the
//! way a node under memory pressure or a runtime timeout would.
//!
//! Only a process that is (1) a descendant of the node's `containerd` —
//! itself the child of the `tini` recorded in the node's `daemon.json` —
//! and (2) running one of our plugin binaries from the node's `cni-bin`
//! dir is ever a target; it is named by PID and start time, both checked
//! again through a pidfd right before the signal (see [`ProcId::kill_if`]).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::rng::Rng;
use crate::containerd::config::NodeDirs;
use crate::containerd::daemon::DaemonRecord;
use crate::containerd::pidfd::{self, ProcId};

/// The plugin binaries the killer may hit.
pub const PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];

/// Pause between two scans of the process tree.
const SCAN_EVERY: Duration = Duration::from_millis(2);

/// A node whose plugins may be killed.
#[derive(Clone, Debug)]
pub struct Target {
    /// The node's containerd dirs (its record and `cni-bin`).
    pub dirs: NodeDirs,
}

/// What the killer saw and did.
#[derive(Clone, Debug, Default)]
pub struct KillReport {
    /// Plugin processes seen running, per plugin.
    pub seen: BTreeMap<String, usize>,
    /// SIGKILLs delivered to a running plugin, per plugin.
    pub landed: BTreeMap<String, usize>,
    /// Chosen victims that had exited before the signal.
    pub missed: usize,
    /// Errors of pidfd calls (none expected).
    pub errors: Vec<String>,
}

impl KillReport {
    /// All SIGKILLs that landed.
    pub fn landed_total(&self) -> usize {
        self.landed.values().sum()
    }
    /// All plugin processes seen.
    pub fn seen_total(&self) -> usize {
        self.seen.values().sum()
    }
}

/// The node's running containerd: the child of its recorded `tini`.
fn containerd_of(dirs: &NodeDirs) -> Option<ProcId> {
    let rec = DaemonRecord::load(dirs).filter(DaemonRecord::is_ours)?;
    pidfd::children(rec.pid)
        .into_iter()
        .find(|p| {
            pidfd::cmdline(*p)
                .first()
                .is_some_and(|a| a == "containerd")
                && pidfd::ppid(*p) == Some(rec.pid)
        })
        .and_then(ProcId::of)
}

/// The plugin `pid` runs, if its argv[0] is one of [`PLUGINS`] in `bin`.
fn plugin_name(pid: i32, bin: &Path) -> Option<String> {
    let argv0 = PathBuf::from(pidfd::cmdline(pid).into_iter().next()?);
    let name = argv0.file_name()?.to_str()?.to_string();
    (argv0.parent() == Some(bin) && PLUGINS.contains(&name.as_str())).then_some(name)
}

/// The plugin process itself, not a child it forked and that has not
/// exec'd its program yet (`iptables-restore`, the IPAM plugin): such a
/// fork still shows its parent's command line.
fn plugin_proper(pid: i32, bin: &Path) -> Option<String> {
    let name = plugin_name(pid, bin)?;
    let parent = pidfd::ppid(pid).and_then(|pp| plugin_name(pp, bin));
    (parent.as_deref() != Some(name.as_str())).then_some(name)
}

/// True if `pid` descends from `ancestor` (within a few generations: a
/// plugin, or the IPAM plugin it runs).
fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    for _ in 0..4 {
        match pidfd::ppid(p) {
            Some(pp) if pp == ancestor => return true,
            Some(pp) if pp > 1 => p = pp,
            _ => return false,
        }
    }
    false
}

/// Plugin processes under `daemon` (children, and their children).
fn plugins_under(daemon: i32, bin: &Path) -> Vec<(ProcId, String)> {
    let mut out = Vec::new();
    let mut queue = pidfd::children(daemon);
    while let Some(pid) = queue.pop() {
        if plugin_name(pid, bin).is_some() {
            if let (Some(name), Some(id)) = (plugin_proper(pid, bin), ProcId::of(pid)) {
                out.push((id, name));
            }
            queue.extend(pidfd::children(pid));
        }
    }
    out
}

/// Runs until `stop`: each plugin process seen for the first time is
/// killed with probability `rate`.
pub fn run(targets: &[Target], rate: f64, seed: u64, stop: &AtomicBool) -> KillReport {
    let mut report = KillReport::default();
    let mut rng = Rng::new(seed, u64::MAX);
    let mut seen: HashSet<ProcId> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        for t in targets {
            let Some(daemon) = containerd_of(&t.dirs) else {
                continue; // restarting
            };
            let bin = t.dirs.cni_bin();
            for (proc_id, name) in plugins_under(daemon.pid, &bin) {
                if !seen.insert(proc_id) {
                    continue;
                }
                *report.seen.entry(name.clone()).or_default() += 1;
                if !rng.chance(rate) {
                    continue;
                }
                let still_ours = || {
                    daemon.alive()
                        && descends_from(proc_id.pid, daemon.pid)
                        && plugin_proper(proc_id.pid, &bin).as_deref() == Some(name.as_str())
                };
                match proc_id.kill_if(still_ours) {
                    Ok(true) => *report.landed.entry(name).or_default() += 1,
                    Ok(false) => report.missed += 1,
                    Err(e) => report
                        .errors
                        .push(format!("kill {name} ({}): {e}", proc_id.pid)),
                }
            }
        }
        std::thread::sleep(SCAN_EVERY);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_plugin_binaries_in_the_node_bin_dir_are_plugins() {
        // This test process is no plugin, whatever its name.
        let me = std::process::id() as i32;
        let exe = std::env::current_exe().expect("exe");
        let dir = exe.parent().expect("dir");
        assert_eq!(plugin_name(me, dir), None);
        // A `sleep` is not under `cni-bin` either.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn");
        let pid = child.id() as i32;
        assert_eq!(plugin_name(pid, Path::new("/usr/bin")), None);
        assert!(descends_from(pid, me));
        assert!(!descends_from(me, pid));
        assert!(plugins_under(me, Path::new("/usr/bin")).is_empty());
        let _ = child.kill();
        let _ = child.wait();
    }
}
