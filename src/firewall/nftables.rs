//! nftables backend of ipMasq, compatible with `pkg/ip/ipmasq_nftables_linux.go`
//! (plugins >= v1.6.1). Debian's reference here is v1.1.1, which has no
//! nftables backend, so compatibility rests on reading that source: same
//! table, chains, rule text and comments, and the same comment-prefix
//! matching for teardown and GC.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde_json::Value;

use super::error::FirewallError;
use super::naming::{nft_comment, nft_instance_hash, nft_network_hash};
use super::nft::{self, NftRule};
use super::MasqTarget;
use crate::netlink::{nf_exists, NfFamily};

const TABLE: &str = "cni_plugins_masquerade";
const MASQ_CHAIN: &str = "masq_checks";

fn masq_rules() -> Result<Vec<NftRule>, FirewallError> {
    Ok(nft::list(&["chain", "inet", TABLE, MASQ_CHAIN])?.rules)
}

fn with_prefix<'a>(rules: &'a [NftRule], prefix: &'a str) -> impl Iterator<Item = &'a NftRule> {
    rules
        .iter()
        .filter(move |r| r.comment.as_deref().is_some_and(|c| c.starts_with(prefix)))
}

fn delete_line(rule: &NftRule) -> String {
    format!(
        "delete rule inet {TABLE} {MASQ_CHAIN} handle {}\n",
        rule.handle
    )
}

/// The rule text knftables generates for one address.
fn masq_rule_line(ip: &IpNet, comment: &str) -> String {
    let family = match ip {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    };
    format!(
        "add rule inet {TABLE} {MASQ_CHAIN} {family} saddr == {} {family} daddr != {} masquerade comment \"{comment}\"\n",
        ip.addr(),
        ip.trunc()
    )
}

/// The setup transaction: ensure table and chains, rewrite `postrouting`,
/// replace this instance's rules.
fn setup_script(stale: &[&NftRule], ips: &[IpNet], comment: &str) -> String {
    let mut s = format!(
        "add table inet {TABLE} {{ comment \"Masquerading for plugins from github.com/containernetworking/plugins\" ; }}\n\
         add chain inet {TABLE} {MASQ_CHAIN} {{ comment \"Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet\" ; }}\n\
         add chain inet {TABLE} postrouting {{ type nat hook postrouting priority srcnat ; }}\n\
         flush chain inet {TABLE} postrouting\n\
         add rule inet {TABLE} postrouting ip daddr == 224.0.0.0/4  return\n\
         add rule inet {TABLE} postrouting ip6 daddr == ff00::/8  return\n\
         add rule inet {TABLE} postrouting goto {MASQ_CHAIN}\n"
    );
    for rule in stale {
        s.push_str(&delete_line(rule));
    }
    for ip in ips {
        s.push_str(&masq_rule_line(ip, comment));
    }
    s
}

/// Adds the masquerade rules for `ips`, replacing older ones of the instance.
pub(crate) fn setup(t: &MasqTarget<'_>, ips: &[IpNet]) -> Result<(), FirewallError> {
    let rules = masq_rules()?;
    let prefix = nft_instance_hash(t.network, t.ifname, t.container_id);
    let stale: Vec<&NftRule> = with_prefix(&rules, &prefix).collect();
    let comment = nft_comment(t.network, t.ifname, t.container_id);
    nft::apply_text(&setup_script(&stale, ips, &comment))
}

/// Deletes the instance's rules, found by comment hash (no addresses needed).
/// Retried once, like the iptables sweep: a concurrent DEL may delete a
/// handle between our listing and our transaction.
pub(crate) fn teardown(t: &MasqTarget<'_>) -> Result<(), FirewallError> {
    // On an iptables host the table was never created: skip the `nft` exec.
    if nf_exists(NfFamily::Inet, TABLE, None) == Some(false) {
        return Ok(());
    }
    let prefix = nft_instance_hash(t.network, t.ifname, t.container_id);
    let attempt = || {
        let rules = masq_rules()?;
        let script: String = with_prefix(&rules, &prefix).map(delete_line).collect();
        if script.is_empty() {
            return Ok(());
        }
        nft::apply_text(&script)
    };
    attempt().or_else(|_| attempt())
}

/// Verifies that a rule with the instance comment exists for every address.
pub(crate) fn check(t: &MasqTarget<'_>, ips: &[IpNet]) -> Result<(), FirewallError> {
    let rules = masq_rules()?;
    let comment = nft_comment(t.network, t.ifname, t.container_id);
    for ip in ips {
        let addr = Value::String(ip.addr().to_string());
        let found = rules.iter().any(|r| {
            r.comment.as_deref() == Some(comment.as_str()) && matches_saddr(&r.expr, &addr)
        });
        if !found {
            return Err(FirewallError::Missing(format!(
                "nftables masquerade rule for {} ({comment}) not found",
                ip.addr()
            )));
        }
    }
    Ok(())
}

fn matches_saddr(expr: &Value, addr: &Value) -> bool {
    expr.as_array().is_some_and(|stmts| {
        stmts.iter().any(|s| {
            let m = &s["match"];
            m["left"]["payload"]["field"] == "saddr" && &m["right"] == addr
        })
    })
}

/// Deletes rules of `network` whose comment is not one of `valid`'s.
pub(crate) fn gc(network: &str, valid: &[(String, String)]) -> Result<(), FirewallError> {
    let rules = masq_rules()?;
    let keep: BTreeSet<String> = valid
        .iter()
        .map(|(id, ifname)| nft_comment(network, ifname, id))
        .collect();
    let prefix = nft_network_hash(network);
    let script: String = with_prefix(&rules, &prefix)
        .filter(|r| r.comment.as_ref().is_some_and(|c| !keep.contains(c)))
        .map(delete_line)
        .collect();
    if script.is_empty() {
        return Ok(());
    }
    nft::apply_text(&script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_lines() {
        let v4: IpNet = "10.22.0.2/16".parse().unwrap();
        assert_eq!(
            masq_rule_line(&v4, "h, net: n"),
            "add rule inet cni_plugins_masquerade masq_checks ip saddr == 10.22.0.2 ip daddr != 10.22.0.0/16 masquerade comment \"h, net: n\"\n"
        );
        let v6: IpNet = "fd10:22::2/64".parse().unwrap();
        assert!(
            masq_rule_line(&v6, "c").contains("ip6 saddr == fd10:22::2 ip6 daddr != fd10:22::/64")
        );
    }

    #[test]
    fn setup_script_deletes_stale_before_adding() {
        let stale = NftRule {
            chain: MASQ_CHAIN.into(),
            handle: 7,
            comment: Some("x".into()),
            expr: Value::Null,
        };
        let s = setup_script(&[&stale], &["10.1.0.2/24".parse().unwrap()], "c");
        let del = s.find("handle 7").unwrap();
        let add = s.find("ip saddr").unwrap();
        assert!(del < add);
        assert!(s.contains("flush chain inet cni_plugins_masquerade postrouting"));
    }

    #[test]
    fn saddr_matching() {
        let expr: Value = serde_json::from_str(
            r#"[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"10.22.0.2"}},
                {"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.22.0.0","len":16}}}},
                {"masquerade":null}]"#,
        )
        .unwrap();
        assert!(matches_saddr(&expr, &Value::String("10.22.0.2".into())));
        assert!(!matches_saddr(&expr, &Value::String("10.22.0.3".into())));
    }
}
