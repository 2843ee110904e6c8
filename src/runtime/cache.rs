//! libcni's result cache: one JSON file per attachment at
//! `<cacheDir>/results/<network>-<containerID>-<ifname>` (dir 0700, file 0600),
//! written after a successful ADD and removed after DEL. Same fields and key
//! order as libcni's `cachedInfo`, so containerd/cnitool and we can read each
//! other's entries.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::base64;
use super::error::{Result, RuntimeError};

/// The only cache kind libcni writes.
pub const CACHE_KIND: &str = "cniCacheV1";

/// One cache entry (libcni `cachedInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedInfo {
    /// Always [`CACHE_KIND`].
    pub kind: String,
    /// `CNI_CONTAINERID` of the attachment.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The conflist bytes, base64 as Go encodes `[]byte`.
    #[serde(with = "b64")]
    pub config: Vec<u8>,
    /// `CNI_IFNAME`.
    #[serde(rename = "ifName")]
    pub if_name: String,
    /// Network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// `CNI_NETNS` at ADD time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    /// `CNI_ARGS` as pairs.
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<[String; 2]>,
    /// Capability args given to the ADD.
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    /// The final ADD result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::base64::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        super::base64::decode(&text)
            .ok_or_else(|| serde::de::Error::custom("config is not valid base64"))
    }
}

/// The cache of one runtime (`cacheDir`, default `/var/lib/cni`).
#[derive(Clone, Debug)]
pub struct ResultCache {
    /// The cache dir; entries live in its `results/` subdir.
    pub dir: PathBuf,
}

impl ResultCache {
    /// `results/` under the cache dir.
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// Path of one attachment's entry.
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.results_dir()
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Writes (replaces) an entry with libcni's modes.
    pub fn write(&self, info: &CachedInfo) -> Result<PathBuf> {
        let path = self.path(&info.network_name, &info.container_id, &info.if_name);
        let err = |reason: String| RuntimeError::Cache {
            path: path.clone(),
            reason,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.results_dir())
            .map_err(|e| err(format!("create dir: {e}")))?;
        let bytes = serde_json::to_vec(info).map_err(|e| err(format!("encode: {e}")))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| err(format!("open: {e}")))?;
        file.write_all(&bytes)
            .map_err(|e| err(format!("write: {e}")))?;
        Ok(path)
    }

    /// Reads an entry; `Ok(None)` if absent (libcni ignores read errors).
    pub fn read(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CachedInfo>> {
        let path = self.path(network, container_id, ifname);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(None);
        };
        parse_entry(&path, &bytes).map(Some)
    }

    /// Removes an entry; a missing one is fine.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(network, container_id, ifname);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::Cache {
                path,
                reason: format!("remove: {e}"),
            }),
        }
    }

    /// Every valid entry, sorted by file name (libcni `GetCachedAttachments`);
    /// unreadable or foreign files are skipped.
    pub fn list(&self) -> Vec<CachedInfo> {
        let Ok(rd) = std::fs::read_dir(self.results_dir()) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        paths
            .iter()
            .filter_map(|p| std::fs::read(p).ok().map(|b| (p, b)))
            .filter_map(|(p, b)| parse_entry(p, &b).ok())
            .filter(|i| !i.if_name.is_empty() && !i.network_name.is_empty())
            .collect()
    }
}

fn parse_entry(path: &Path, bytes: &[u8]) -> Result<CachedInfo> {
    let info: CachedInfo = serde_json::from_slice(bytes).map_err(|e| RuntimeError::Cache {
        path: path.to_path_buf(),
        reason: format!("decode: {e}"),
    })?;
    if info.kind != CACHE_KIND {
        return Err(RuntimeError::Cache {
            path: path.to_path_buf(),
            reason: format!("wrong kind {:?}", info.kind),
        });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_libcni_field_order() {
        let info = CachedInfo {
            kind: CACHE_KIND.into(),
            container_id: "c1".into(),
            config: b"{}".to_vec(),
            if_name: "eth0".into(),
            network_name: "net".into(),
            netns: "/proc/1/ns/net".into(),
            cni_args: vec![["IgnoreUnknown".into(), "1".into()]],
            capability_args: Map::new(),
            result: Some(serde_json::json!({"cniVersion": "1.1.0"})),
        };
        let text = serde_json::to_string(&info).expect("encode");
        assert_eq!(
            text,
            r#"{"kind":"cniCacheV1","containerId":"c1","config":"e30=","ifName":"eth0","networkName":"net","netns":"/proc/1/ns/net","cniArgs":[["IgnoreUnknown","1"]],"result":{"cniVersion":"1.1.0"}}"#
        );
        let back: CachedInfo = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, info);
        assert_eq!(base64::decode("e30="), Some(b"{}".to_vec()));
    }
}
