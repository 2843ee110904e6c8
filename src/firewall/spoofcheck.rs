//! MAC spoof check (`macspoofchk`), compatible with `pkg/link/spoofcheck.go`.
//!
//! Table `bridge nat`, base chain `PREROUTING` (filter, prerouting, -300),
//! per attachment the chains `cni-br-iface-<cid>-<ifname>` and `...-mac`,
//! every rule commented `macspoofchk-<cid>-<ifname>`. The reference talks to
//! nft in JSON (go-nft); so do we, which keeps arbitrary ids safe as names.
//! The rules only name the host veth (`iifname`), so no link is needed.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::error::FirewallError;
use super::naming::spoofcheck_ref_id;
use super::nft::{self, Listing, NftRule};

const FAMILY: &str = "bridge";
const TABLE: &str = "nat";
const BASE_CHAIN: &str = "PREROUTING";
const CHAIN_PREFIX: &str = "cni-br-iface-";
const COMMENT_PREFIX: &str = "macspoofchk-";

/// Names of one attachment's chains and comment.
struct Names {
    iface_chain: String,
    mac_chain: String,
    comment: String,
}

impl Names {
    fn for_ref(ref_id: &str) -> Names {
        let iface_chain = format!("{CHAIN_PREFIX}{ref_id}");
        Names {
            mac_chain: format!("{iface_chain}-mac"),
            iface_chain,
            comment: format!("{COMMENT_PREFIX}{ref_id}"),
        }
    }
}

fn chain_obj(name: &str) -> Value {
    json!({"chain": {"family": FAMILY, "table": TABLE, "name": name}})
}

fn rule_obj(chain: &str, comment: &str, expr: Value) -> Value {
    json!({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain,
        "comment": comment, "expr": expr}}})
}

fn delete_rule_obj(rule: &NftRule) -> Value {
    json!({"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": rule.chain,
        "handle": rule.handle}}})
}

/// Validates and normalises a MAC to lowercase `aa:bb:cc:dd:ee:ff`.
fn normalize_mac(mac: &str) -> Result<String, FirewallError> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !valid {
        return Err(FirewallError::invalid(
            "MAC address",
            mac,
            "expected 6 hex octets",
        ));
    }
    Ok(parts.join(":").to_ascii_lowercase())
}

fn validate_ifname(what: &'static str, name: &str) -> Result<(), FirewallError> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
        return Err(FirewallError::invalid(
            what,
            name,
            "not a valid interface name",
        ));
    }
    Ok(())
}

fn table_listing() -> Result<Listing, FirewallError> {
    nft::list(&["table", FAMILY, TABLE])
}

fn base_rules<'a>(listing: &'a Listing, comment: &'a str) -> impl Iterator<Item = &'a NftRule> {
    listing
        .rules
        .iter()
        .filter(move |r| r.chain == BASE_CHAIN && r.comment.as_deref() == Some(comment))
}

