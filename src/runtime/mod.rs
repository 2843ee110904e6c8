//! A small libcni: what containerd and CRI-O do around a CNI plugin.
//!
//! - [`conf`]: load `*.conf`/`*.conflist`/`*.json` from a dir (lexical order,
//!   first valid wins; a single-plugin `.conf` becomes a list);
//! - [`inject`]: derive each plugin's request config (`name`, `cniVersion`,
//!   `runtimeConfig` from declared capabilities, `prevResult`);
//! - [`exec`]: find plugins on `CNI_PATH` and run them (optionally inside
//!   another netns), typed errors with the plugin's code/msg/details;
//! - [`cache`]: libcni's result cache format and path;
//! - [`api::CniConfig`]: ADD chain, DEL in reverse with the cached result,
//!   CHECK, GC (stale cached attachments DEL'd, then GC to every plugin), STATUS.

pub mod api;
pub mod base64;
pub mod cache;
pub mod conf;
pub mod error;
pub mod exec;
pub mod inject;
pub mod result;

pub use api::{CniConfig, GcReport};
pub use cache::{CachedInfo, ResultCache};
pub use conf::{load_dir, NetworkConfigList};
pub use error::{Result, RuntimeError};
pub use exec::{find_plugin, PluginExec};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Arguments of one attachment, excepting the network config (libcni `RuntimeConf`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID` (the sandbox id for Kubernetes).
    pub container_id: String,
    /// `CNI_NETNS`: path of the sandbox network namespace (may be empty on DEL).
    pub netns: String,
    /// `CNI_IFNAME`, e.g. `eth0`.
    pub ifname: String,
    /// `CNI_ARGS` pairs, in order.
    pub args: Vec<(String, String)>,
    /// Capability args; each plugin sees those it declares in `capabilities`.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// `CNI_ARGS` as the plugin sees it: `K=V;K=V`.
    pub fn args_string(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The CNI_ARGS a kubelet passes for a pod sandbox (CRI), in a fixed order.
    pub fn kubernetes_args(
        namespace: &str,
        name: &str,
        sandbox_id: &str,
        uid: &str,
    ) -> Vec<(String, String)> {
        [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", namespace),
            ("K8S_POD_NAME", name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
            ("K8S_POD_UID", uid),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// A still-valid attachment passed to GC (`cni.dev/valid-attachments` entry).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// Container (sandbox) id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    #[serde(rename = "ifname")]
    pub ifname: String,
}
