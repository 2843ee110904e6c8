//! host-local configuration (reference `config.go`): the `ipam` section of the
//! full plugin config, plus `runtimeConfig.ipRanges`/`ips`, `args.cni.ips` and
//! the `CNI_ARGS` `IP=` value.
//!
//! Keys are matched like Go's `encoding/json`: the exact name first, then a
//! case-insensitive match, because runtimes send Go field names
//! (`RangeStart`, `Subnet`, ...). `null` means absent, unknown keys are ignored.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::error::IpamError;
use super::range::{canonical, first_overlap, parse_requested_ip, Range, RangeSet, Window};
use crate::spec::json_kind;

/// Where leases live unless `ipam.dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// A route from `ipam.routes`, copied into the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConf {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

/// The validated, canonicalized host-local configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    /// Network name: the store's directory under `data_dir`.
    pub name: String,
    /// The config's `cniVersion` ("0.1.0" when absent, as Go's decoder says).
    pub cni_version: String,
    /// Final range sets: runtimeConfig.ipRanges, legacy range, `ranges`.
    /// The index in this list is the range-set id of `last_reserved_ip.<id>`.
    pub range_sets: Vec<RangeSet>,
    /// `ipam.routes`.
    pub routes: Vec<RouteConf>,
    /// `ipam.dataDir` or [`DEFAULT_DATA_DIR`].
    pub data_dir: PathBuf,
    /// `ipam.resolvConf`, if set.
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses: CNI_ARGS `IP`, then `args.cni.ips`, then `runtimeConfig.ips`.
    pub requested_ips: Vec<IpAddr>,
}

impl IpamConfig {
    /// Parses the plugin's stdin bytes.
    pub fn from_slice(stdin: &[u8], env_ip: Option<&str>) -> Result<Self, IpamError> {
        let v: Value = serde_json::from_slice(stdin)
            .map_err(|e| IpamError::Decode(format!("failed to parse network config: {e}")))?;
        Self::parse(&v, env_ip)
    }

    /// Parses the whole plugin config object. `env_ip` is the `IP` value of
    /// `CNI_ARGS`, if present.
    pub fn parse(conf: &Value, env_ip: Option<&str>) -> Result<Self, IpamError> {
        let root = conf
            .as_object()
            .ok_or_else(|| IpamError::Decode("network config must be a JSON object".into()))?;
        let name = opt_str(root, "name", "name")?
            .unwrap_or_default()
            .to_string();
        validate_network_name(&name)?;
        let cni_version = opt_str(root, "cniVersion", "cniVersion")?
            .unwrap_or("0.1.0")
            .to_string();
        let ipam = match get_ci(root, "ipam") {
            None => return Err(IpamError::Config("IPAM config missing 'ipam' key".into())),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(IpamError::Decode(format!(
                    "ipam: expected an object, got {}",
                    json_kind(other)
                )))
            }
        };
        let runtime = opt_object(root, "runtimeConfig", "runtimeConfig")?;

        let requested_ips = requested_ips(root, runtime, env_ip)?;

        // Final order: runtimeConfig.ipRanges, the legacy range, ipam.ranges.
        // A set's position in this list is its id (last_reserved_ip.<id>).
        let mut range_sets: Vec<RangeSet> = Vec::new();
        let mut push = |parsed: Result<RangeSet, IpamError>| -> Result<(), IpamError> {
            let idx = range_sets.len();
            range_sets
                .push(parsed.map_err(|e| e.context(format_args!("invalid range set {idx}")))?);
            Ok(())
        };
        if let Some(rt) = runtime {
            let sets = opt_array(rt, "ipRanges", "runtimeConfig.ipRanges")?;
            for (i, s) in sets.into_iter().flatten().enumerate() {
                push(parse_range_set(s, &format!("runtimeConfig.ipRanges[{i}]")))?;
            }
        }
        if opt_str(ipam, "subnet", "ipam.subnet")?.is_some() {
            push(parse_range(ipam, "ipam").and_then(|r| RangeSet::new(vec![r])))?;
        }
        for (i, s) in opt_array(ipam, "ranges", "ipam.ranges")?
            .into_iter()
            .flatten()
            .enumerate()
        {
            push(parse_range_set(s, &format!("ipam.ranges[{i}]")))?;
        }
        if range_sets.is_empty() {
            return Err(IpamError::Config("no IP ranges specified".into()));
        }
        check_families(&range_sets, &cni_version)?;
        let windows: Vec<Window> = range_sets
            .iter()
            .enumerate()
            .flat_map(|(i, set)| set.ranges().iter().map(move |r| Window::of(i, r)))
            .collect();
        if let Some((i, j)) = first_overlap(&windows) {
            return Err(IpamError::Config(format!(
                "range set {i} overlaps with {j}"
            )));
        }

