//! The bridge plugin's configuration: parsed from stdin, then validated and
//! defaulted into [`BridgeConf`] before anything touches the kernel
//! (reference `loadNetConf` + `collectVlanTrunk`, docs/cni-reference.md §2.1).

use cni::args::CniArgs;
use cni::error::{codes, CniError, Result};
use cni::firewall::MasqBackend;
use cni::netlink::parse_mac;
use cni::spec::{casefold_from_value, Dns, NetConf, MAX_IFNAME};
use serde::Deserialize;

/// Default bridge name, as in the reference.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// The wire shape of the plugin-specific keys (Go field names via serde).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawConf {
    bridge: Option<String>,
    is_gateway: bool,
    is_default_gateway: bool,
    force_address: bool,
    ip_masq: bool,
    ip_masq_backend: Option<String>,
    mtu: i64,
    hairpin_mode: bool,
    promisc_mode: bool,
    vlan: i64,
    vlan_trunk: Option<Vec<RawTrunk>>,
    preserve_default_vlan: bool,
    macspoofchk: bool,
    enabledad: bool,
    disable_container_interface: bool,
    port_isolation: bool,
    args: Option<RawArgs>,
    runtime_config: Option<RawRuntimeConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawTrunk {
    #[serde(rename = "minID")]
    min_id: Option<i64>,
    #[serde(rename = "maxID")]
    max_id: Option<i64>,
    id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawArgs {
    cni: Option<RawMac>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMac {
    mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRuntimeConfig {
    mac: Option<String>,
}

/// A validated bridge configuration.
#[derive(Debug, Clone)]
pub struct BridgeConf {
    /// Network name (`name`), used for masquerade chain names.
    pub network: String,
    /// `cniVersion` of the config: results are printed in it.
    pub cni_version: String,
    /// Bridge device name.
    pub bridge: String,
    /// Gateway addresses go on the bridge (forced by `isDefaultGateway`).
    pub is_gateway: bool,
    /// Add a default route via the gateway in the container.
    pub is_default_gateway: bool,
    /// Replace a conflicting bridge address instead of failing.
    pub force_address: bool,
    /// Masquerade traffic leaving the container subnets.
    pub ip_masq: bool,
    /// Explicit masquerade backend; `None` = the host's default.
    pub ip_masq_backend: Option<MasqBackend>,
    /// MTU for a new bridge and both veth ends.
    pub mtu: Option<u32>,
    /// Hairpin mode on the host port.
    pub hairpin: bool,
    /// Promiscuous bridge.
    pub promisc: bool,
    /// Access VLAN (0 = none).
    pub vlan: u16,
    /// Trunk VLANs, sorted and deduplicated.
    pub vlan_trunk: Vec<u16>,
    /// `vlanTrunk` was given (even empty): the bridge gets vlan_filtering.
    pub vlan_trunk_given: bool,
    /// Keep the default VLAN entries on the host port.
    pub preserve_default_vlan: bool,
    /// Keep IPv6 DAD on in the container (off by default: no ~2 s stall).
    pub enable_dad: bool,
    /// nftables MAC spoof check on the host port.
    pub macspoofchk: bool,
    /// Leave the container interface down (L2 only).
    pub disable_container_interface: bool,
    /// `IFLA_BRPORT_ISOLATED` on the host port.
    pub port_isolation: bool,
    /// IPAM plugin type; `None` = L2 only.
    pub ipam_type: Option<String>,
    /// Container MAC (runtimeConfig > args.cni > CNI_ARGS `MAC=`).
    pub mac: Option<[u8; 6]>,
    /// The config's `dns`, when any field is set: it replaces IPAM's.
    pub dns: Option<Dns>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(codes::INVALID_CONFIG, msg)
}

impl BridgeConf {
    /// True when the bridge must be created with `vlan_filtering`.
    pub fn vlan_filtering(&self) -> bool {
        self.vlan != 0 || self.vlan_trunk_given
    }

    /// True when an IPAM plugin is configured.
    pub fn is_layer3(&self) -> bool {
        self.ipam_type.is_some()
    }

    /// Parses and validates. `env_args` is `CNI_ARGS` (only `MAC` is known).
    pub fn load(conf: &NetConf, env_args: &CniArgs) -> Result<BridgeConf> {
        let raw: RawConf = casefold_from_value(conf.raw.clone())
            .map_err(|e| invalid(format!("failed to load netconf: {e}")))?;
        let bridge = raw
            .bridge
            .clone()
            .unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        validate_ifname("bridge", &bridge)?;
        let vlan = vlan_id(raw.vlan)?;
        let vlan_trunk = collect_vlan_trunk(raw.vlan_trunk.as_deref().unwrap_or_default())?;
        let ipam_type = conf.ipam_type().map(str::to_string);
        let is_default_gateway = raw.is_default_gateway;
        let is_gateway = raw.is_gateway || is_default_gateway;
        if ipam_type.is_some() && raw.disable_container_interface {
            return Err(invalid(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        if raw.hairpin_mode && raw.promisc_mode {
            return Err(invalid(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        if vlan != 0 && is_gateway {
            // The VLAN gateway device is named "<bridge>.<vid>".
            validate_ifname("VLAN gateway interface", &format!("{bridge}.{vlan}"))?;
        }
        let ip_masq_backend = raw
            .ip_masq_backend
            .as_deref()
            .map(masq_backend)
            .transpose()?;
        Ok(BridgeConf {
            network: conf.name.clone(),
            cni_version: conf.cni_version.clone(),
            bridge,
            is_gateway,
            is_default_gateway,
            force_address: raw.force_address,
            ip_masq: raw.ip_masq,
            ip_masq_backend,
            mtu: mtu(raw.mtu)?,
            hairpin: raw.hairpin_mode,
            promisc: raw.promisc_mode,
            vlan,
            vlan_trunk,
            vlan_trunk_given: raw.vlan_trunk.is_some(),
            preserve_default_vlan: raw.preserve_default_vlan,
            enable_dad: raw.enabledad,
            macspoofchk: raw.macspoofchk,
            disable_container_interface: raw.disable_container_interface,
            port_isolation: raw.port_isolation,
            ipam_type,
            mac: pick_mac(&raw, env_args)?,
            dns: conf.dns.clone().filter(|d| !d.is_empty()),
        })
    }
}

/// Kernel interface-name rules (`dev_valid_name`), checked up front so a bad
/// name fails before anything is created.
fn validate_ifname(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(format!("{what} name must not be empty")));
    }
    if name.len() > MAX_IFNAME {
        return Err(invalid(format!(
            "{what} name {name:?} is too long (max {MAX_IFNAME} bytes)"
        )));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(invalid(format!(
            "{what} name {name:?} is not a valid interface name"
        )));
    }
    Ok(())
}

fn vlan_id(vlan: i64) -> Result<u16> {
    match u16::try_from(vlan) {
        Ok(v) if v <= 4094 => Ok(v),
        _ => Err(invalid(format!(
            "invalid VLAN ID {vlan} (must be between 0 and 4094)"
        ))),
    }
}

fn mtu(mtu: i64) -> Result<Option<u32>> {
    match u32::try_from(mtu) {
        Ok(0) => Ok(None),
        Ok(m) if m <= 65535 => Ok(Some(m)),
        _ => Err(invalid(format!("invalid MTU {mtu}"))),
    }
}

fn masq_backend(name: &str) -> Result<MasqBackend> {
    match name {
        "iptables" => Ok(MasqBackend::Iptables),
        "nftables" => Ok(MasqBackend::Nftables),
        other => Err(invalid(format!(
            "unknown ipMasqBackend {other:?} (must be \"iptables\" or \"nftables\")"
        ))),
    }
}

/// The reference's `collectVlanTrunk`, with its error texts.
fn collect_vlan_trunk(trunk: &[RawTrunk]) -> Result<Vec<u16>> {
    let valid = |v: i64| (1..=4094).contains(&v);
    // One flag per VID: a config can list ranges many times over (a 10 MB
    // stdin holds ~300 000 full 1-4094 ranges), so never expand them into a
    // list first; this also deduplicates.
    let mut wanted = [false; 4095];
    for item in trunk {
        match (item.min_id, item.max_id) {
            (Some(min), Some(max)) => {
                if !valid(min) {
                    return Err(invalid("incorrect trunk minID parameter"));
                }
                if !valid(max) {
                    return Err(invalid("incorrect trunk maxID parameter"));
                }
                if max < min {
                    return Err(invalid("minID is greater than maxID in trunk parameter"));
                }
                // Both bounds were range-checked, so the casts are exact.
                wanted[min as usize..=max as usize].fill(true);
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "minID and maxID should be configured simultaneously, minID is missing",
                ))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "minID and maxID should be configured simultaneously, maxID is missing",
                ))
            }
            (None, None) => {}
        }
        if let Some(id) = item.id {
            if !valid(id) {
                return Err(invalid("incorrect trunk id parameter"));
            }
            wanted[id as usize] = true;
        }
    }
    Ok((1..=4094u16).filter(|&v| wanted[usize::from(v)]).collect())
}

/// Container MAC, by precedence runtimeConfig > args.cni > CNI_ARGS.
fn pick_mac(raw: &RawConf, env_args: &CniArgs) -> Result<Option<[u8; 6]>> {
    env_args.check_known(&["MAC"])?;
    let from_conf = raw
        .runtime_config
        .as_ref()
        .and_then(|r| r.mac.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| {
            raw.args
                .as_ref()
                .and_then(|a| a.cni.as_ref())
                .and_then(|c| c.mac.clone())
                .filter(|m| !m.is_empty())
        });
    if let Some(text) = from_conf {
        return parse_unicast_mac(&text)
            .map(Some)
            .ok_or_else(|| invalid(format!("invalid MAC address {text:?}")));
    }
    match env_args.get("MAC").filter(|m| !m.is_empty()) {
        Some(text) => parse_unicast_mac(text).map(Some).ok_or_else(|| {
            CniError::new(
                codes::INVALID_ENV,
                format!("invalid MAC address {text:?} in CNI_ARGS"),
            )
        }),
        None => Ok(None),
    }
}

/// A MAC the kernel accepts for a veth: six bytes, not multicast.
fn parse_unicast_mac(text: &str) -> Option<[u8; 6]> {
    parse_mac(text).filter(|m| m[0] & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(extra: serde_json::Value, cni_args: &str) -> Result<BridgeConf> {
        let mut v = json!({"cniVersion": "1.1.0", "name": "net", "type": "bridge"});
        for (k, val) in extra.as_object().expect("object") {
            v[k] = val.clone();
        }
        let conf = NetConf::from_value(v).expect("netconf");
        BridgeConf::load(&conf, &CniArgs::parse(cni_args).expect("args"))
    }

    #[test]
    fn defaults() {
        let c = load(json!({}), "").unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(!c.is_gateway && !c.ip_masq && !c.enable_dad && !c.vlan_filtering());
        assert_eq!((c.mtu, c.vlan, c.mac), (None, 0, None));
        assert!(c.ipam_type.is_none());
    }

    #[test]
    fn default_gateway_forces_gateway() {
        let c = load(json!({"isDefaultGateway": true}), "").unwrap();
        assert!(c.is_gateway);
    }

    #[test]
    fn go_style_keys_are_accepted() {
        let c = load(
            json!({"IsGateway": true, "runtimeConfig": {"Mac": "0a:00:00:00:00:01"}}),
            "",
        )
        .unwrap();
        assert!(c.is_gateway);
        assert_eq!(c.mac, Some([0x0a, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn mac_precedence() {
        let args = "IgnoreUnknown=1;MAC=0a:00:00:00:00:03;K8S_POD_NAME=x";
        let c = load(json!({}), args).unwrap();
        assert_eq!(c.mac, Some([0x0a, 0, 0, 0, 0, 3]));
        let c = load(json!({"args": {"cni": {"mac": "0a:00:00:00:00:02"}}}), args).unwrap();
        assert_eq!(c.mac, Some([0x0a, 0, 0, 0, 0, 2]));
        let c = load(
            json!({"args": {"cni": {"mac": "0a:00:00:00:00:02"}}, "runtimeConfig": {"mac": "0a:00:00:00:00:01"}}),
            args,
        )
        .unwrap();
        assert_eq!(c.mac, Some([0x0a, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn bad_input_is_a_config_error() {
        let cases = [
            (json!({"vlan": 4095}), "invalid VLAN ID 4095"),
            (json!({"vlan": -1}), "invalid VLAN ID -1"),
            (json!({"bridge": "a-very-long-bridge-name"}), "too long"),
            (json!({"bridge": ""}), "must not be empty"),
            (json!({"ipMasqBackend": "pf"}), "unknown ipMasqBackend"),
            (
                json!({"hairpinMode": true, "promiscMode": true}),
                "hairpin mode and promiscuous",
            ),
            (
                json!({"disableContainerInterface": true, "ipam": {"type": "host-local"}}),
                "cannot use IPAM",
            ),
            (json!({"vlanTrunk": [{"minID": 5}]}), "maxID is missing"),
            (json!({"vlanTrunk": [{"maxID": 5}]}), "minID is missing"),
            (
                json!({"vlanTrunk": [{"minID": 9, "maxID": 5}]}),
                "minID is greater",
            ),
            (json!({"vlanTrunk": [{"id": 0}]}), "incorrect trunk id"),
            (
                json!({"vlanTrunk": [{"minID": 0, "maxID": 5}]}),
                "incorrect trunk minID",
            ),
            (
                json!({"vlanTrunk": [{"minID": 1, "maxID": 4095}]}),
                "incorrect trunk maxID",
            ),
            (json!({"mtu": -5}), "invalid MTU"),
            (
                json!({"runtimeConfig": {"mac": "not-a-mac"}}),
                "invalid MAC",
            ),
            (
                json!({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}}),
                "invalid MAC",
            ),
            (json!({"portIsolation": "true"}), "failed to load netconf"),
            (
                json!({"bridge": "br-long-name1", "vlan": 4000, "isGateway": true}),
                "too long",
            ),
        ];
        for (extra, want) in cases {
            let err = load(extra.clone(), "").unwrap_err();
            assert_eq!(err.code(), codes::INVALID_CONFIG, "{extra}: {err}");
            assert!(err.msg().contains(want), "{extra}: {err}");
        }
    }

    #[test]
    fn cni_args_errors_are_env_errors() {
        assert_eq!(
            load(json!({}), "MAC=zz").unwrap_err().code(),
            codes::INVALID_ENV
        );
        assert_eq!(
            load(json!({}), "FOO=1").unwrap_err().code(),
            codes::INVALID_ENV
        );
    }

    #[test]
    fn trunk_is_sorted_and_deduplicated() {
        let c = load(
            json!({"vlanTrunk": [{"id": 7}, {"minID": 3, "maxID": 5}, {"id": 4}]}),
            "",
        )
        .unwrap();
        assert_eq!(c.vlan_trunk, vec![3, 4, 5, 7]);
        assert!(c.vlan_filtering());
        let c = load(json!({"vlanTrunk": []}), "").unwrap();
        assert!(c.vlan_trunk.is_empty() && c.vlan_filtering());
    }

    #[test]
    fn many_full_trunk_ranges_stay_small() {
        let trunk: Vec<_> = (0..100_000)
            .map(|_| json!({"minID": 1, "maxID": 4094}))
            .collect();
        let c = load(json!({ "vlanTrunk": trunk }), "").unwrap();
        assert_eq!(c.vlan_trunk.len(), 4094);
        assert_eq!((c.vlan_trunk[0], c.vlan_trunk[4093]), (1, 4094));
    }

    #[test]
    fn empty_dns_does_not_override() {
        let c = load(json!({"dns": {}}), "").unwrap();
        assert!(c.dns.is_none());
        let c = load(json!({"dns": {"nameservers": ["10.0.0.10"]}}), "").unwrap();
        assert_eq!(c.dns.unwrap().nameservers, vec!["10.0.0.10".to_string()]);
    }
}
