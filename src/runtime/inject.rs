//! Deriving the request config each plugin reads on stdin (SPEC §3 "Deriving
//! request configuration", libcni `buildOneConfig`/`injectRuntimeConfig`).

use serde_json::{Map, Value};

use super::RuntimeConf;

/// The plugin object `plugin` with `name`, `cniVersion`, the optional
/// `prevResult`, and `runtimeConfig` = capabilities ∩ capability args
/// (omitted when empty, as libcni does). Serialized with sorted keys, like Go.
pub fn build_one_config(
    name: &str,
    cni_version: &str,
    plugin: &Map<String, Value>,
    prev_result: Option<&Value>,
    rt: Option<&RuntimeConf>,
) -> Vec<u8> {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(name.into()));
    conf.insert("cniVersion".into(), Value::String(cni_version.into()));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    if let Some(rt) = rt {
        let rc = runtime_config(plugin, &rt.capability_args);
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
    }
    // Serializing a Value cannot fail (string keys only).
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

/// The plugin object with only `extra` keys added (GC and STATUS requests).
pub fn inject_keys(plugin: &Map<String, Value>, extra: &[(&str, Value)]) -> Vec<u8> {
    let mut conf = plugin.clone();
    for (k, v) in extra {
        conf.insert((*k).to_string(), v.clone());
    }
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

/// Capability args the plugin declared with `"capabilities": {"x": true}`.
pub fn runtime_config(
    plugin: &Map<String, Value>,
    args: &Map<String, Value>,
) -> Map<String, Value> {
    let Some(Value::Object(caps)) = plugin.get("capabilities") else {
        return Map::new();
    };
    caps.iter()
        .filter(|(_, enabled)| enabled.as_bool() == Some(true))
        .filter_map(|(cap, _)| args.get(cap).map(|v| (cap.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn injects_name_version_prev_and_runtime_config() {
        let plugin = obj(
            json!({"type": "portmap", "name": "wrong", "capabilities": {"portMappings": true, "mac": false}}),
        );
        let rt = RuntimeConf {
            capability_args: obj(
                json!({"portMappings": [{"hostPort": 80}], "mac": "aa", "ips": []}),
            ),
            ..RuntimeConf::default()
        };
        let prev = json!({"cniVersion": "1.1.0", "ips": []});
        let bytes = build_one_config("net", "1.1.0", &plugin, Some(&prev), Some(&rt));
        let got: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            got,
            json!({"type": "portmap", "name": "net", "cniVersion": "1.1.0",
                   "capabilities": {"portMappings": true, "mac": false},
                   "prevResult": prev, "runtimeConfig": {"portMappings": [{"hostPort": 80}]}})
        );
        // Keys come out sorted, like Go's encoding of a map.
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.starts_with(r#"{"capabilities":"#), "{text}");
    }

    #[test]
    fn omits_empty_runtime_config() {
        let plugin = obj(json!({"type": "bridge"}));
        let rt = RuntimeConf {
            capability_args: obj(json!({"mac": "aa"})),
            ..RuntimeConf::default()
        };
        let got: Value =
            serde_json::from_slice(&build_one_config("n", "1.0.0", &plugin, None, Some(&rt)))
                .expect("json");
        assert_eq!(
            got,
            json!({"type": "bridge", "name": "n", "cniVersion": "1.0.0"})
        );
    }
}
