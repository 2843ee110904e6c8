//! The network configuration a plugin reads on stdin: the common fields
//! every plugin understands, with the whole object kept for plugin-specific
//! keys.

use super::casefold::casefold_from_value;
use super::result::{CniResult, Dns};
use super::version::DEFAULT_CONFIG_VERSION;
use crate::error::{codes, CniError, Result};
use serde_json::{Map, Value};

/// Common network config fields (Go `types.NetConf` plus the reserved keys).
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`; "0.1.0" when missing or empty (Go `DecodeVersion`).
    pub cni_version: String,
    /// `name`: validated against `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
    pub name: String,
    /// `type`: empty when missing (Go is lenient when decoding).
    pub plugin_type: String,
    /// `ipam` object, if present and not null.
    pub ipam: Option<Value>,
    /// `dns`, if present and not null.
    pub dns: Option<Dns>,
    /// `prevResult` as sent (any version); see [`NetConf::prev_result`].
    pub prev_result: Option<Value>,
    /// `runtimeConfig` (empty when absent or null).
    pub runtime_config: Map<String, Value>,
    /// `args` object, if present and not null.
    pub args: Option<Value>,
    /// The whole stdin object, for plugin-specific keys.
    pub raw: Value,
}

/// Validates a network name (Go `utils.ValidateNetworkName`): code 7 when
/// empty or with characters outside `[a-zA-Z0-9_.-]` or not starting with an
/// alphanumeric. This also guarantees it contains no `/` and is not `.`/`..`,
/// so it is safe as a path component.
pub fn validate_network_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(CniError::new(codes::INVALID_CONFIG, "missing network name"));
    }
    if !is_valid_id(name) {
        return Err(CniError::new(
            codes::INVALID_CONFIG,
            "invalid characters found in network name",
        )
        .with_details(name));
    }
    Ok(())
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, shared by network names and container IDs.
pub(crate) fn is_valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Finds a key like Go: exact first, then ASCII case-insensitive.
pub fn lookup_ci<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).or_else(|| {
        m.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .next_back()
    })
}

/// How a JSON value's type is named in error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn decode_err(field: &str, want: &str, got: &Value) -> CniError {
    CniError::new(
        codes::DECODE,
        format!(
            "failed to decode network config: field {field:?} must be {want}, got {}",
            json_kind(got)
        ),
    )
}

/// A string field; `None` when absent or null.
fn opt_string(m: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match lookup_ci(m, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(decode_err(key, "a string", other)),
    }
}

/// An object field; `None` when absent or null.
fn opt_object<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Value>> {
    match lookup_ci(m, key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(other) => Err(decode_err(key, "an object", other)),
    }
}

