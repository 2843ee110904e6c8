//! The ADD result: the internal 1.1.0-shaped model and its conversion to and
//! from every wire version (Go `pkg/types/{020,040,100}`).
//!
//! Output mimics Go's `encoding/json`: empty fields are omitted, except
//! `dns`, which every version prints, `"dns": {}` when empty (Go's
//! `omitempty` never omits a struct: the reference prints it so, and byte
//! parity costs nothing); fields a version does not know are dropped.

use super::casefold::casefold_from_value;
use super::version::check_version;
use crate::error::{codes, CniError, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;

/// An ADD result in the 1.1.0 shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    /// Version the result was parsed from or is meant for; printing uses the
    /// version passed to [`CniResult::to_json_version`] instead.
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// An interface created by the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    /// Lowercase `aa:bb:...` (Go `HardwareAddr.String()`).
    #[serde(default, skip_serializing_if = "opt_str_empty")]
    pub mac: Option<String>,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "opt_zero")]
    pub mtu: Option<u32>,
    /// Netns path for container-side interfaces; absent for host ones.
    #[serde(default, skip_serializing_if = "opt_str_empty")]
    pub sandbox: Option<String>,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "opt_str_empty")]
    pub socket_path: Option<String>,
    /// 1.1.0 only.
    #[serde(rename = "pciID", default, skip_serializing_if = "opt_str_empty")]
    pub pci_id: Option<String>,
}

