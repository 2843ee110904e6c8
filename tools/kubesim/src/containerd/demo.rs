//! `kubesim demo --runtime containerd`: a cluster whose nodes each run a
//! private containerd, the story over CRI, then a teardown proven complete
//! (no process, mount or netns of the state dir left).

use std::path::Path;

use super::node;
use super::story;
use crate::harness::cluster::{self, UpOptions};
use crate::harness::error::{HarnessError, Result};
use crate::harness::report::DemoReport;
use crate::harness::{teardown, Harness};

/// Starts containerd on every node of a fresh cluster; on failure the whole
/// cluster is torn down again.
pub fn up(h: &Harness, opts: &UpOptions) -> Result<Vec<super::kubelet::Kubelet>> {
    let state = cluster::up(h, opts)?;
    match node::start_all(h, &state) {
        Ok(k) => Ok(k),
        Err(e) => {
            h.say("  starting containerd failed; removing the cluster");
            let _ = teardown::teardown(h, &state);
            let _ = std::fs::remove_dir_all(h.dir.root.join("nodes"));
            let _ = std::fs::remove_file(h.dir.file());
            Err(e.into())
        }
    }
}

/// Runs the containerd story on a fresh cluster in `h`'s state dir and
/// tears it down.
pub fn run(h: &Harness, opts: &UpOptions) -> Result<DemoReport> {
    if h.dir.load()?.is_some() {
        h.say("cleaning up a previous run in the same state dir");
        teardown::down(h)?;
        std::fs::create_dir_all(h.dir.logs()).map_err(HarnessError::io("recreate state dir"))?;
    }
    h.say(&format!(
        "== creating a {}-node cluster, one containerd per node",
        opts.nodes
    ));
    let kubelets = up(h, opts)?;
    let state = crate::harness::lookup::require_state(h)?;
    let mut report = DemoReport::default();
    let outcome = story::story(h, &state, &kubelets, &mut report);
    drop(kubelets);
    h.say("== tearing down (containerd, shims and containers by PID, then the netns)");
    let root = std::fs::canonicalize(&h.dir.root).unwrap_or_else(|_| h.dir.root.clone());
    let parents: Vec<String> = state
        .nodes
        .iter()
        .map(|n| node::dirs(h, n).cgroup_parent())
        .collect();
    let down = teardown::down(h);
    outcome?;
    let down = down?;
    let procs = processes_mentioning(&root);
    let mounts = mounts_under(&root);
    let cgroups: Vec<_> = parents
        .iter()
        .flat_map(|p| super::cgroups::present_in(p))
        .collect();
    report.check(
        "teardown stops containerd, shims and containers by PID and leaves no process, mount, cgroup or netns",
        down.warnings.is_empty()
            && procs.is_empty()
            && mounts.is_empty()
            && cgroups.is_empty()
            && !root.exists(),
        format!(
            "{} processes stopped; left: {} processes{}, {} cgroups, {} mounts under {}; state dir removed: {}{}",
            down.processes_killed,
            procs.len(),
            describe(&procs),
            cgroups.len(),
            mounts.len(),
            root.display(),
            !root.exists(),
            if down.warnings.is_empty() {
                String::new()
            } else {
                format!("; warnings: {}", down.warnings.join("; "))
            }
        ),
    );
    Ok(report)
}

/// kubesim and its ancestors (whose command lines name the state dir too).
fn self_and_ancestors() -> Vec<i32> {
    let mut out = vec![std::process::id() as i32];
    while let Some(&pid) = out.last() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split(' ').nth(1)?.parse::<i32>().ok())
            .unwrap_or(0);
        if ppid <= 1 || out.contains(&ppid) {
            break;
        }
        out.push(ppid);
    }
    out
}

/// PIDs whose command line mentions `root` (our daemons, helpers, shims).
fn processes_mentioning(root: &Path) -> Vec<i32> {
    let needle = root.to_string_lossy().into_owned();
    let own = self_and_ancestors();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| !own.contains(pid))
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|b| String::from_utf8_lossy(&b).contains(&needle))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `[pid: command line, …]` of leftover processes.
fn describe(pids: &[i32]) -> String {
    if pids.is_empty() {
        return String::new();
    }
    let each: Vec<String> = pids
        .iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect();
    format!(" [{}]", each.join("; "))
}

/// Mount points under `root` visible in kubesim's own mount namespace.
fn mounts_under(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&needle))
        .map(String::from)
        .collect()
}
