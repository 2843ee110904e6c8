//! Per-node CNI configuration: the template conflist (by default
//! `conf/10-bridge.conflist`) with each host-local IPAM section given
//! the node's pod CIDRs and a dataDir inside the state dir, and the address
//! plan of the cluster (pod CIDRs, underlay IPs).

use std::path::Path;

use serde_json::{json, Map, Value};

use super::error::{HarnessError, Result};
use cni::runtime::{find_plugin, NetworkConfigList};

/// The conflist nodes use unless `up --conflist` says otherwise.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../../conf/10-bridge.conflist");

/// File name of the generated conflist in each node's conf dir.
pub const NODE_CONFLIST: &str = "10-kubesim.conflist";

/// IPv4 pod CIDR of node `i` (1-based).
pub fn pod_cidr_v4(i: u8) -> String {
    format!("10.244.{i}.0/24")
}

/// IPv6 pod CIDR of node `i` (dual stack only).
pub fn pod_cidr_v6(i: u8) -> String {
    format!("fd10:244:{i}::/64")
}

/// IPv4 address of node `i` on the underlay (/24).
pub fn underlay_v4(i: u8) -> String {
    format!("10.99.0.{i}")
}

/// IPv6 address of node `i` on the underlay (/64).
pub fn underlay_v6(i: u8) -> String {
    format!("fd10:99::{i}")
}

/// A validated template: the parsed list plus its JSON.
#[derive(Clone, Debug)]
pub struct Template {
    /// Parsed (validated) list.
    pub list: NetworkConfigList,
    /// The same, as JSON, for patching.
    pub json: Value,
    /// Whether any host-local range is IPv6 (then nodes get IPv6 CIDRs too).
    pub dual_stack: bool,
}

impl Template {
    /// Parses and validates a template; `source` names it in messages.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Template> {
        let list = NetworkConfigList::from_bytes(bytes).map_err(|e| {
            HarnessError::Usage(format!(
                "conflist {source}: {}",
                e.to_string().replace("<bytes>", source)
            ))
        })?;
        let json: Value = serde_json::from_slice(bytes)
            .map_err(|e| HarnessError::Usage(format!("conflist {source}: {e}")))?;
        let has_host_local = list
            .plugins
            .iter()
            .any(|p| ipam_type(p) == Some("host-local"));
        if !has_host_local {
            return Err(HarnessError::Usage(format!(
                "conflist {source}: no plugin uses host-local IPAM, so kubesim cannot give nodes their pod CIDRs"
            )));
        }
        let dual_stack = list
            .plugins
            .iter()
            .filter_map(|p| p.get("ipam"))
            .any(ipam_has_v6);
        Ok(Template {
            list,
            json,
            dual_stack,
        })
    }

    /// Loads the template from a file, or the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Template> {
        match path {
            None => Template::parse(DEFAULT_TEMPLATE.as_bytes(), "(built-in 10-bridge.conflist)"),
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|e| {
                    HarnessError::Usage(format!("cannot read conflist {}: {e}", p.display()))
                })?;
                Template::parse(&bytes, &p.display().to_string())
            }
        }
    }

    /// Every plugin (and IPAM plugin) the template needs must be in `bin_dir`.
    pub fn check_plugins(&self, bin_dir: &Path) -> Result<()> {
        let path = vec![bin_dir.to_path_buf()];
        for plugin in &self.list.plugins {
            let kinds = [
                plugin.get("type"),
                plugin.get("ipam").and_then(|i| i.get("type")),
            ];
            for kind in kinds.into_iter().flatten().filter_map(Value::as_str) {
                find_plugin(kind, &path).map_err(|_| {
                    HarnessError::Usage(format!(
                        "plugin {kind:?} (needed by network {:?}) not found in CNI bin dir {}",
                        self.list.name,
                        bin_dir.display()
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// The bridge name of the first bridge plugin (`cni0` by default).
    pub fn bridge_name(&self) -> String {
        self.list
            .plugins
            .iter()
            .find(|p| p.get("type").and_then(Value::as_str) == Some("bridge"))
            .and_then(|p| p.get("bridge"))
            .and_then(Value::as_str)
            .unwrap_or("cni0")
            .to_string()
    }

    /// The node's conflist: every host-local IPAM gets the node's ranges and dataDir.
    pub fn for_node(&self, cidrs: &[String], data_dir: &Path) -> Value {
        let mut json = self.json.clone();
        if let Some(Value::Array(plugins)) = json.get_mut("plugins") {
            for plugin in plugins.iter_mut() {
                if let Some(Value::Object(ipam)) = plugin.get_mut("ipam") {
                    if ipam.get("type").and_then(Value::as_str) == Some("host-local") {
                        patch_ipam(ipam, cidrs, data_dir);
                    }
                }
            }
        }
        json
    }
}

fn ipam_type(plugin: &Map<String, Value>) -> Option<&str> {
    plugin.get("ipam")?.get("type")?.as_str()
}

fn ipam_has_v6(ipam: &Value) -> bool {
    let subnet_v6 = |v: &Value| {
        v.get("subnet")
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains(':'))
    };
    if subnet_v6(ipam) {
        return true;
    }
    ipam.get("ranges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .any(subnet_v6)
}

fn patch_ipam(ipam: &mut Map<String, Value>, cidrs: &[String], data_dir: &Path) {
    for key in ["subnet", "rangeStart", "rangeEnd", "gateway"] {
        ipam.remove(key);
    }
    let ranges: Vec<Value> = cidrs.iter().map(|c| json!([{ "subnet": c }])).collect();
    ipam.insert("ranges".into(), Value::Array(ranges));
    ipam.insert(
        "dataDir".into(),
        Value::String(data_dir.display().to_string()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_patches_per_node() {
        let t = Template::load(None).expect("built-in template");
        assert!(!t.dual_stack);
        let conf = t.for_node(&[pod_cidr_v4(2)], Path::new("/tmp/x"));
        let ipam = &conf["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"], json!([[{"subnet": "10.244.2.0/24"}]]));
        assert_eq!(ipam["dataDir"], "/tmp/x");
        assert_eq!(t.bridge_name(), "cni0");
    }

    #[test]
    fn dual_stack_detected() {
        let t = Template::parse(
            include_bytes!("../../../../conf/20-bridge-dualstack.conflist"),
            "ds",
        )
        .expect("parse");
        assert!(t.dual_stack);
    }

    #[test]
    fn rejects_template_without_host_local() {
        let bytes = br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#;
        let err = Template::parse(bytes, "t")
            .expect_err("no host-local")
            .to_string();
        assert!(err.contains("host-local"), "{err}");
    }
}