/// An address assigned to an interface, `address` in CIDR form with the
/// host address kept (e.g. `10.1.0.5/16`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A route to install in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "opt_zero")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "opt_zero")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "opt_zero")]
    pub priority: Option<u32>,
    /// 1.1.0 only; a pointer in Go, so 0 is printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// 1.1.0 only (0 global, 253 link, 254 host); 0 is printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// DNS settings (also the `dns` key of a network config).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "opt_str_empty")]
    pub domain: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub search: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set (Go `DNS.IsEmpty`).
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.as_deref().unwrap_or_default().is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl Route {
    /// A route with only `dst` and optional `gw`.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

fn opt_str_empty(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(str::is_empty)
}

fn opt_zero(v: &Option<u32>) -> bool {
    v.is_none_or(|n| n == 0)
}

/// Go decodes `null` into a nil slice; accept it too.
fn null_vec<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

// ---- wire shapes -------------------------------------------------------

/// 1.0.0/1.1.0 `ips[]` entry.
#[derive(Serialize, Deserialize)]
struct WireIp1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

/// 0.3.x/0.4.0 `ips[]` entry.
#[derive(Serialize, Deserialize)]
struct WireIp04 {
    #[serde(default)]
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

/// 0.3.x/0.4.0 interface: no mtu/socketPath/pciID.
#[derive(Serialize, Deserialize)]
struct WireIface04 {
    name: String,
    #[serde(default, skip_serializing_if = "opt_str_empty")]
    mac: Option<String>,
    #[serde(default, skip_serializing_if = "opt_str_empty")]
    sandbox: Option<String>,
}

/// 1.0.0/1.1.0 result: `dns` always printed, as the reference does.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire1 {
    #[serde(default)]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<WireIp1>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

/// 0.3.0/0.3.1/0.4.0 result: `dns` always printed.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire04 {
    #[serde(default)]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<WireIface04>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<WireIp04>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

/// 0.1.0/0.2.0 route: dst/gw only.
#[derive(Serialize, Deserialize)]
struct WireRoute02 {
    dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

/// 0.1.0/0.2.0 `ip4`/`ip6` block.
#[derive(Serialize, Deserialize)]
struct WireIp02 {
    ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<WireRoute02>,
}

/// 0.1.0/0.2.0 result.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire02 {
    #[serde(default)]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<WireIp02>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<WireIp02>,
    #[serde(default)]
    dns: Dns,
}

/// One of the wire shapes, ready to serialize with Go's field order.
enum Wire {
    V1(Wire1),
    V04(Wire04),
    V02(Wire02),
}

impl Wire {
    fn to_value(&self) -> Result<Value> {
        let v = match self {
            Wire::V1(w) => serde_json::to_value(w),
            Wire::V04(w) => serde_json::to_value(w),
            Wire::V02(w) => serde_json::to_value(w),
        };
        v.map_err(|e| CniError::internal(format!("failed to encode result: {e}")))
    }

    fn to_string_pretty(&self) -> Result<String> {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        let r = match self {
            Wire::V1(w) => w.serialize(&mut ser),
            Wire::V04(w) => w.serialize(&mut ser),
            Wire::V02(w) => w.serialize(&mut ser),
        };
        r.map_err(|e| CniError::internal(format!("failed to encode result: {e}")))?;
        String::from_utf8(buf).map_err(|e| CniError::internal(format!("result not UTF-8: {e}")))
    }
}

fn family(n: &IpNet) -> &'static str {
    match n {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    }
}

impl CniResult {
    fn to_wire(&self, version: &str) -> Result<Wire> {
        check_version(version)?;
        let v11 = version == "1.1.0";
        match version {
            "1.0.0" | "1.1.0" => Ok(Wire::V1(Wire1 {
                cni_version: version.to_string(),
                interfaces: self
                    .interfaces
                    .iter()
                    .map(|i| {
                        let mut i = i.clone();
                        if !v11 {
                            i.mtu = None;
                            i.socket_path = None;
                            i.pci_id = None;
                        }
                        i
                    })
                    .collect(),
                ips: self
                    .ips
                    .iter()
                    .map(|ip| WireIp1 {
                        interface: ip.interface,
                        address: ip.address,
                        gateway: ip.gateway,
                    })
                    .collect(),
                routes: self.routes.iter().map(|r| route_for(r, v11)).collect(),
                dns: self.dns.clone(),
            })),
            "0.3.0" | "0.3.1" | "0.4.0" => Ok(Wire::V04(Wire04 {
                cni_version: version.to_string(),
                interfaces: self
                    .interfaces
                    .iter()
                    .map(|i| WireIface04 {
                        name: i.name.clone(),
                        mac: i.mac.clone(),
                        sandbox: i.sandbox.clone(),
                    })
                    .collect(),
                ips: self
                    .ips
                    .iter()
                    .map(|ip| WireIp04 {
                        version: family(&ip.address).to_string(),
                        interface: ip.interface,
                        address: ip.address,
                        gateway: ip.gateway,
                    })
                    .collect(),
                routes: self.routes.iter().map(|r| route_for(r, false)).collect(),
                dns: self.dns.clone(),
            })),
            _ => self.to_wire02(version).map(Wire::V02),
        }
    }

    /// Go 0.4.0 → 0.2.0: first IPv4 and first IPv6 only; routes split by
    /// the family of `dst` (dropped when that family has no address).
    fn to_wire02(&self, version: &str) -> Result<Wire02> {
        let block = |v4: bool| {
            let ip = self
                .ips
                .iter()
                .find(|ip| ip.address.addr().is_ipv4() == v4)?;
            Some(WireIp02 {
                ip: ip.address,
                gateway: ip.gateway,
                routes: self
                    .routes
                    .iter()
                    .filter(|r| r.dst.addr().is_ipv4() == v4)
                    .map(|r| WireRoute02 {
                        dst: r.dst,
                        gw: r.gw,
                    })
                    .collect(),
            })
        };
        let (ip4, ip6) = (block(true), block(false));
        if ip4.is_none() && ip6.is_none() {
            return Err(CniError::internal("cannot convert: no valid IP addresses"));
        }
        Ok(Wire02 {
            cni_version: version.to_string(),
            ip4,
            ip6,
            dns: self.dns.clone(),
        })
    }

    /// The result as JSON in `version` (which must be supported: code 1
    /// otherwise). Fails with code 999 "cannot convert: no valid IP
    /// addresses" for 0.1.0/0.2.0 when there is no IP, as Go does.
    pub fn to_json_version(&self, version: &str) -> Result<Value> {
        self.to_wire(version)?.to_value()
    }

    /// The result as the text a plugin prints: JSON in `version` with Go's
    /// field order and 4-space indentation (like Go's `PrintResult`).
    pub fn to_string_version(&self, version: &str) -> Result<String> {
        self.to_wire(version)?.to_string_pretty()
    }

    /// Parses a result of any supported version (a `prevResult`, an IPAM
    /// result) into the internal model. A missing or empty `cniVersion`
    /// means `default_version` (Go `ParsePrevResult`). Keys are matched
    /// like Go does (case-insensitively). Errors: code 1 for an unknown
    /// version, code 6 for malformed content.
    pub fn from_json_any(v: &Value, default_version: &str) -> Result<CniResult> {
        let obj = v
            .as_object()
            .ok_or_else(|| CniError::new(codes::DECODE, "result is not a JSON object"))?;
        let version = obj
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("cniVersion"))
            .map(|(_, v)| v)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(default_version)
            .to_string();
        check_version(&version)?;
        let decode_err = |e: serde_json::Error| {
            CniError::new(
                codes::DECODE,
                format!("failed to decode {version} result: {e}"),
            )
        };
        let mut out = match version.as_str() {
            "1.0.0" | "1.1.0" => {
                let w: Wire1 = casefold_from_value(v.clone()).map_err(decode_err)?;
                CniResult {
                    cni_version: String::new(),
                    interfaces: w.interfaces,
                    ips: w
                        .ips
                        .into_iter()
                        .map(|ip| IpConfig {
                            address: ip.address,
                            gateway: ip.gateway,
                            interface: ip.interface,
                        })
                        .collect(),
                    routes: w.routes,
                    dns: w.dns,
                }
            }
            "0.3.0" | "0.3.1" | "0.4.0" => {
                let w: Wire04 = casefold_from_value(v.clone()).map_err(decode_err)?;
                CniResult {
                    cni_version: String::new(),
                    interfaces: w
                        .interfaces
                        .into_iter()
                        .map(|i| Interface {
                            name: i.name,
                            mac: i.mac,
                            sandbox: i.sandbox,
                            ..Interface::default()
                        })
                        .collect(),
                    ips: w
                        .ips
                        .into_iter()
                        .map(|ip| IpConfig {
                            address: ip.address,
                            gateway: ip.gateway,
                            interface: ip.interface,
                        })
                        .collect(),
                    routes: w.routes,
                    dns: w.dns,
                }
            }
            _ => {
                let w: Wire02 = casefold_from_value(v.clone()).map_err(decode_err)?;
                let mut r = CniResult {
                    dns: w.dns,
                    ..CniResult::default()
                };
                for block in [w.ip4, w.ip6].into_iter().flatten() {
                    r.ips.push(IpConfig {
                        address: block.ip,
                        gateway: block.gateway,
                        interface: None,
                    });
                    r.routes
                        .extend(block.routes.into_iter().map(|rt| Route::new(rt.dst, rt.gw)));
                }
                r
            }
        };
        out.cni_version = version;
        Ok(out)
    }
}

