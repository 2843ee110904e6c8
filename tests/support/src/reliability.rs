//! Helpers shared by the reliability tests (bad input, crashes, churn):
//! kernel-state snapshots of a test node, lease listings of a host-local
//! store, and the leak check every integration test ends with.
//!
//! Everything here reads state from the *calling thread's* netns (processes
//! inherit it), so call it from a thread that has entered `NodeNs`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Output of a command run in the caller's netns, or a marker when the tool
/// is missing or fails (so a snapshot never panics by itself).
fn capture(argv: &[&str]) -> String {
    match Command::new(argv[0]).args(&argv[1..]).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => format!(
            "<{} failed: {}>",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("<{} not runnable: {e}>", argv.join(" ")),
    }
}

/// iptables-save output without the timestamped comments and packet counters.
fn iptables_rules(tool: &str) -> String {
    capture(&[tool])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(strip_counters)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `:CHAIN POLICY [pkts:bytes]` → `:CHAIN POLICY`.
fn strip_counters(line: &str) -> String {
    match (line.starts_with(':'), line.rfind(" [")) {
        (true, Some(i)) if line.ends_with(']') => line[..i].to_string(),
        _ => line.to_string(),
    }
}

/// IPv6 link-local addresses appear (and leave "tentative") asynchronously,
/// well after the ADD that brought a link up; they belong to the link, whose
/// appearance is already visible in the link list. Dropped from snapshots.
fn without_link_local_addrs(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(json.trim()) else {
        return json.to_string();
    };
    for link in v.as_array_mut().into_iter().flatten() {
        if let Some(a) = link.get_mut("addr_info").and_then(|a| a.as_array_mut()) {
            a.retain(|e| !e["local"].as_str().is_some_and(|l| l.starts_with("fe80:")));
        }
    }
    v.to_string()
}

/// The routes that go with IPv6 link-local addresses (see above).
fn without_link_local_routes(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(json.trim()) else {
        return json.to_string();
    };
    if let Some(a) = v.as_array_mut() {
        a.retain(|r| !r["dst"].as_str().is_some_and(|d| d.starts_with("fe80:")));
    }
    v.to_string()
}

/// Everything a plugin could change in a node netns that we can observe:
/// links, addresses, routes (all tables), bridge VLANs, nftables ruleset and
/// iptables rules (both families). Keyed by what was listed.
pub fn kernel_snapshot() -> BTreeMap<&'static str, String> {
    let mut s = BTreeMap::new();
    s.insert("links", capture(&["ip", "-j", "link", "show"]));
    s.insert(
        "addresses",
        without_link_local_addrs(&capture(&["ip", "-j", "addr", "show"])),
    );
    s.insert(
        "routes4",
        capture(&["ip", "-4", "-j", "route", "show", "table", "all"]),
    );
    s.insert(
        "routes6",
        without_link_local_routes(&capture(&[
            "ip", "-6", "-j", "route", "show", "table", "all",
        ])),
    );
    s.insert("vlans", capture(&["bridge", "-j", "vlan", "show"]));
    s.insert("nft", capture(&["nft", "list", "ruleset"]));
    s.insert("iptables", iptables_rules("iptables-save"));
    s.insert("ip6tables", iptables_rules("ip6tables-save"));
    s
}

/// The keys whose values differ, each with both versions, for a failure message.
pub fn snapshot_diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    before: &BTreeMap<K, V>,
    after: &BTreeMap<K, V>,
) -> Option<String> {
    let mut out = String::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push_str(&format!("  {k:?} disappeared (was {v:?})\n")),
            Some(w) if w != v => out.push_str(&format!(
                "  {k:?} changed:\n    before {v:?}\n    after  {w:?}\n"
            )),
            _ => {}
        }
    }
    for (k, w) in after {
        if !before.contains_key(k) {
            out.push_str(&format!("  {k:?} appeared: {w:?}\n"));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Like [`snapshot_diff`] for host-local store trees, showing file bytes as text.
pub fn tree_diff(
    before: &BTreeMap<String, (Vec<u8>, u32)>,
    after: &BTreeMap<String, (Vec<u8>, u32)>,
) -> Option<String> {
    let text = |m: &BTreeMap<String, (Vec<u8>, u32)>| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, (b, mode))| {
                let s = String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
                (k.clone(), format!("{s:?} mode {mode:o}"))
            })
            .collect()
    };
    snapshot_diff(&text(before), &text(after))
}

