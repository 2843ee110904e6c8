//! The verbs a runtime runs on a network configuration list (libcni
//! `CNIConfig`: `AddNetworkList`, `DelNetworkList`, `CheckNetworkList`,
//! `GCNetworkList`, `GetStatusNetworkList`).

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use super::cache::{CachedInfo, ResultCache, CACHE_KIND};
use super::conf::{valid_name, NetworkConfigList};
use super::error::{Result, RuntimeError};
use super::exec::{CniEnv, PluginExec};
use super::inject::{build_one_config, inject_keys};
use super::{result, Attachment, RuntimeConf};
use crate::spec::version_at_least;
use crate::spec::CniResult;

/// What a GC run did, for callers that want to confirm "nothing was left".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcReport {
    /// Cached attachments not in the valid set that got a full DEL.
    pub stale_deleted: Vec<Attachment>,
    /// Plugins that were sent `GC` (0 when cniVersion < 1.1.0 or disableGC).
    pub plugins_collected: usize,
}

/// A configured runtime: where plugins are, where results are cached, and
/// (optionally) which netns plugins run in.
#[derive(Clone, Debug)]
pub struct CniConfig {
    /// Plugin lookup and execution.
    pub exec: PluginExec,
    /// The result cache.
    pub cache: ResultCache,
    /// If set, one line per plugin call is appended here (lets the harness
    /// prove that a container restart made no CNI call).
    pub call_log: Option<PathBuf>,
}

impl CniConfig {
    /// A runtime searching `cni_path` and caching under `cache_dir`.
    pub fn new(cni_path: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        CniConfig {
            exec: PluginExec {
                cni_path,
                netns: None,
            },
            cache: ResultCache {
                dir: cache_dir.into(),
            },
            call_log: None,
        }
    }

    /// Runs every plugin inside the netns at `path` (e.g. a node's netns).
    pub fn in_netns(mut self, path: impl Into<PathBuf>) -> Self {
        self.exec.netns = Some(path.into());
        self
    }