/// Installs the spoof check for one attachment: only frames from `host_veth`
/// with source MAC `mac` pass. Re-running replaces the previous rules.
pub fn setup(
    container_id: &str,
    ifname: &str,
    host_veth: &str,
    mac: &str,
) -> Result<(), FirewallError> {
    validate_ifname("host interface", host_veth)?;
    let mac = normalize_mac(mac)?;
    let n = Names::for_ref(&spoofcheck_ref_id(container_id, ifname));
    // Only the base chain can hold stale rules of ours (the others are flushed).
    let existing = nft::list(&["chain", FAMILY, TABLE, BASE_CHAIN])?;
    let mut cmds = vec![
        json!({"add": {"table": {"family": FAMILY, "name": TABLE}}}),
        json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": BASE_CHAIN,
            "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}}),
        json!({"add": chain_obj(&n.iface_chain)}),
        json!({"add": chain_obj(&n.mac_chain)}),
        json!({"flush": chain_obj(&n.iface_chain)}),
        json!({"flush": chain_obj(&n.mac_chain)}),
    ];
    cmds.extend(base_rules(&existing, &n.comment).map(delete_rule_obj));
    cmds.push(rule_obj(
        BASE_CHAIN,
        &n.comment,
        json!([{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": host_veth}},
               {"jump": {"target": n.iface_chain}}]),
    ));
    cmds.push(rule_obj(
        &n.iface_chain,
        &n.comment,
        json!([{"jump": {"target": n.mac_chain}}]),
    ));
    cmds.push(rule_obj(
        &n.mac_chain,
        &n.comment,
        json!([{"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                "right": mac}}, {"return": null}]),
    ));
    cmds.push(rule_obj(&n.mac_chain, &n.comment, json!([{"drop": null}])));
    nft::apply_json(cmds)
}

/// Commands removing one attachment's base rules and chains, given what exists.
fn teardown_cmds(listing: &Listing, ref_id: &str) -> Vec<Value> {
    let n = Names::for_ref(ref_id);
    let mut cmds: Vec<Value> = base_rules(listing, &n.comment)
        .map(delete_rule_obj)
        .collect();
    // Flush before delete: kernels before 5.x refuse to delete non-empty chains.
    for chain in [&n.iface_chain, &n.mac_chain] {
        if listing.chains.iter().any(|c| c == chain) {
            cmds.push(json!({"flush": chain_obj(chain)}));
        }
    }
    for chain in [&n.iface_chain, &n.mac_chain] {
        if listing.chains.iter().any(|c| c == chain) {
            cmds.push(json!({"delete": chain_obj(chain)}));
        }
    }
    cmds
}

/// Removes the spoof check of one attachment; absent rules are not an error.
/// The table and base chain stay (shared by all attachments), as in the reference.
/// Retried once in case a concurrent teardown removed something in between.
pub fn teardown(container_id: &str, ifname: &str) -> Result<(), FirewallError> {
    let ref_id = spoofcheck_ref_id(container_id, ifname);
    let attempt = || {
        let cmds = teardown_cmds(&table_listing()?, &ref_id);
        if cmds.is_empty() {
            return Ok(());
        }
        nft::apply_json(cmds)
    };
    attempt().or_else(|_| attempt())
}

/// Verifies that the rules [`setup`] creates are all present.
pub fn check(
    container_id: &str,
    ifname: &str,
    host_veth: &str,
    mac: &str,
) -> Result<(), FirewallError> {
    let mac = normalize_mac(mac)?;
    let n = Names::for_ref(&spoofcheck_ref_id(container_id, ifname));
    let listing = table_listing()?;
    let has = |chain: &str, pred: &dyn Fn(&Value) -> bool| {
        listing.rules.iter().any(|r| {
            r.chain == chain && r.comment.as_deref() == Some(n.comment.as_str()) && pred(&r.expr)
        })
    };
    let stmt = |expr: &Value, want: &Value| expr.as_array().is_some_and(|a| a.contains(want));
    let checks = [
        (
            BASE_CHAIN,
            json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": host_veth}}),
            "iifname match",
        ),
        (
            &n.iface_chain,
            json!({"jump": {"target": n.mac_chain}}),
            "jump to mac chain",
        ),
        (
            &n.mac_chain,
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}}, "right": mac}}),
            "source MAC match",
        ),
        (&n.mac_chain, json!({"drop": null}), "drop"),
    ];
    for (chain, want, what) in checks {
        if !has(chain, &|e| stmt(e, &want)) {
            return Err(FirewallError::Missing(format!(
                "spoof-check {what} rule in bridge nat {chain} not found"
            )));
        }
    }
    Ok(())
}

/// Reference ids (`<cid>-<ifname>`) present in the table, from rule
/// comments and from chain names (half-created leftovers have no rules).
fn present_refs(listing: &Listing) -> BTreeSet<String> {
    let mut refs: BTreeSet<String> = listing
        .rules
        .iter()
        .filter_map(|r| r.comment.as_deref()?.strip_prefix(COMMENT_PREFIX))
        .map(str::to_string)
        .collect();
    for chain in &listing.chains {
        let Some(rest) = chain.strip_prefix(CHAIN_PREFIX) else {
            continue;
        };
        let is_mac_of_other = rest.strip_suffix("-mac").is_some_and(|base| {
            listing
                .chains
                .iter()
                .any(|c| c.strip_prefix(CHAIN_PREFIX) == Some(base))
        });
        if !is_mac_of_other {
            refs.insert(rest.to_string());
        }
    }
    refs
}