        let routes = opt_array(ipam, "routes", "ipam.routes")?
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| parse_route(r, &format!("ipam.routes[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let data_dir = match opt_str(ipam, "dataDir", "ipam.dataDir")? {
            None | Some("") => PathBuf::from(DEFAULT_DATA_DIR),
            Some(d) => PathBuf::from(d),
        };
        let resolv_conf = match opt_str(ipam, "resolvConf", "ipam.resolvConf")? {
            None | Some("") => None,
            Some(p) => Some(PathBuf::from(p)),
        };
        Ok(IpamConfig {
            name,
            cni_version,
            range_sets,
            routes,
            data_dir,
            resolv_conf,
            requested_ips,
        })
    }

    /// `<dataDir>/<network name>`: the store directory.
    pub fn network_dir(&self) -> PathBuf {
        self.data_dir.join(&self.name)
    }
}

/// The network name becomes a directory under dataDir: it must be one plain
/// path component (the skel validates it too; this is defence in depth).
pub fn validate_network_name(name: &str) -> Result<(), IpamError> {
    if name.is_empty() {
        return Err(IpamError::Config("missing network name".into()));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(IpamError::Config(format!(
            "invalid network name {name:?}: it names the store directory under dataDir, so it must not be '.' or '..' or contain '/'"
        )));
    }
    Ok(())
}

/// Go's JSON field matching (exact key, else case-insensitive); `null`
/// counts as absent.
pub fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    crate::spec::lookup_ci(obj, key).filter(|v| !v.is_null())
}

fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, IpamError> {
    match get_ci(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(IpamError::Decode(format!(
            "{path}: expected a string, got {}",
            json_kind(other)
        ))),
    }
}

fn opt_object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, IpamError> {
    match get_ci(obj, key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(IpamError::Decode(format!(
            "{path}: expected an object, got {}",
            json_kind(other)
        ))),
    }
}

fn opt_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Vec<Value>>, IpamError> {
    match get_ci(obj, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(other) => Err(IpamError::Decode(format!(
            "{path}: expected an array, got {}",
            json_kind(other)
        ))),
    }
}

fn opt_u32(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u32>, IpamError> {
    match get_ci(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                IpamError::Decode(format!(
                    "{path}.{key}: expected an unsigned 32-bit integer, got {v}"
                ))
            }),
    }
}