    /// Appends one line per plugin call to `path`.
    pub fn with_call_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.call_log = Some(path.into());
        self
    }

    /// ADD: every plugin in order, each getting the previous result as
    /// `prevResult`; the final result is cached and returned.
    pub fn add_network_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<CniResult> {
        validate_runtime_conf(&list.name, rt)?;
        let mut prev: Option<(CniResult, Value)> = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let prev_json = prev.as_ref().map(|(_, json)| json);
            let stdin =
                build_one_config(&list.name, &list.cni_version, plugin, prev_json, Some(rt));
            let out = self.run(list.plugin_type(i), &stdin, env("ADD", rt))?;
            let parsed = result::parse(list.plugin_type(i), &out, &list.cni_version)?;
            let json = result::to_json(list.plugin_type(i), &parsed)?;
            prev = Some((parsed, json));
        }
        let (result, json) = prev.ok_or_else(|| RuntimeError::InvalidConfig {
            path: list.source.clone().unwrap_or_default(),
            reason: "no plugins in list".into(),
        })?;
        self.cache.write(&CachedInfo {
            kind: CACHE_KIND.into(),
            container_id: rt.container_id.clone(),
            config: list.bytes.clone(),
            if_name: rt.ifname.clone(),
            network_name: list.name.clone(),
            netns: rt.netns.clone(),
            cni_args: rt
                .args
                .iter()
                .map(|(k, v)| [k.clone(), v.clone()])
                .collect(),
            capability_args: rt.capability_args.clone(),
            result: Some(json),
        })?;
        Ok(result)
    }

    /// DEL: every plugin in reverse order with the cached result as
    /// `prevResult` (cniVersion ≥ 0.4.0); a missing or corrupt cache means no
    /// `prevResult`. The cache entry is removed once all plugins succeeded.
    pub fn del_network_list(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<()> {
        let cached = if version_at_least(&list.cni_version, "0.4.0") {
            self.cached_prev_result(list, rt).unwrap_or_else(|_| {
                let _ = self.cache.remove(&list.name, &rt.container_id, &rt.ifname);
                None
            })
        } else {
            None
        };
        for i in (0..list.plugins.len()).rev() {
            let stdin = build_one_config(
                &list.name,
                &list.cni_version,
                &list.plugins[i],
                cached.as_ref(),
                Some(rt),
            );
            self.run(list.plugin_type(i), &stdin, env("DEL", rt))?;
        }
        self.cache.remove(&list.name, &rt.container_id, &rt.ifname)
    }

    /// CHECK: every plugin in order with the cached result (0.4.0 and later;
    /// a no-op with `disableCheck`).
    pub fn check_network_list(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<()> {
        if !version_at_least(&list.cni_version, "0.4.0") {
            return Err(RuntimeError::Unsupported {
                version: list.cni_version.clone(),
                command: "CHECK".into(),
            });
        }
        if list.disable_check {
            return Ok(());
        }
        let cached = self.cached_prev_result(list, rt)?;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let stdin = build_one_config(
                &list.name,
                &list.cni_version,
                plugin,
                cached.as_ref(),
                Some(rt),
            );
            self.run(list.plugin_type(i), &stdin, env("CHECK", rt))?;
        }
        Ok(())
    }

    /// GC (libcni `GCNetworkList`): a full DEL for every cached attachment of
    /// this network not in `valid` (`None` = nothing is valid, as in Go), then,
    /// for cniVersion ≥ 1.1.0, `GC` to every plugin with both
    /// `cni.dev/valid-attachments` and the legacy `cni.dev/attachments`.
    /// Keeps going past errors and reports them all.
    pub fn gc_network_list(
        &self,
        list: &NetworkConfigList,
        valid: Option<&[Attachment]>,
    ) -> Result<GcReport> {
        let mut report = GcReport::default();
        if list.disable_gc {
            return Ok(report);
        }
        let valid_set: HashSet<&Attachment> = valid.unwrap_or_default().iter().collect();
        let mut errors = Vec::new();
        for entry in self
            .cache
            .list()
            .into_iter()
            .filter(|e| e.network_name == list.name)
        {
            let att = Attachment {
                container_id: entry.container_id.clone(),
                ifname: entry.if_name.clone(),
            };
            if valid_set.contains(&att) {
                continue;
            }
            let rt = RuntimeConf {
                container_id: entry.container_id,
                netns: entry.netns,
                ifname: entry.if_name,
                args: entry.cni_args.into_iter().map(|[k, v]| (k, v)).collect(),
                capability_args: entry.capability_args,
            };
            match self.del_network_list(list, &rt) {
                Ok(()) => report.stale_deleted.push(att),
                Err(e) => errors.push(e),
            }
        }
        if version_at_least(&list.cni_version, "1.1.0") {
            let mut extra = vec![
                ("name", Value::String(list.name.clone())),
                ("cniVersion", Value::String(list.cni_version.clone())),
            ];
            if let Some(valid) = valid {
                let atts = serde_json::to_value(valid).unwrap_or(Value::Array(Vec::new()));
                extra.push(("cni.dev/valid-attachments", atts.clone()));
                extra.push(("cni.dev/attachments", atts));
            }
            for (i, plugin) in list.plugins.iter().enumerate() {
                let stdin = inject_keys(plugin, &extra);
                match self.run(list.plugin_type(i), &stdin, bare_env("GC")) {
                    Ok(_) => report.plugins_collected += 1,
                    Err(e) => errors.push(e),
                }
            }
        }
        match errors.len() {
            0 => Ok(report),
            1 => Err(errors.remove(0)),
            _ => Err(RuntimeError::Multiple(errors)),
        }
    }

    /// STATUS (cniVersion ≥ 1.1.0, otherwise a no-op): every plugin in order,
    /// stopping at the first error (its code says 50/51 etc.).
    pub fn status_network_list(&self, list: &NetworkConfigList) -> Result<()> {
        if !version_at_least(&list.cni_version, "1.1.0") {
            return Ok(());
        }
        let extra = [
            ("name", Value::String(list.name.clone())),
            ("cniVersion", Value::String(list.cni_version.clone())),
        ];
        for (i, plugin) in list.plugins.iter().enumerate() {
            self.run(
                list.plugin_type(i),
                &inject_keys(plugin, &extra),
                bare_env("STATUS"),
            )?;
        }
        Ok(())
    }

    /// The versions a plugin supports (VERSION, as libcni `GetVersionInfo`
    /// probes it: stdin `{"cniVersion":"1.1.0"}`, dummy netns/ifname).
    pub fn plugin_versions(&self, plugin_type: &str) -> Result<Vec<String>> {
        let env = CniEnv {
            command: "VERSION".into(),
            netns: "dummy".into(),
            ifname: "dummy".into(),
            ..CniEnv::default()
        };
        let out = self.run(plugin_type, br#"{"cniVersion":"1.1.0"}"#, env)?;
        let bad = |reason: String| RuntimeError::BadResult {
            plugin: plugin_type.to_string(),
            command: "VERSION".into(),
            reason,
        };
        let v: Value = serde_json::from_slice(&out).map_err(|e| bad(e.to_string()))?;
        match v.get("supportedVersions").and_then(Value::as_array) {
            Some(list) => Ok(list
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()),
            // Legacy: "0.2.0" without a list means 0.1.0 and 0.2.0.
            None if v.get("cniVersion").and_then(Value::as_str) == Some("0.2.0") => {
                Ok(vec!["0.1.0".into(), "0.2.0".into()])
            }
            None => Err(bad("no supportedVersions".into())),
        }
    }

    /// Every plugin of the list (and its IPAM plugin) exists and supports
    /// the list's cniVersion (libcni `ValidateNetworkList`, plus IPAM).
    pub fn validate_network_list(&self, list: &NetworkConfigList) -> Result<()> {
        for plugin in &list.plugins {
            let ipam = plugin.get("ipam").and_then(|i| i.get("type"));
            let kinds = [plugin.get("type"), ipam];
            for kind in kinds.into_iter().flatten().filter_map(Value::as_str) {
                let supported = self.plugin_versions(kind)?;
                if !supported.contains(&list.cni_version) {
                    return Err(RuntimeError::VersionMismatch {
                        plugin: kind.to_string(),
                        version: list.cni_version.clone(),
                        supported,
                    });
                }
            }
        }
        Ok(())
    }

    /// The cached ADD result of an attachment, if any, converted to the
    /// list's cniVersion (libcni `GetNetworkListCachedResult`).
    pub fn cached_result(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Option<CniResult>> {
        let Some(info) = self.cache.read(&list.name, &rt.container_id, &rt.ifname)? else {
            return Ok(None);
        };
        info.result
            .map(|r| result::to_version(&r, &list.cni_version))
            .transpose()
    }

    /// The cached result as the `prevResult` JSON for DEL/CHECK.
    fn cached_prev_result(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Option<Value>> {
        match self.cached_result(list, rt)? {
            Some(r) => result::to_json("cache", &r).map(Some),
            None => Ok(None),
        }
    }

    fn run(&self, plugin_type: &str, stdin: &[u8], env: CniEnv) -> Result<Vec<u8>> {
        let outcome = self.exec.run(plugin_type, stdin, &env);
        if let Some(path) = &self.call_log {
            let status = match &outcome {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("error: {e}"),
            };
            let line = format!(
                "{} {} {} {} {}\n",
                env.command, plugin_type, env.container_id, env.ifname, status
            );
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
        outcome
    }
}

fn env(command: &str, rt: &RuntimeConf) -> CniEnv {
    CniEnv {
        command: command.into(),
        container_id: rt.container_id.clone(),
        netns: rt.netns.clone(),
        args: rt.args_string(),
        ifname: rt.ifname.clone(),
    }
}

fn bare_env(command: &str) -> CniEnv {
    CniEnv {
        command: command.into(),
        ..CniEnv::default()
    }
}

/// The checks libcni runs before an ADD (`ValidateContainerID`,
/// `ValidateNetworkName`, `ValidateInterfaceName`).
pub fn validate_runtime_conf(network: &str, rt: &RuntimeConf) -> Result<()> {
    let invalid = |m: String| Err(RuntimeError::InvalidArgument(m));
    if !valid_name(&rt.container_id) {
        return invalid(format!("invalid container id {:?}", rt.container_id));
    }
    if !valid_name(network) {
        return invalid(format!("invalid network name {network:?}"));
    }
    let ifname = rt.ifname.as_str();
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname == "."
        || ifname == ".."
        || ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return invalid(format!("invalid interface name {ifname:?}"));
    }
    Ok(())
}
