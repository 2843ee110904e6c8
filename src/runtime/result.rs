//! Reading what the runtime needs from a plugin result, in any cniVersion.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

/// The first IP of a result: `ips[0].address` (0.3.0 and later) or
/// `ip4.ip` / `ip6.ip` (0.1.0/0.2.0). This is the pod IP the kubelet reports.
pub fn first_ip(result: &Value) -> Option<IpNet> {
    let text = result
        .get("ips")
        .and_then(|ips| ips.get(0))
        .and_then(|ip| ip.get("address"))
        .or_else(|| result.get("ip4").and_then(|v| v.get("ip")))
        .or_else(|| result.get("ip6").and_then(|v| v.get("ip")))?
        .as_str()?;
    text.parse().ok()
}

/// Every IP of a result (without prefix lengths), in order.
pub fn all_ips(result: &Value) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = result
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address")?.as_str()?.parse::<IpNet>().ok())
                .map(|n| n.addr())
                .collect()
        })
        .unwrap_or_default();
    for key in ["ip4", "ip6"] {
        if let Some(n) = result
            .get(key)
            .and_then(|v| v.get("ip"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IpNet>().ok())
        {
            out.push(n.addr());
        }
    }
    out
}

/// The result converted to `version` (libcni converts a cached result to the
/// config's version before DEL/CHECK).
pub fn to_version(result: &Value, version: &str) -> super::Result<Value> {
    let current = result
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or(version);
    if current == version {
        return Ok(result.clone());
    }
    Err(super::RuntimeError::InvalidArgument(format!(
        "cannot convert cached result from {current} to {version}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_ip_in_every_shape() {
        let new = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.244.1.5/24"}, {"address": "fd10::5/64"}]});
        assert_eq!(
            first_ip(&new).map(|n| n.to_string()).as_deref(),
            Some("10.244.1.5/24")
        );
        assert_eq!(all_ips(&new).len(), 2);
        let old = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/16"}});
        assert_eq!(
            first_ip(&old).map(|n| n.to_string()).as_deref(),
            Some("10.1.0.5/16")
        );
        assert_eq!(first_ip(&json!({"cniVersion": "1.0.0"})), None);
    }
}