fn opt_ip(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<IpAddr>, IpamError> {
    match opt_str(obj, key, &format!("{path}.{key}"))? {
        None | Some("") => Ok(None),
        Some(s) => s
            .trim()
            .parse::<IpAddr>()
            .map(|ip| Some(canonical(ip)))
            .map_err(|_| IpamError::Config(format!("{path}.{key}: {s:?} is not an IP address"))),
    }
}

fn parse_cidr(s: &str, what: &str) -> Result<IpNet, IpamError> {
    s.trim()
        .parse::<IpNet>()
        .map_err(|_| IpamError::Config(format!("{what}: {s:?} is not a CIDR (like 10.1.0.0/16)")))
}

fn parse_range(obj: &Map<String, Value>, path: &str) -> Result<Range, IpamError> {
    let subnet = match opt_str(obj, "subnet", &format!("{path}.subnet"))? {
        None => return Err(IpamError::Config(format!("{path}: missing \"subnet\""))),
        Some(s) => parse_cidr(s, &format!("{path}.subnet"))?,
    };
    Range::new(
        subnet,
        opt_ip(obj, "rangeStart", path)?,
        opt_ip(obj, "rangeEnd", path)?,
        opt_ip(obj, "gateway", path)?,
    )
}

fn parse_range_set(v: &Value, path: &str) -> Result<RangeSet, IpamError> {
    let Value::Array(items) = v else {
        return Err(IpamError::Decode(format!(
            "{path}: a range set must be an array of ranges, got {}",
            json_kind(v)
        )));
    };
    let mut ranges = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Value::Object(m) = item else {
            return Err(IpamError::Decode(format!(
                "{p}: expected a range object, got {}",
                json_kind(item)
            )));
        };
        ranges.push(parse_range(m, &p)?);
    }
    RangeSet::new(ranges)
}

fn parse_route(v: &Value, path: &str) -> Result<RouteConf, IpamError> {
    let Value::Object(m) = v else {
        return Err(IpamError::Decode(format!(
            "{path}: expected a route object, got {}",
            json_kind(v)
        )));
    };
    let dst = match opt_str(m, "dst", &format!("{path}.dst"))? {
        None => return Err(IpamError::Config(format!("{path}: missing \"dst\""))),
        Some(s) => parse_cidr(s, &format!("{path}.dst"))?,
    };
    Ok(RouteConf {
        dst,
        gw: opt_ip(m, "gw", path)?,
        mtu: opt_u32(m, "mtu", path)?,
        advmss: opt_u32(m, "advmss", path)?,
        priority: opt_u32(m, "priority", path)?,
        table: opt_u32(m, "table", path)?,
        scope: opt_u32(m, "scope", path)?,
    })
}

/// Requested addresses from all three sources, merged in the reference's order.
fn requested_ips(
    root: &Map<String, Value>,
    runtime: Option<&Map<String, Value>>,
    env_ip: Option<&str>,
) -> Result<Vec<IpAddr>, IpamError> {
    let mut out = Vec::new();
    if let Some(s) = env_ip {
        out.push(parse_requested_ip(s).ok_or_else(|| {
            IpamError::Args(format!(
                "CNI_ARGS: IP={s:?} is not an IP address (expected e.g. IP=10.1.0.5)"
            ))
        })?);
    }
    let mut lists: Vec<(&str, &Vec<Value>)> = Vec::new();
    if let Some(args) = opt_object(root, "args", "args")? {
        if let Some(cni) = opt_object(args, "cni", "args.cni")? {
            if let Some(a) = opt_array(cni, "ips", "args.cni.ips")? {
                lists.push(("args.cni.ips", a));
            }
        }
    }
    if let Some(rt) = runtime {
        if let Some(a) = opt_array(rt, "ips", "runtimeConfig.ips")? {
            lists.push(("runtimeConfig.ips", a));
        }
    }
    for (path, list) in lists {
        for (i, v) in list.iter().enumerate() {
            let Value::String(s) = v else {
                return Err(IpamError::Decode(format!(
                    "{path}[{i}]: expected a string, got {}",
                    json_kind(v)
                )));
            };
            out.push(parse_requested_ip(s).ok_or_else(|| {
                IpamError::Config(format!("{path}[{i}]: {s:?} is not an IP address"))
            })?);
        }
    }
    Ok(out)
}

/// CNI 0.1.0/0.2.0 results carry one address per family (`ip4`/`ip6`).
fn check_families(sets: &[RangeSet], version: &str) -> Result<(), IpamError> {
    let v4 = sets.iter().filter(|s| s.is_v4()).count();
    let v6 = sets.len() - v4;
    if (v4 > 1 || v6 > 1) && !crate::spec::version_at_least(version, "0.3.0") {
        return Err(IpamError::Config(format!(
            "CNI version {version} does not support more than 1 address per family"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
