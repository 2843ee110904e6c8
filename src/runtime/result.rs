//! Plugin results as the runtime handles them: parsed into the spec model
//! ([`CniResult`]) in whatever version the plugin printed, and converted to
//! the config's version before being handed back as a `prevResult`.

use ipnet::IpNet;
use serde_json::Value;

use super::error::{Result, RuntimeError};
use crate::spec::CniResult;

/// Parses a plugin's ADD output (libcni `create.CreateFromBytes`); a missing
/// `cniVersion` means the config's (libcni `fixupResultVersion`).
pub fn parse(plugin: &str, out: &[u8], config_version: &str) -> Result<CniResult> {
    let bad = |reason: String| RuntimeError::BadResult {
        plugin: plugin.to_string(),
        command: "ADD".into(),
        reason,
    };
    let value: Value = serde_json::from_slice(out).map_err(|e| {
        bad(format!(
            "invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(out)
        ))
    })?;
    CniResult::from_json_any(&value, config_version).map_err(|e| bad(e.to_string()))
}

/// The result as JSON in its own version (what libcni marshals into the
/// cache and into the next plugin's `prevResult`).
pub fn to_json(plugin: &str, result: &CniResult) -> Result<Value> {
    result
        .to_json_version(&result.cni_version)
        .map_err(|e| RuntimeError::BadResult {
            plugin: plugin.to_string(),
            command: "ADD".into(),
            reason: e.to_string(),
        })
}

/// A cached result converted to `version` (libcni `getCachedResult`).
pub fn to_version(result: &Value, version: &str) -> Result<CniResult> {
    let convert_err = |reason: String| RuntimeError::Cache {
        path: "result".into(),
        reason: format!("cannot convert cached result to {version}: {reason}"),
    };
    let parsed =
        CniResult::from_json_any(result, version).map_err(|e| convert_err(e.to_string()))?;
    // Round-trip through the target version, so fields it cannot carry are
    // dropped exactly as Go's GetAsVersion does.
    let json = parsed
        .to_json_version(version)
        .map_err(|e| convert_err(e.to_string()))?;
    CniResult::from_json_any(&json, version).map_err(|e| convert_err(e.to_string()))
}

/// The pod IP the kubelet reports: the result's first IP.
pub fn first_ip(result: &CniResult) -> Option<IpNet> {
    result.ips.first().map(|ip| ip.address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_any_version_and_converts() {
        let new = br#"{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mtu":1400}],"ips":[{"address":"10.244.1.5/24","interface":0}]}"#;
        let r = parse("bridge", new, "1.1.0").expect("1.1.0 result");
        assert_eq!(
            first_ip(&r).map(|n| n.to_string()).as_deref(),
            Some("10.244.1.5/24")
        );
        let old = br#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.5/16"}}"#;
        let r = parse("x", old, "0.2.0").expect("0.2.0 result");
        assert_eq!(
            first_ip(&r).map(|n| n.to_string()).as_deref(),
            Some("10.1.0.5/16")
        );
        let cached = json!({"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mtu":1400}],"ips":[{"address":"10.244.1.5/24","interface":0}]});
        let down = to_version(&cached, "0.4.0").expect("1.1.0 -> 0.4.0");
        assert_eq!(down.cni_version, "0.4.0");
        assert_eq!(down.interfaces[0].mtu, None, "0.4.0 has no interface mtu");
        assert!(parse("x", b"nope", "1.0.0").is_err());
        let missing_version =
            parse("x", br#"{"ips":[]}"#, "1.0.0").expect("defaults to config version");
        assert_eq!(missing_version.cni_version, "1.0.0");
    }
}
