//! One node's containerd: its private directories and `config.toml`.

use std::path::{Path, PathBuf};

use super::image::PAUSE_IMAGE;

/// The directories of one node's containerd, all under
/// `<state dir>/nodes/<node>/containerd/`.
#[derive(Clone, Debug)]
pub struct NodeDirs {
    /// The base dir.
    pub base: PathBuf,
}

impl NodeDirs {
    /// The containerd dirs of the node whose dir is `node_dir`.
    pub fn new(node_dir: &Path) -> NodeDirs {
        NodeDirs {
            base: node_dir.join("containerd"),
        }
    }
    /// containerd's `root` (content store, snapshots, metadata).
    pub fn root(&self) -> PathBuf {
        self.base.join("root")
    }
    /// containerd's `state` (tasks, pod netns mounts, runc state).
    pub fn state(&self) -> PathBuf {
        self.base.join("state")
    }
    /// The gRPC socket (CRI and containerd API).
    pub fn socket(&self) -> PathBuf {
        self.base.join("containerd.sock")
    }
    /// The CRI plugin's CNI `bin_dir`: our plugins plus a loopback.
    pub fn cni_bin(&self) -> PathBuf {
        self.base.join("cni-bin")
    }
    /// Wrappers running each plugin of `cni_bin` inside containerd's mount
    /// namespace (for the CHECK and GC kubesim sends itself).
    pub fn cni_bin_mntns(&self) -> PathBuf {
        self.base.join("cni-bin-mntns")
    }
    /// libcni's cache, shown to containerd as `/var/lib/cni`.
    pub fn cni_cache(&self) -> PathBuf {
        self.base.join("cni-cache")
    }
    /// Pod log directories (the kubelet's `/var/log/pods`).
    pub fn pod_logs(&self) -> PathBuf {
        self.base.join("pods")
    }
    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.base.join("config.toml")
    }
    /// The cgroup parent of the node's pods (`/kubesim-<hash>`): runc
    /// creates it in every hierarchy and removes only the pods' own
    /// cgroups, so teardown removes this one.
    pub fn cgroup_parent(&self) -> String {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(self.base.to_string_lossy().as_bytes());
        let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("/kubesim-{hex}")
    }
    /// The daemon's stdout/stderr.
    pub fn log(&self) -> PathBuf {
        self.base.join("containerd.log")
    }
    /// The record of the running daemon (pid, start time).
    pub fn record(&self) -> PathBuf {
        self.base.join("daemon.json")
    }
}

/// `config.toml` of a node: CRI on, pointed at the node's conflist and our
/// plugins, the self-built pause image, nothing outside the node's dirs.
/// `restrict_oom_score_adj`: the machine may lack CAP_SYS_RESOURCE.
pub fn render(dirs: &NodeDirs, conf_dir: &Path) -> String {
    let sock = dirs.socket();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
# No /opt/containerd on the machine; no snapshotters this node cannot use.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
    max_conf_num = 1
"#,
        root = dirs.root().display(),
        state = dirs.state().display(),
        sock = sock.display(),
        pause = PAUSE_IMAGE,
        bin = dirs.cni_bin().display(),
        conf = conf_dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_cri_at_the_node() {
        let dirs = NodeDirs::new(Path::new("/run/ks/nodes/node-1"));
        let text = render(&dirs, Path::new("/run/ks/nodes/node-1/net.d"));
        assert!(text.contains(r#"bin_dir = "/run/ks/nodes/node-1/containerd/cni-bin""#));
        assert!(text.contains(r#"conf_dir = "/run/ks/nodes/node-1/net.d""#));
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains(&format!(r#"sandbox_image = "{PAUSE_IMAGE}""#)));
        let disabled = text.split("[grpc]").next().unwrap_or_default();
        assert!(!disabled.contains("grpc.v1.cri"), "CRI stays enabled");
    }
}
