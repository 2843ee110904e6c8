//! The harness's memory: one JSON file in the state dir recording every
//! helper process, node and pod, written before and after each step so that
//! `down` can clean up after a crash. Commands hold an exclusive flock on
//! `<state>/lock` while they read-modify-write it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::error::{HarnessError, Result};
use super::hostport::HostPort;
use super::procs::ProcRecord;

/// Default state dir of `up`/`run-pod`/….
pub const DEFAULT_STATE_DIR: &str = "/run/kubesim";

/// Whole-cluster state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Directory holding the plugins (`CNI_PATH`).
    pub cni_bin_dir: PathBuf,
    /// Network name of the node conflists.
    pub network: String,
    /// Holder of the underlay netns.
    pub underlay: Option<ProcRecord>,
    /// Nodes in creation order.
    pub nodes: Vec<NodeState>,
    /// Pods in creation order.
    pub pods: Vec<PodState>,
}

/// One node: a netns with its own bridge, pod CIDR and CNI dirs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeState {
    /// e.g. `node-1`.
    pub name: String,
    /// 1-based index; picks the pod CIDR and underlay IP.
    pub index: u8,
    /// Holder of the node netns.
    pub holder: ProcRecord,
    /// Inode of the node netns (for display and safety checks).
    pub netns_inode: u64,
    /// The node's IP on the underlay.
    pub underlay_ip: String,
    /// Pod CIDRs (IPv4 first; IPv6 second when dual stack).
    pub pod_cidrs: Vec<String>,
    /// Bridge name from the conflist.
    pub bridge: String,
    /// Conflist dir (`net.d`).
    pub conf_dir: PathBuf,
    /// libcni cache dir.
    pub cache_dir: PathBuf,
    /// host-local dataDir.
    pub data_dir: PathBuf,
}

/// One pod sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodState {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// 64-hex sandbox id (`CNI_CONTAINERID`).
    pub sandbox_id: String,
    /// Node it runs on.
    pub node: String,
    /// The pause process holding the pod netns.
    pub pause: ProcRecord,
    /// Inode of the pod netns.
    pub netns_inode: u64,
    /// `CNI_NETNS` given to ADD.
    pub netns_path: String,
    /// Pod IPs (first = the pod IP); empty until ADD succeeded.
    pub ips: Vec<String>,
    /// Whether CNI ADD succeeded (DEL is due either way).
    pub network_ready: bool,
    /// Its `hostPort`s, sent as `portMappings` at ADD and at every DEL.
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
    /// Containers of the pod.
    pub containers: Vec<ContainerState>,
}

impl PodState {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The first 12 characters of the sandbox id (as `crictl pods` shows it).
    pub fn short_id(&self) -> &str {
        self.sandbox_id.get(..12).unwrap_or(&self.sandbox_id)
    }

    /// The pod IP (first IP of the ADD result), without prefix.
    pub fn ip(&self) -> Option<String> {
        self.ips
            .first()
            .map(|s| s.split('/').next().unwrap_or(s).to_string())
    }
}

/// One container: a process inside the sandbox netns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerState {
    /// Container name.
    pub name: String,
    /// TCP port its echo server listens on.
    pub port: u16,
    /// The running process (None when stopped).
    pub process: Option<ProcRecord>,
    /// How often it was restarted.
    pub restarts: u32,
}

/// The state dir: paths, locking, load/save.
#[derive(Clone, Debug)]
pub struct StateDir {
    /// Absolute path.
    pub root: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) a state dir, made absolute so it can be
    /// matched in helper cmdlines.
    pub fn create(root: &Path) -> Result<StateDir> {
        std::fs::create_dir_all(root).map_err(HarnessError::io(format!(
            "create state dir {}",
            root.display()
        )))?;
        let root = root
            .canonicalize()
            .map_err(HarnessError::io(format!("resolve {}", root.display())))?;
        Ok(StateDir { root })
    }

    /// `state.json`.
    pub fn file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Log dir for helper stderr.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Plugin call log written by the runtime.
    pub fn cni_log(&self) -> PathBuf {
        self.root.join("cni-calls.log")
    }

    /// Per-node dir.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node)
    }

    /// Takes the exclusive lock for one command.
    pub fn lock(&self) -> Result<Flock<File>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))
            .map_err(HarnessError::io("open state lock"))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| HarnessError::Io {
            context: "lock state dir".into(),
            source: e.into(),
        })
    }

    /// Loads the state; `None` if there is no cluster here.
    pub fn load(&self) -> Result<Option<State>> {
        let path = self.file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(HarnessError::io(format!("read {}", path.display()))(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| HarnessError::State {
                path,
                reason: format!("corrupt state file: {e}"),
            })
    }

    /// Saves atomically (write + rename).
    pub fn save(&self, state: &State) -> Result<()> {
        let tmp = self.root.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| HarnessError::State {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, bytes).map_err(HarnessError::io("write state"))?;
        std::fs::rename(&tmp, self.file()).map_err(HarnessError::io("rename state"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_corruption() {
        let root = std::env::temp_dir().join(format!("kubesim-state-test-{}", std::process::id()));
        let dir = StateDir::create(&root).expect("create");
        assert!(dir.load().expect("load").is_none(), "no state yet");
        let state = State {
            cni_bin_dir: "/opt/cni/bin".into(),
            network: "net".into(),
            ..State::default()
        };
        let _lock = dir.lock().expect("lock");
        dir.save(&state).expect("save");
        let back = dir.load().expect("load").expect("state");
        assert_eq!(back.network, "net");
        std::fs::write(dir.file(), "{broken").expect("corrupt");
        let err = dir.load().expect_err("corrupt state").to_string();
        assert!(err.contains("corrupt state file"), "{err}");
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
