//! The cgroup directories of a process (v1 and v2), so that teardown can
//! remove the ones runc never got to delete because its container was
//! SIGKILLed with the daemon. Only empty cgroups can be removed (rmdir(2)
//! refuses any with processes or children), and only the containers' own,
//! never one the daemon itself lives in.

use std::path::{Path, PathBuf};

/// A mounted cgroup hierarchy: its mount point, the cgroup path at that
/// mount point, and its controllers (empty for cgroup2).
struct Hierarchy {
    mount: PathBuf,
    root: String,
    controllers: Option<Vec<String>>,
}

fn hierarchies() -> Vec<Hierarchy> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (root, mount) = (l.get(3)?, l.get(4)?);
            let controllers = match *r.first()? {
                "cgroup2" => None,
                "cgroup" => Some(
                    r.get(2)?
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
                        .map(String::from)
                        .collect(),
                ),
                _ => return None,
            };
            Some(Hierarchy {
                mount: PathBuf::from(mount),
                root: root.to_string(),
                controllers,
            })
        })
        .collect()
}

/// The directories of every cgroup `pid` is in.
pub fn of_pid(pid: i32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mounts = hierarchies();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let wanted: Vec<&str> = ctrl.split(',').filter(|c| !c.is_empty()).collect();
        let found = mounts.iter().find(|m| match &m.controllers {
            None => wanted.is_empty(),
            Some(have) => !wanted.is_empty() && wanted.iter().all(|w| have.iter().any(|h| h == w)),
        });
        if let Some(m) = found {
            let rel = path.strip_prefix(m.root.as_str()).unwrap_or(path);
            let dir = m.mount.join(rel.trim_start_matches('/'));
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
    out
}

/// Removes each empty cgroup dir in `dirs` that is not (an ancestor of)
/// one in `keep`; returns how many went.
pub fn remove_empty(dirs: &[PathBuf], keep: &[PathBuf]) -> usize {
    let mut sorted: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| !keep.iter().any(|k| k.starts_with(d)))
        .filter(|d| is_cgroup_dir(d))
        .collect();
    // Deepest first, so nested cgroups go before their parents.
    sorted.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    sorted
        .into_iter()
        .filter(|d| std::fs::remove_dir(d).is_ok())
        .count()
}

fn is_cgroup_dir(dir: &Path) -> bool {
    dir.starts_with("/sys/fs/cgroup") && dir.join("cgroup.procs").exists()
}

/// Removes the (empty) cgroup `path` from every mounted hierarchy; returns
/// how many went.
pub fn remove_everywhere(path: &str) -> usize {
    hierarchies()
        .iter()
        .filter(|h| h.root == "/")
        .map(|h| h.mount.join(path.trim_start_matches('/')))
        .filter(|d| is_cgroup_dir(d) && std::fs::remove_dir(d).is_ok())
        .count()
}

/// The hierarchies in which cgroup `path` exists.
pub fn present_in(path: &str) -> Vec<PathBuf> {
    hierarchies()
        .iter()
        .filter(|h| h.root == "/")
        .map(|h| h.mount.join(path.trim_start_matches('/')))
        .filter(|d| is_cgroup_dir(d))
        .collect()
}