impl NetConf {
    /// Parses stdin bytes. Code 6 for malformed JSON, a non-object document
    /// or a common field of the wrong type (the message names the field);
    /// code 7 for a missing or invalid `name`.
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let raw: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                codes::DECODE,
                format!("failed to parse network config: {e}"),
            )
        })?;
        NetConf::from_value(raw)
    }

    /// Like [`NetConf::parse`] for an already-decoded document.
    pub fn from_value(raw: Value) -> Result<NetConf> {
        let Value::Object(m) = &raw else {
            return Err(CniError::new(
                codes::DECODE,
                format!(
                    "failed to decode network config: must be a JSON object, got {}",
                    json_kind(&raw)
                ),
            ));
        };
        let cni_version = opt_string(m, "cniVersion")?
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_CONFIG_VERSION.to_string());
        let name = opt_string(m, "name")?.unwrap_or_default();
        validate_network_name(&name)?;
        let plugin_type = opt_string(m, "type")?.unwrap_or_default();
        let ipam = opt_object(m, "ipam")?.cloned();
        if let Some(t) = ipam.as_ref().and_then(|i| i.get("type")) {
            if !t.is_string() && !t.is_null() {
                return Err(decode_err("ipam.type", "a string", t));
            }
        }
        let dns = match opt_object(m, "dns")? {
            None => None,
            Some(v) => Some(casefold_from_value::<Dns>(v.clone()).map_err(|e| {
                CniError::new(
                    codes::DECODE,
                    format!("failed to decode network config: field \"dns\": {e}"),
                )
            })?),
        };
        let prev_result = opt_object(m, "prevResult")?.cloned();
        let runtime_config = match opt_object(m, "runtimeConfig")? {
            Some(Value::Object(rc)) => rc.clone(),
            _ => Map::new(),
        };
        let args = opt_object(m, "args")?.cloned();
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            ipam,
            dns,
            prev_result,
            runtime_config,
            args,
            raw,
        })
    }

    /// `ipam.type` when set and non-empty (empty means L2-only for bridge).
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam
            .as_ref()?
            .get("type")?
            .as_str()
            .filter(|s| !s.is_empty())
    }

    /// `prevResult` parsed in the config's version (a missing `cniVersion`
    /// inside it means the config's). `None` when absent.
    pub fn prev_result(&self) -> Result<Option<CniResult>> {
        self.prev_result
            .as_ref()
            .map(|v| CniResult::from_json_any(v, &self.cni_version))
            .transpose()
    }

    /// A top-level key of the raw config, matched like Go (exact, then
    /// case-insensitive).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.raw.as_object().and_then(|m| lookup_ci(m, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_common_fields() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"net1","type":"bridge","bridge":"cni0",
                 "ipam":{"type":"host-local","subnet":"10.1.0.0/16"},
                 "dns":{"nameservers":["10.1.0.1"]},
                 "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/16"}]},
                 "runtimeConfig":{"mac":"aa:bb:cc:dd:ee:ff"},"args":{"cni":{"ips":["10.1.0.9"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.name, "net1");
        assert_eq!(c.plugin_type, "bridge");
        assert_eq!(c.ipam_type(), Some("host-local"));
        assert_eq!(c.dns.as_ref().unwrap().nameservers, vec!["10.1.0.1"]);
        assert_eq!(c.runtime_config["mac"], "aa:bb:cc:dd:ee:ff");
        assert_eq!(c.args.as_ref().unwrap()["cni"]["ips"][0], "10.1.0.9");
        assert_eq!(c.get("bridge"), Some(&json!("cni0")));
        let prev = c.prev_result().unwrap().unwrap();
        assert_eq!(prev.ips[0].address.to_string(), "10.1.0.2/16");
    }

    #[test]
    fn defaults() {
        let c = NetConf::parse(br#"{"name":"n"}"#).unwrap();
        assert_eq!(c.cni_version, "0.1.0");
        assert_eq!(c.plugin_type, "");
        assert!(c.ipam.is_none() && c.dns.is_none() && c.prev_result.is_none());
        assert!(c.runtime_config.is_empty());
        assert_eq!(c.ipam_type(), None);
        assert_eq!(c.prev_result().unwrap(), None);
        let c = NetConf::parse(br#"{"name":"n","cniVersion":"","ipam":{},"runtimeConfig":null}"#)
            .unwrap();
        assert_eq!(c.cni_version, "0.1.0");
        assert_eq!(c.ipam_type(), None);
    }

    #[test]
    fn prev_result_without_version_uses_config_version() {
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","prevResult":{"ips":[{"version":"4","address":"10.0.0.2/24"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.prev_result().unwrap().unwrap().cni_version, "0.4.0");
    }

    #[test]
    fn go_style_keys() {
        let c = NetConf::parse(br#"{"CNIVersion":"0.3.1","Name":"n","Type":"bridge"}"#).unwrap();
        assert_eq!(c.cni_version, "0.3.1");
        assert_eq!(c.plugin_type, "bridge");
    }

    #[test]
    fn decode_errors_are_code_6() {
        for (input, needle) in [
            (&b"{"[..], "failed to parse"),
            (b"", "failed to parse"),
            (b"[]", "must be a JSON object, got an array"),
            (
                br#"{"name":"n","cniVersion":1}"#,
                "\"cniVersion\" must be a string",
            ),
            (br#"{"name":5}"#, "\"name\" must be a string"),
            (br#"{"name":"n","type":[]}"#, "\"type\""),
            (br#"{"name":"n","ipam":"x"}"#, "\"ipam\" must be an object"),
            (br#"{"name":"n","ipam":{"type":1}}"#, "ipam.type"),
            (br#"{"name":"n","dns":{"nameservers":"x"}}"#, "\"dns\""),
            (br#"{"name":"n","prevResult":[]}"#, "prevResult"),
            (br#"{"name":"n","runtimeConfig":1}"#, "runtimeConfig"),
            (br#"{"name":"n","args":"a"}"#, "args"),
        ] {
            let e = NetConf::parse(input).unwrap_err();
            assert_eq!(e.code(), 6, "{}", String::from_utf8_lossy(input));
            assert!(
                e.msg().contains(needle),
                "{} -> {}",
                String::from_utf8_lossy(input),
                e
            );
        }
    }

    #[test]
    fn name_errors_are_code_7() {
        for input in [
            &br#"{}"#[..],
            br#"{"name":""}"#,
            br#"{"name":null}"#,
            br#"{"name":"../etc"}"#,
            br#"{"name":"a/b"}"#,
            br#"{"name":"."}"#,
            br#"{"name":"-a"}"#,
            br#"{"name":"a b"}"#,
            br#"{"name":"caf\u00e9"}"#,
        ] {
            let e = NetConf::parse(input).unwrap_err();
            assert_eq!(e.code(), 7, "{}", String::from_utf8_lossy(input));
        }
        NetConf::parse(br#"{"name":"a.b_c-D9"}"#).unwrap();
    }
}
