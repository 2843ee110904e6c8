//! `down`: the crash-proof teardown of everything a state dir records.
//! Killing the holder processes releases the namespaces, and with them every
//! link, address, route and firewall rule inside; pods get a CNI DEL first,
//! as a kubelet draining the node would send.

use super::error::{HarnessError, Result};
use super::state::State;
use super::Harness;

/// What `down` did.
#[derive(Clone, Debug, Default)]
pub struct DownReport {
    /// Pods whose CNI DEL succeeded.
    pub pods_deleted: usize,
    /// Helper processes killed.
    pub processes_killed: usize,
    /// Problems that did not stop the teardown.
    pub warnings: Vec<String>,
}

/// Removes the whole cluster recorded in the state dir (even a half-built or
/// crashed one) and then the state dir itself.
pub fn down(h: &Harness) -> Result<DownReport> {
    let lock = h.dir.lock()?;
    let state = h.dir.load()?;
    let report = match &state {
        Some(s) => teardown(h, s),
        None => DownReport::default(),
    };
    drop(lock);
    std::fs::remove_dir_all(&h.dir.root)
        .map_err(HarnessError::io(format!("remove {}", h.dir.root.display())))?;
    Ok(report)
}

/// Best-effort teardown of everything in `state`: pods (containers, CNI DEL,
/// pause), then nodes and the underlay. Never stops at the first error.
pub fn teardown(h: &Harness, state: &State) -> DownReport {
    let mut report = DownReport::default();
    let root = &h.dir.root;
    for pod in &state.pods {
        for c in &pod.containers {
            if c.process.as_ref().is_some_and(|p| p.kill(root)) {
                report.processes_killed += 1;
            }
        }
        match super::pod::cni_del(h, state, pod) {
            Ok(()) => report.pods_deleted += 1,
            Err(e) => report
                .warnings
                .push(format!("CNI DEL of pod {}: {e}", pod.key())),
        }
        if pod.pause.kill(root) {
            report.processes_killed += 1;
        }
    }
    // containerd nodes: drain over CRI, then daemons, shims and containers
    // by PID, while the node netns still exist.
    let containerd = crate::containerd::node::stop_all(h, state);
    report.pods_deleted += containerd.pods_drained;
    report.processes_killed += containerd.killed;
    report.warnings.extend(containerd.warnings);
    let holders = state
        .nodes
        .iter()
        .map(|n| &n.holder)
        .chain(state.underlay.iter());
    for rec in holders {
        if rec.kill(root) {
            report.processes_killed += 1;
        }
    }
    report
}