/// Drops the 1.1-only route fields when printing an older version.
fn route_for(r: &Route, v11: bool) -> Route {
    let mut r = r.clone();
    if !v11 {
        r.table = None;
        r.scope = None;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        CniResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: Some("aa:bb:cc:dd:ee:01".into()),
                    mtu: Some(1500),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("aa:bb:cc:dd:ee:02".into()),
                    mtu: Some(1400),
                    sandbox: Some("/run/netns/x".into()),
                    socket_path: Some("/s".into()),
                    pci_id: Some("0000:00:01.0".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/16".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "10.2.0.5/16".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd10::5/64".parse().unwrap(),
                    gateway: Some("fd10::1".parse().unwrap()),
                    interface: Some(1),
                },
            ],
            routes: vec![
                Route::new(
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.1.0.1".parse().unwrap()),
                ),
                Route {
                    mtu: Some(1300),
                    table: Some(0),
                    scope: Some(253),
                    ..Route::new("10.9.0.0/16".parse().unwrap(), None)
                },
                Route::new("::/0".parse().unwrap(), None),
            ],
            dns: Dns {
                nameservers: vec!["10.1.0.1".into()],
                domain: Some("example.com".into()),
                search: vec![],
                options: vec!["ndots:2".into()],
            },
        }
    }

    #[test]
    fn golden_1_1_0() {
        let v = sample().to_json_version("1.1.0").unwrap();
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01", "mtu": 1500},
                    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "mtu": 1400, "sandbox": "/run/netns/x",
                     "socketPath": "/s", "pciID": "0000:00:01.0"}
                ],
                "ips": [
                    {"interface": 1, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
                    {"interface": 1, "address": "10.2.0.5/16"},
                    {"interface": 1, "address": "fd10::5/64", "gateway": "fd10::1"}
                ],
                "routes": [
                    {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
                    {"dst": "10.9.0.0/16", "mtu": 1300, "table": 0, "scope": 253},
                    {"dst": "::/0"}
                ],
                "dns": {"nameservers": ["10.1.0.1"], "domain": "example.com", "options": ["ndots:2"]}
            })
        );
    }

    #[test]
    fn golden_1_0_0_drops_1_1_fields() {
        let v = sample().to_json_version("1.0.0").unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(
            v["interfaces"],
            json!([
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/run/netns/x"}
            ])
        );
        assert_eq!(v["routes"][1], json!({"dst": "10.9.0.0/16", "mtu": 1300}));
    }

    #[test]
    fn golden_0_4_0_family() {
        for ver in ["0.3.0", "0.3.1", "0.4.0"] {
            let v = sample().to_json_version(ver).unwrap();
            assert_eq!(
                v,
                json!({
                    "cniVersion": ver,
                    "interfaces": [
                        {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/run/netns/x"}
                    ],
                    "ips": [
                        {"version": "4", "interface": 1, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
                        {"version": "4", "interface": 1, "address": "10.2.0.5/16"},
                        {"version": "6", "interface": 1, "address": "fd10::5/64", "gateway": "fd10::1"}
                    ],
                    "routes": [
                        {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
                        {"dst": "10.9.0.0/16", "mtu": 1300},
                        {"dst": "::/0"}
                    ],
                    "dns": {"nameservers": ["10.1.0.1"], "domain": "example.com", "options": ["ndots:2"]}
                })
            );
        }
    }

    #[test]
    fn golden_0_2_0_family() {
        for ver in ["0.1.0", "0.2.0"] {
            let v = sample().to_json_version(ver).unwrap();
            assert_eq!(
                v,
                json!({
                    "cniVersion": ver,
                    "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "10.9.0.0/16"}]},
                    "ip6": {"ip": "fd10::5/64", "gateway": "fd10::1", "routes": [{"dst": "::/0"}]},
                    "dns": {"nameservers": ["10.1.0.1"], "domain": "example.com", "options": ["ndots:2"]}
                })
            );
        }
    }

    #[test]
    fn empty_dns_handling() {
        let mut r = sample();
        r.dns = Dns::default();
        // As the reference (Go `omitempty` on a struct) prints it: always.
        for ver in super::super::SUPPORTED_VERSIONS {
            assert_eq!(r.to_json_version(ver).unwrap()["dns"], json!({}), "{ver}");
        }
        let text = r.to_string_version("1.0.0").unwrap();
        assert!(text.contains("\n    \"dns\": {}\n}"), "{text}");
    }

    #[test]
    fn minimal_results() {
        let r = CniResult::default();
        assert_eq!(
            r.to_json_version("1.1.0").unwrap(),
            json!({"cniVersion": "1.1.0", "dns": {}})
        );
        assert_eq!(
            r.to_json_version("0.3.1").unwrap(),
            json!({"cniVersion": "0.3.1", "dns": {}})
        );
        let e = r.to_json_version("0.2.0").unwrap_err();
        assert_eq!(e.msg(), "cannot convert: no valid IP addresses");
        assert_eq!(e.code(), 999);
        let e = r.to_json_version("0.5.0").unwrap_err();
        assert_eq!(e.code(), 1);
    }

    #[test]
    fn v6_only_for_0_2_0() {
        let mut r = sample();
        r.ips.retain(|ip| ip.address.addr().is_ipv6());
        let v = r.to_json_version("0.2.0").unwrap();
        assert!(v.get("ip4").is_none());
        assert_eq!(v["ip6"]["routes"], json!([{"dst": "::/0"}]));
    }

    #[test]
    fn pretty_text_keeps_go_order() {
        let s = sample().to_string_version("1.1.0").unwrap();
        let cni = s.find("\"cniVersion\"").unwrap();
        let ifs = s.find("\"interfaces\"").unwrap();
        let ips = s.find("\"ips\"").unwrap();
        let routes = s.find("\"routes\"").unwrap();
        let dns = s.find("\"dns\"").unwrap();
        assert!(
            cni < ifs && ifs < ips && ips < routes && routes < dns,
            "{s}"
        );
        assert!(s.starts_with("{\n    \"cniVersion\""), "{s}");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, sample().to_json_version("1.1.0").unwrap());
    }

    #[test]
    fn round_trip_every_version() {
        let full = sample();
        for ver in super::super::SUPPORTED_VERSIONS {
            let v = full.to_json_version(ver).unwrap();
            let back = CniResult::from_json_any(&v, "1.1.0").unwrap();
            assert_eq!(back.cni_version, ver);
            assert_eq!(back.to_json_version(ver).unwrap(), v, "version {ver}");
        }
        let back = CniResult::from_json_any(&full.to_json_version("1.1.0").unwrap(), "x").unwrap();
        assert_eq!(back, full);
    }

    #[test]
    fn parse_0_2_0_upconverts() {
        let v = json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": "fd10::5/64"},
            "dns": {}
        });
        let r = CniResult::from_json_any(&v, "1.0.0").unwrap();
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.ips[0].interface, None);
        assert_eq!(
            r.routes,
            vec![Route::new("0.0.0.0/0".parse().unwrap(), None)]
        );
        assert_eq!(
            r.to_json_version("1.0.0").unwrap(),
            json!({
                "cniVersion": "1.0.0",
                "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}, {"address": "fd10::5/64"}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn parse_missing_version_uses_default() {
        let v = json!({"ips": [{"version": "4", "address": "10.1.0.5/16"}], "dns": {}});
        let r = CniResult::from_json_any(&v, "0.4.0").unwrap();
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.ips[0].address.to_string(), "10.1.0.5/16");
        let v = json!({"cniVersion": "", "ips": [{"address": "10.1.0.5/16"}]});
        assert_eq!(
            CniResult::from_json_any(&v, "1.0.0").unwrap().cni_version,
            "1.0.0"
        );
    }

    #[test]
    fn parse_errors() {
        let e = CniResult::from_json_any(&json!({"cniVersion": "9.9.9"}), "1.0.0").unwrap_err();
        assert_eq!(e.code(), 1);
        let e = CniResult::from_json_any(&json!([]), "1.0.0").unwrap_err();
        assert_eq!(e.code(), 6);
        let bad = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.300/16"}]});
        let e = CniResult::from_json_any(&bad, "1.0.0").unwrap_err();
        assert_eq!(e.code(), 6);
        let bad = json!({"cniVersion": "1.0.0", "interfaces": [{"name": 3}]});
        assert_eq!(
            CniResult::from_json_any(&bad, "1.0.0").unwrap_err().code(),
            6
        );
    }

    #[test]
    fn parse_go_style_keys_and_nulls() {
        let v = json!({"CNIVersion": "1.0.0", "IPs": [{"Address": "10.1.0.5/16", "Interface": 0}],
                       "Interfaces": [{"Name": "eth0", "Mac": "aa:bb:cc:dd:ee:ff"}],
                       "DNS": {"nameservers": null}});
        let r = CniResult::from_json_any(&v, "1.1.0").unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.interfaces[0].mac.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
    }
}