/// Host interfaces named by the base rules of `ref_id`.
fn ref_ifaces(listing: &Listing, ref_id: &str) -> Vec<String> {
    let comment = format!("{COMMENT_PREFIX}{ref_id}");
    base_rules(listing, &comment)
        .filter_map(|r| {
            r.expr.as_array()?.iter().find_map(|s| {
                let m = &s["match"];
                (m["left"]["meta"]["key"] == "iifname")
                    .then(|| m["right"].as_str().map(str::to_string))?
            })
        })
        .collect()
}

/// Interface names of the calling thread's network namespace.
fn local_ifaces() -> Result<BTreeSet<String>, FirewallError> {
    // thread-self: the plugin (or test thread) may sit in a netns other than
    // the process's main thread.
    let path = "/proc/thread-self/net/dev";
    let text = std::fs::read_to_string(path).map_err(|source| FirewallError::Spawn {
        cmd: format!("read {path}"),
        source,
    })?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_string()))
        .collect())
}

/// Removes spoof checks of attachments that are not in `valid`
/// (`(container_id, ifname)`) AND whose host veth no longer exists.
/// The veth condition matters because the table is shared by every bridge
/// network on the node while GC is called per network with only that
/// network's attachments; a live veth means the attachment is someone's.
pub fn gc(valid: &[(String, String)]) -> Result<(), FirewallError> {
    let listing = table_listing()?;
    let keep: BTreeSet<String> = valid
        .iter()
        .map(|(id, ifname)| spoofcheck_ref_id(id, ifname))
        .collect();
    let live = local_ifaces()?;
    let cmds: Vec<Value> = present_refs(&listing)
        .iter()
        .filter(|r| !keep.contains(*r))
        .filter(|r| !ref_ifaces(&listing, r).iter().any(|i| live.contains(i)))
        .flat_map(|r| teardown_cmds(&listing, r))
        .collect();
    if cmds.is_empty() {
        return Ok(());
    }
    nft::apply_json(cmds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("AA:bb:0C:dd:ee:FF").unwrap(),
            "aa:bb:0c:dd:ee:ff"
        );
        assert_eq!(
            normalize_mac("aa-bb-cc-dd-ee-ff").unwrap(),
            "aa:bb:cc:dd:ee:ff"
        );
        for bad in ["", "aa:bb", "aa:bb:cc:dd:ee:fg", "aaa:bb:cc:dd:ee:f"] {
            assert!(normalize_mac(bad).is_err(), "{bad}");
        }
    }

    fn listing() -> Listing {
        let rule = |chain: &str, handle, comment: &str, expr| NftRule {
            chain: chain.into(),
            handle,
            comment: Some(comment.into()),
            expr,
        };
        Listing {
            chains: vec![
                "PREROUTING".into(),
                "cni-br-iface-a-eth0".into(),
                "cni-br-iface-a-eth0-mac".into(),
                "cni-br-iface-b-eth0-mac".into(),
            ],
            rules: vec![
                rule(
                    "PREROUTING",
                    4,
                    "macspoofchk-a-eth0",
                    json!([{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth1"}},
                           {"jump": {"target": "cni-br-iface-a-eth0"}}]),
                ),
                rule("cni-br-iface-a-eth0", 5, "macspoofchk-a-eth0", json!([])),
            ],
        }
    }

    #[test]
    fn refs_and_ifaces() {
        let l = listing();
        let refs: Vec<String> = present_refs(&l).into_iter().collect();
        // "b-eth0-mac" has no iface chain, so it counts as its own ref id.
        assert_eq!(refs, vec!["a-eth0", "b-eth0-mac"]);
        assert_eq!(ref_ifaces(&l, "a-eth0"), vec!["veth1"]);
    }

    #[test]
    fn teardown_commands_only_touch_existing() {
        let l = listing();
        let cmds = teardown_cmds(&l, "a-eth0");
        assert_eq!(cmds.len(), 1 + 2 + 2);
        assert_eq!(cmds[0]["delete"]["rule"]["handle"], 4);
        assert_eq!(
            cmds[4]["delete"]["chain"]["name"],
            "cni-br-iface-a-eth0-mac"
        );
        assert!(teardown_cmds(&l, "zzz-eth0").is_empty());
    }
}
