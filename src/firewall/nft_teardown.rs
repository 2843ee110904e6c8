//! A container's iptables-nft masquerade chain removed straight from
//! nf_tables, instead of `iptables-save` + `iptables-restore --noflush`.
//!
//! Why: those two execs cost ≈ 5 ms of every ipMasq DEL, and their exit and
//! RCU work slows the kernel's concurrent veth deletion. With iptables-nft,
//! the chain and the rules jumping to it are plain nf_tables objects, and
//! removing them needs no iptables encoding at all: a rule "jumps to the
//! chain" when one of its verdicts is `jump`/`goto <chain>` (the set
//! `iptables-save`'s `-j <chain>` lines show, in every form the plugin ever
//! wrote: bare IP, legacy `-s ip/prefix`), and the kernel deletes rules by
//! handle. So: one rule dump of `nat`, then one transaction that deletes
//! those rules by handle, flushes the chain and deletes it — what
//! `iptables-restore` sends for `-D …`, `-F`, `-X`. All or nothing.
//!
//! One retry, as `sweep` does: a concurrent DEL may have deleted a handle or
//! the chain first (`ENOENT`), or changed the table during the dump; the
//! second round re-probes and re-dumps, and a chain found gone after a
//! failure is success (someone else's DEL did the job).
//! Anything else (probe without a clear answer, undecodable dump, the chain
//! still referenced by something we cannot delete, e.g. a verdict map:
//! `EBUSY`) is an error, and the caller falls back to the tools, which
//! also do the job for an iptables version not in
//! `iptables_version::VERIFIED`.

use super::error::FirewallError;
use crate::netlink::{nf_exists, nft_table_rules, NetlinkError, NfFamily, NftBatch, NftRuleRef};

const TABLE: &str = "nat";

/// What [`remove_chain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removed {
    /// The chain does not exist: nothing jumps to it either.
    Absent,
    /// The chain, its rules and every jump to it were deleted.
    Deleted,
}

/// Removes `chain` from table `nat` of `family`, with every rule jumping
/// or going to it. Nothing is changed when this fails.
pub(super) fn remove_chain(family: NfFamily, chain: &str) -> Result<Removed, FirewallError> {
    let mut failure = None;
    for _ in 0..2 {
        match nf_exists(family, TABLE, Some(chain)) {
            Some(false) => return Ok(Removed::Absent),
            Some(true) => {}
            None => {
                return Err(NetlinkError::Protocol {
                    op: format!("look up chain {TABLE} {chain}"),
                    detail: "no clear answer from nf_tables".into(),
                }
                .into())
            }
        }
        let attempt = nft_table_rules(family, TABLE)
            .and_then(|rules| teardown_batch(family, chain, &rules).commit());
        match attempt {
            Ok(()) => return Ok(Removed::Deleted),
            Err(e) => failure = Some(e),
        }
    }
    // A concurrent DEL of the same pod that committed first makes our batch
    // fail (`ENOENT`) and leaves nothing to do: that is success.
    if nf_exists(family, TABLE, Some(chain)) == Some(false) {
        return Ok(Removed::Absent);
    }
    Err(failure
        .map(FirewallError::from)
        .unwrap_or_else(|| FirewallError::Missing("nf_tables teardown not attempted".into())))
}

/// Deletes the jumps to `chain` (by handle; rules inside `chain` itself
/// go with the flush), then the chain's rules, then the chain.
fn teardown_batch(family: NfFamily, chain: &str, rules: &[NftRuleRef]) -> NftBatch {
    let mut batch = NftBatch::new(family);
    let jumps = rules
        .iter()
        .filter(|r| r.chain != chain && r.jumps.iter().any(|j| j == chain));
    for rule in jumps {
        batch.delete_rule(TABLE, &rule.chain, rule.handle);
    }
    batch.flush_chain(TABLE, chain).delete_chain(TABLE, chain);
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(chain: &str, handle: u64, jumps: &[&str]) -> NftRuleRef {
        NftRuleRef {
            chain: chain.into(),
            handle,
            jumps: jumps.iter().map(|j| j.to_string()).collect(),
        }
    }

    #[test]
    fn batch_deletes_only_jumps_to_the_chain() {
        let rules = [
            rule("POSTROUTING", 4, &["CNI-a"]),
            rule("POSTROUTING", 5, &["CNI-b"]),
            rule("POSTROUTING", 6, &[]),
            rule("POSTROUTING", 7, &["CNI-a"]),
            rule("CNI-a", 8, &[]),
            rule("CNI-a", 9, &["KUBE-X"]),
            rule("KUBE-Y", 10, &["KUBE-Z", "CNI-a"]),
            rule("CNI-b", 11, &[]),
        ];
        let got = teardown_batch(NfFamily::Ip6, "CNI-a", &rules).to_bytes();
        let mut want = NftBatch::new(NfFamily::Ip6);
        want.delete_rule(TABLE, "POSTROUTING", 4)
            .delete_rule(TABLE, "POSTROUTING", 7)
            .delete_rule(TABLE, "KUBE-Y", 10)
            .flush_chain(TABLE, "CNI-a")
            .delete_chain(TABLE, "CNI-a");
        assert_eq!(got, want.to_bytes());

        let mut alone = NftBatch::new(NfFamily::Ip);
        alone
            .flush_chain(TABLE, "CNI-c")
            .delete_chain(TABLE, "CNI-c");
        assert_eq!(
            teardown_batch(NfFamily::Ip, "CNI-c", &rules).to_bytes(),
            alone.to_bytes()
        );
    }
}
