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

/// Removes cgroup `path` and the (empty) cgroups right under it from every
/// mounted hierarchy; returns how many directories went.
pub fn remove_tree(path: &str) -> usize {
    let mut removed = 0;
    for dir in present_in(path) {
        let children = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        for child in children.iter().filter(|c| is_cgroup_dir(c)) {
            removed += usize::from(std::fs::remove_dir(child).is_ok());
        }
        removed += usize::from(std::fs::remove_dir(&dir).is_ok());
    }
    removed
}

fn is_cgroup_dir(dir: &Path) -> bool {
    dir.starts_with("/sys/fs/cgroup") && dir.join("cgroup.procs").exists()
}
