//! ADD's result, byte for byte as the reference prints it.
//!
//! Without `prevResult` the reference builds a 1.0.0-shaped result tagged
//! with the config's version, and Go's converter returns it unchanged when
//! the two versions are equal: so every version (0.1.0 … 0.4.0 too) gets
//! the 1.0.0 shape — no `ip4`, no `"version"` in `ips` — with only the
//! `cniVersion` line differing. A `prevResult` is passed through.

use cni::error::Result;
use cni::skel::CmdArgs;
use cni::spec::{version_at_least, CniResult, Interface, IpConfig};

use crate::lo;

/// The shape every pre-1.0 result is printed in.
const SHAPE_VERSION: &str = "1.0.0";

/// Brings `lo` up, then returns `prevResult` if any, else `lo`'s result:
/// `lo` with an all-zero MAC in the sandbox, its first IPv4 and first
/// IPv6 address. `prevResult` is parsed first: a malformed one fails the
/// call without touching the sandbox (as the reference does).
pub fn add_result(a: &CmdArgs) -> Result<CniResult> {
    let prev = a.conf.prev_result()?;
    let addrs = lo::up(a.netns.as_deref())?;
    if let Some(prev) = prev {
        return Ok(prev);
    }
    let first = |v6: bool| addrs.iter().find(|n| n.addr().is_ipv6() == v6).copied();
    Ok(CniResult {
        cni_version: a.conf.cni_version.clone(),
        interfaces: vec![Interface {
            name: "lo".into(),
            mac: Some("00:00:00:00:00:00".into()),
            sandbox: a.netns.as_ref().map(|p| p.display().to_string()),
            ..Interface::default()
        }],
        ips: [first(false), first(true)]
            .into_iter()
            .flatten()
            .map(|address| IpConfig {
                address,
                gateway: None,
                interface: Some(0),
            })
            .collect(),
        ..CniResult::default()
    })
}

/// The ADD document: see the module doc for why pre-1.0 versions keep
/// the 1.0.0 shape when the result is loopback's own. No trailing newline,
/// as Go's `PrintResult` writes it.
pub fn add_document(a: &CmdArgs) -> Result<String> {
    let version = a.conf.cni_version.as_str();
    let own = a.conf.prev_result.is_none();
    let r = add_result(a)?;
    if !own || version_at_least(version, SHAPE_VERSION) {
        return r.to_string_version(version);
    }
    Ok(retag(&r.to_string_version(SHAPE_VERSION)?, version))
}

/// Replaces the `cniVersion` value of a pretty-printed result (its first
/// key) with `version`.
fn retag(doc: &str, version: &str) -> String {
    let from = format!("\"cniVersion\": \"{SHAPE_VERSION}\"");
    doc.replacen(&from, &format!("\"cniVersion\": \"{version}\""), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retag_changes_only_the_version() {
        let doc = "{\n    \"cniVersion\": \"1.0.0\",\n    \"dns\": {}\n}";
        assert_eq!(
            retag(doc, "0.3.1"),
            "{\n    \"cniVersion\": \"0.3.1\",\n    \"dns\": {}\n}"
        );
    }
}
