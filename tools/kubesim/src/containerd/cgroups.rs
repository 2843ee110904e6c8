//! The node's cgroup parent in every mounted hierarchy (v1 and v2): runc
//! creates it, removes only the pods' own cgroups, and none at all when
//! its containers were SIGKILLed with the daemon; teardown removes what is
//! left. Only empty cgroups can be removed (rmdir(2) refuses any with
//! processes or children).

use std::path::{Path, PathBuf};

/// Mount points of the cgroup hierarchies that show the whole tree (root
/// `/`), where runc creates `<mount>/<cgroup parent>`.
fn hierarchies() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            let cgroup = fstype == "cgroup" || fstype == "cgroup2";
            let (root, mount) = (l.get(3)?, l.get(4)?);
            (cgroup && *root == "/").then(|| PathBuf::from(mount))
        })
        .collect()
}

/// The hierarchies in which cgroup `path` exists (as directories).
pub fn present_in(path: &str) -> Vec<PathBuf> {
    hierarchies()
        .iter()
        .map(|m| m.join(path.trim_start_matches('/')))
        .filter(|d| is_cgroup_dir(d))
        .collect()
}

/// Every process in cgroup `path` or below it, in any hierarchy. Why:
/// containers whose shim was SIGKILLed are reparented away from the shim,
/// so only their cgroup still says they are the node's.
pub fn procs(path: &str) -> Vec<i32> {
    let mut out: Vec<i32> = present_in(path)
        .iter()
        .flat_map(|dir| subtree(dir))
        .flat_map(|dir| {
            std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Removes cgroup `path` and every (empty) cgroup below it from every
/// mounted hierarchy, deepest first; returns how many directories went.
pub fn remove_tree(path: &str) -> usize {
    let mut removed = 0;
    for dir in present_in(path) {
        for d in subtree(&dir).iter().rev() {
            removed += usize::from(std::fs::remove_dir(d).is_ok());
        }
    }
    removed
}

/// `dir` and the cgroups below it, parents before children.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while let Some(d) = out.get(i).cloned() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            out.extend(rd.flatten().map(|e| e.path()).filter(|c| is_cgroup_dir(c)));
        }
        i += 1;
    }
    out
}

fn is_cgroup_dir(dir: &Path) -> bool {
    dir.starts_with("/sys/fs/cgroup") && dir.join("cgroup.procs").exists()
}
