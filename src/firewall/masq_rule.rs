//! The rules of one container's masquerade chain, in the shape the
//! reference's `AppendUnique` adds them: shared by the `iptables-restore`
//! writer (`iptables`) and the netlink writer (`nft_direct`), which
//! encode the same rules two ways.

use ipnet::IpNet;

use super::iptables_save::{restore_quote, NatTable};

/// A rule we want, in the shape the reference's `AppendUnique` adds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WantedRule {
    /// `-A <chain>`.
    pub(super) chain: String,
    /// `-s <addr>` (a host address).
    pub(super) source: Option<IpNet>,
    /// `[!] -d <net>`.
    pub(super) dest: Option<IpNet>,
    pub(super) dest_negated: bool,
    /// `-j <target>`: `ACCEPT`, `MASQUERADE` or a chain.
    pub(super) target: String,
    /// `-m comment --comment <comment>`.
    pub(super) comment: String,
}

impl WantedRule {
    /// Per address, in reference order: ACCEPT own subnet, MASQUERADE
    /// non-multicast, then `POSTROUTING -s <ip> -j <chain>`.
    pub(super) fn for_ip(chain: &str, comment: &str, ip: &IpNet) -> [WantedRule; 3] {
        let rule = |chain: &str, source, dest, dest_negated, target: &str| WantedRule {
            chain: chain.to_string(),
            source,
            dest,
            dest_negated,
            target: target.to_string(),
            comment: comment.to_string(),
        };
        [
            rule(chain, None, Some(ip.trunc()), false, "ACCEPT"),
            rule(chain, None, Some(multicast(ip)), true, "MASQUERADE"),
            rule(
                "POSTROUTING",
                Some(IpNet::from(ip.addr())),
                None,
                false,
                chain,
            ),
        ]
    }

    pub(super) fn is_in(&self, table: &NatTable) -> bool {
        table.rules.iter().any(|r| {
            !r.foreign
                && r.chain == self.chain
                && r.source == self.source
                && r.dest == self.dest
                && r.dest_negated == self.dest_negated
                && r.target.as_deref() == Some(self.target.as_str())
                && r.comment.as_deref() == Some(self.comment.as_str())
        })
    }

    /// The `-A` line, argument order as the reference passes them.
    pub(super) fn append_line(&self) -> String {
        let mut line = format!("-A {}", self.chain);
        if let Some(src) = &self.source {
            line.push_str(&format!(" -s {}", src.addr()));
        }
        if let Some(dst) = &self.dest {
            let bang = if self.dest_negated { "! " } else { "" };
            line.push_str(&format!(" {bang}-d {dst}"));
        }
        line.push_str(&format!(
            " -j {} -m comment --comment {}",
            self.target,
            restore_quote(&self.comment)
        ));
        line
    }
}

/// The rules missing from `table` for `ips` (all of one family), in the
/// order the reference's `AppendUnique` calls add them.
pub(super) fn planned_rules(
    table: &NatTable,
    chain: &str,
    comment: &str,
    ips: &[IpNet],
) -> Vec<WantedRule> {
    let mut planned: Vec<WantedRule> = Vec::new();
    for ip in ips {
        for rule in WantedRule::for_ip(chain, comment, ip) {
            if !rule.is_in(table) && !planned.contains(&rule) {
                planned.push(rule);
            }
        }
    }
    planned
}

/// The reference never masquerades multicast: the multicast range of
/// `ip`'s family.
fn multicast(ip: &IpNet) -> IpNet {
    match ip {
        IpNet::V4(_) => "224.0.0.0/4".parse().expect("valid literal"),
        IpNet::V6(_) => "ff00::/8".parse().expect("valid literal"),
    }
}