/// Leases of one network in a host-local store: IP → file content.
/// Only address-named regular files count (`lock`, `last_reserved_ip.*` and
/// directories do not).
pub fn leases(data_dir: &Path, network: &str) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(data_dir.join(network)) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            let content = std::fs::read(e.path()).unwrap_or_default();
            out.insert(ip, String::from_utf8_lossy(&content).into_owned());
        }
    }
    out
}

/// Names of the veth links in the caller's netns.
pub fn veths() -> Vec<String> {
    links_of_kind("veth")
}

/// Names of links of `kind` (`ip -d link show type <kind>`).
pub fn links_of_kind(kind: &str) -> Vec<String> {
    let out = capture(&["ip", "-j", "link", "show", "type", kind]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Masquerade / spoof-check rules our firewall layer (or the reference)
/// would have installed in the caller's netns: iptables `CNI-` chains and
/// jumps, nftables `masquerade` rules and `cni-br-iface-` chains.
pub fn cni_firewall_rules() -> Vec<String> {
    let mut found = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        for l in iptables_rules(tool).lines() {
            if l.contains("CNI-") {
                found.push(format!("{tool}: {l}"));
            }
        }
    }
    for l in capture(&["nft", "list", "ruleset"]).lines() {
        let t = l.trim();
        // Rules, not the (possibly empty) `cni_plugins_masquerade` table.
        let masq_rule = t.contains("masquerade") && !t.starts_with("table ");
        if masq_rule || t.contains("cni-br-iface-") || t.contains("macspoofchk") {
            found.push(format!("nft: {t}"));
        }
    }
    found
}

/// What a leak check looks at, for a node netns and a host-local store.
pub struct LeakScope<'a> {
    /// host-local dataDir (may not exist).
    pub data_dir: &'a Path,
    /// Network names whose leases must all be gone.
    pub networks: &'a [&'a str],
    /// Veths that existed before the test and may remain (usually none).
    pub allowed_veths: &'a [&'a str],
}

/// Asserts nothing is left behind: no lease in any listed network, no veth,
/// no masquerade / spoof-check rule. Netns leaks are impossible by
/// construction (test netns are thread-scoped, see `common::PodNs`), so the
/// check covers what a plugin could leak. Panics with every leak listed.
pub fn assert_no_leaks(scope: &LeakScope<'_>) {
    let mut problems = Vec::new();
    for net in scope.networks {
        let l = leases(scope.data_dir, net);
        if !l.is_empty() {
            problems.push(format!("leases left in {net}: {l:?}"));
        }
    }
    let v: Vec<String> = veths()
        .into_iter()
        .filter(|v| !scope.allowed_veths.contains(&v.as_str()))
        .collect();
    if !v.is_empty() {
        problems.push(format!("veths left: {v:?}"));
    }
    let r = cni_firewall_rules();
    if !r.is_empty() {
        problems.push(format!("firewall rules left: {r:#?}"));
    }
    assert!(
        problems.is_empty(),
        "leak check failed:\n{}",
        problems.join("\n")
    );
}

/// A store-only leak check (host-local tests that never touch the kernel).
pub fn assert_no_leases(data_dir: &Path, network: &str) {
    let l = leases(data_dir, network);
    assert!(l.is_empty(), "leases left in {network}: {l:?}");
}

/// A regular file and a plain directory under `root`, for "not a netns" /
/// "not a directory" inputs.
pub fn regular_file_and_dir(root: &Path) -> (PathBuf, PathBuf) {
    let f = root.join("regular-file");
    std::fs::write(&f, b"not a namespace\n").expect("write regular file");
    let d = root.join("plain-dir");
    std::fs::create_dir_all(&d).expect("create plain dir");
    (f, d)
}
