//! Loading network configurations the way libcni and the CRI runtimes do:
//! `*.conf`, `*.conflist` and `*.json` files of a directory in lexical order,
//! the first valid one wins; a single-plugin `.conf` becomes a one-plugin list.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{Result, RuntimeError};
use crate::spec::{highest_supported, SUPPORTED_VERSIONS};

/// File extensions libcni's `ConfFiles` considers.
pub const CONF_EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// One network configuration list (libcni `NetworkConfigList`).
#[derive(Clone, Debug)]
pub struct NetworkConfigList {
    /// Network name, injected into every plugin config.
    pub name: String,
    /// Selected `cniVersion` (from `cniVersion` or the highest known of `cniVersions`).
    pub cni_version: String,
    /// `disableCheck`: CHECK becomes a no-op.
    pub disable_check: bool,
    /// `disableGC`: GC becomes a no-op.
    pub disable_gc: bool,
    /// The plugin objects, as written in the file.
    pub plugins: Vec<Map<String, Value>>,
    /// The conflist bytes (cached base64-encoded next to each result).
    pub bytes: Vec<u8>,
    /// Where it came from (for messages); `None` for in-memory configs.
    pub source: Option<PathBuf>,
}

impl NetworkConfigList {
    /// The `type` of plugin `i` (validated non-empty at load time).
    pub fn plugin_type(&self, i: usize) -> &str {
        self.plugins[i]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Parses conflist bytes (libcni `ConfListFromBytes`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        parse_list(bytes).map_err(|reason| RuntimeError::InvalidConfig {
            path: PathBuf::from("<bytes>"),
            reason,
        })
    }

    /// Parses a single-plugin `.conf` and wraps it into a list (libcni
    /// `ConfListFromConf`): name and cniVersion move up to the list.
    pub fn from_conf_bytes(bytes: &[u8]) -> Result<Self> {
        conf_to_list(bytes).map_err(|reason| RuntimeError::InvalidConfig {
            path: PathBuf::from("<bytes>"),
            reason,
        })
    }

    /// Loads one file; `.conflist` as a list, anything else as a single plugin.
    pub fn from_file(path: &Path) -> Result<Self> {
        let invalid = |reason: String| RuntimeError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| invalid(format!("read: {e}")))?;
        let is_list = path.extension().is_some_and(|e| e == "conflist");
        let mut list = if is_list {
            parse_list(&bytes)
        } else {
            conf_to_list(&bytes)
        }
        .map_err(invalid)?;
        list.source = Some(path.to_path_buf());
        Ok(list)
    }
}

/// Config files of `dir` in lexical order (libcni `ConfFiles`).
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| RuntimeError::InvalidConfig {
        path: dir.to_path_buf(),
        reason: format!("read config dir: {e}"),
    })?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| CONF_EXTENSIONS.contains(&e))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The first valid configuration of `dir` (what the kubelet's runtime uses).
/// When none is valid, the error lists each file with its reason.
pub fn load_dir(dir: &Path) -> Result<NetworkConfigList> {
    let mut rejected = Vec::new();
    for file in conf_files(dir)? {
        match NetworkConfigList::from_file(&file) {
            Ok(list) => return Ok(list),
            Err(RuntimeError::InvalidConfig { reason, .. }) => rejected.push((file, reason)),
            Err(other) => rejected.push((file, other.to_string())),
        }
    }
    Err(RuntimeError::NoConfig {
        dir: dir.to_path_buf(),
        rejected,
    })
}

/// Network names follow the same rule as container ids (libcni `ValidateNetworkName`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn parse_object(bytes: &[u8]) -> std::result::Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// libcni accepts booleans written as strings ("true"/"false").
fn read_bool(map: &Map<String, Value>, key: &str) -> std::result::Result<bool, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(format!("{key:?} must be a boolean, got {other}")),
    }
}

fn select_version(map: &Map<String, Value>) -> std::result::Result<String, String> {
    if let Some(list) = map.get("cniVersions") {
        let versions: Vec<String> = serde_json::from_value(list.clone())
            .map_err(|e| format!("\"cniVersions\" must be a list of strings: {e}"))?;
        if let Some(v) = highest_supported(&versions) {
            return Ok(v);
        }
    }
    let v = map
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or("missing \"cniVersion\"")?;
    if !SUPPORTED_VERSIONS.contains(&v) {
        return Err(format!(
            "unsupported cniVersion {v:?} (supported: {SUPPORTED_VERSIONS:?})"
        ));
    }
    Ok(v.to_string())
}

fn parse_list(bytes: &[u8]) -> std::result::Result<NetworkConfigList, String> {
    let map = parse_object(bytes)?;
    let name = map
        .get("name")
        .and_then(Value::as_str)
        .ok_or("missing network \"name\"")?
        .to_string();
    if !valid_name(&name) {
        return Err(format!("invalid network name {name:?}"));
    }
    let cni_version = select_version(&map)?;
    let plugins = match map.get("plugins") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err("no plugins in list".into()),
        Some(_) => return Err("\"plugins\" must be a list".into()),
        None => return Err("no 'plugins' key".into()),
    };
    let mut parsed = Vec::with_capacity(plugins.len());
    for (i, p) in plugins.iter().enumerate() {
        let Value::Object(obj) = p else {
            return Err(format!("plugin {i} is not an object"));
        };
        match obj.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => {}
            _ => return Err(format!("plugin {i} has no \"type\"")),
        }
        parsed.push(obj.clone());
    }
    Ok(NetworkConfigList {
        name,
        cni_version,
        disable_check: read_bool(&map, "disableCheck")?,
        disable_gc: read_bool(&map, "disableGC")?,
        plugins: parsed,
        bytes: bytes.to_vec(),
        source: None,
    })
}

fn conf_to_list(bytes: &[u8]) -> std::result::Result<NetworkConfigList, String> {
    let map = parse_object(bytes)?;
    if map.contains_key("plugins") {
        return Err("a conflist (has \"plugins\") in a single-plugin .conf file".into());
    }
    let mut list = Map::new();
    for key in ["name", "cniVersion"] {
        if let Some(v) = map.get(key) {
            list.insert(key.into(), v.clone());
        }
    }
    list.insert("plugins".into(), Value::Array(vec![Value::Object(map)]));
    let bytes = serde_json::to_vec(&Value::Object(list)).map_err(|e| e.to_string())?;
    parse_list(&bytes)
}
