//! A new pod's IPv4 masquerade chain written straight into nf_tables, in
//! the encoding `iptables-nft` 1.8.9 uses, instead of exec'ing
//! `iptables-restore`.
//!
//! Why: that exec was the peak RSS (≈ 2.3 MB) and ≈ 2.5 ms of every ipMasq
//! ADD. With iptables-nft, an iptables rule IS an nf_tables rule: the same
//! payload/bitwise/cmp expressions for `-s`/`-d`, xtables `match comment` and
//! `target MASQUERADE` through nft_compat, a `counter`, and an `accept` or
//! `jump` verdict. Written identically, `iptables-save`, `iptables -D/-C`,
//! the reference plugin's DEL and our own teardown see exactly what
//! `iptables-restore` would have made (the tests compare both the
//! `iptables-save` lines and the `nft --debug=netlink` expression dumps).
//!
//! Only the case where the encoding is known and nothing has to be read
//! first: IPv4, the chain absent, table `ip nat` with its base chain
//! `POSTROUTING` present (`iptables.rs` checks; creating tables and base
//! chains is left to iptables). Everything else, and any refusal by the
//! kernel, takes the `iptables-restore` path. So does any iptables other
//! than the versions in `iptables_version::VERIFIED`: another version's
//! userspace may encode (or parse) these rules differently.

use ipnet::{IpNet, Ipv4Net};

use super::error::FirewallError;
use super::masq_rule::WantedRule;
use crate::netlink::{nf_exists, CmpOp, NfFamily, NftBatch, NftExpr};

const TABLE: &str = "nat";
const POSTROUTING: &str = "POSTROUTING";
/// Offsets of the source and destination address in the IPv4 header.
const IPV4_SADDR: u32 = 12;
const IPV4_DADDR: u32 = 16;
/// `sizeof(struct xt_comment_info)`: `char comment[XT_MAX_COMMENT_LEN]`.
const XT_COMMENT_INFO_LEN: usize = 256;
/// `XT_ALIGN(sizeof(struct nf_nat_ipv4_multi_range_compat))`: `rangesize`
/// plus one `nf_nat_ipv4_range` (20 bytes), aligned to 8.
const MASQUERADE_INFO_LEN: usize = 24;

/// True when `ip nat` and its `POSTROUTING` base chain exist (always on a
/// node that has seen kube-proxy, docker or an earlier ADD).
pub(super) fn base_chain_ready() -> bool {
    nf_exists(NfFamily::Ip, TABLE, Some(POSTROUTING)) == Some(true)
}

/// Creates `chain` in `ip nat` and appends `rules` (in order), in one
/// transaction: all or nothing. `EEXIST` means the chain appeared since the
/// probe (a concurrent ADD of the same container).
pub(super) fn append_masq_rules(chain: &str, rules: &[WantedRule]) -> Result<(), FirewallError> {
    masq_batch(chain, rules)?.commit()?;
    Ok(())
}

fn masq_batch(chain: &str, rules: &[WantedRule]) -> Result<NftBatch, FirewallError> {
    let mut batch = NftBatch::new(NfFamily::Ip);
    batch.new_chain(TABLE, chain);
    for rule in rules {
        batch.append_rule(TABLE, &rule.chain, &rule_exprs(rule)?);
    }
    Ok(batch)
}

/// iptables-nft's expressions for one rule, in its order: addresses
/// (source, then destination), matches, counter, then the verdict/target.
fn rule_exprs(rule: &WantedRule) -> Result<Vec<NftExpr<'_>>, FirewallError> {
    let mut exprs = Vec::with_capacity(8);
    if let Some(src) = &rule.source {
        exprs.extend(addr_match(IPV4_SADDR, v4(src)?, false)?);
    }
    if let Some(dst) = &rule.dest {
        exprs.extend(addr_match(IPV4_DADDR, v4(dst)?, rule.dest_negated)?);
    }
    exprs.push(NftExpr::Match {
        name: "comment",
        rev: 0,
        info: comment_info(&rule.comment)?,
    });
    exprs.push(NftExpr::Counter);
    exprs.push(match rule.target.as_str() {
        "ACCEPT" => NftExpr::Accept,
        "MASQUERADE" => NftExpr::Target {
            name: "MASQUERADE",
            rev: 0,
            info: masquerade_info(),
        },
        chain => NftExpr::Jump(chain),
    });
    Ok(exprs)
}

fn v4(net: &IpNet) -> Result<Ipv4Net, FirewallError> {
    match net {
        IpNet::V4(v4) => Ok(*v4),
        IpNet::V6(_) => Err(FirewallError::invalid(
            "address",
            &net.to_string(),
            "the nf_tables fast path writes IPv4 rules only",
        )),
    }
}

/// How iptables-nft 1.8.9 (`add_addr`) loads a prefix: `None` for /0 (no
/// expression at all), else the bytes loaded and, unless the mask is whole
/// bytes, the mask to apply: /8, /16, /24, /32 load 1–4 bytes and compare
/// directly; any other prefix loads all 4 bytes and masks them.
pub(super) fn prefix_load(prefix: u8) -> Option<(u32, Option<[u8; 4]>)> {
    match prefix {
        0 => None,
        p if p % 8 == 0 => Some((u32::from(p / 8), None)),
        p => {
            let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
            Some((4, Some(mask.to_be_bytes())))
        }
    }
}

/// `[!] -s/-d net`: payload load, optional bitwise, cmp.
fn addr_match(
    offset: u32,
    net: Ipv4Net,
    negated: bool,
) -> Result<Vec<NftExpr<'static>>, FirewallError> {
    let Some((len, mask)) = prefix_load(net.prefix_len()) else {
        if negated {
            // iptables-nft would load 0 bytes here; not a rule we make.
            return Err(FirewallError::invalid(
                "address",
                &net.to_string(),
                "a negated /0 has no nf_tables fast-path encoding",
            ));
        }
        return Ok(Vec::new());
    };
    let op = if negated { CmpOp::Neq } else { CmpOp::Eq };
    let addr = net.trunc().addr().octets();
    let mut exprs = vec![NftExpr::NetworkPayload { offset, len }];
    if let Some(mask) = mask {
        exprs.push(NftExpr::Bitwise {
            mask: mask.to_vec(),
        });
    }
    exprs.push(NftExpr::Cmp {
        op,
        data: addr[..len as usize].to_vec(),
    });
    Ok(exprs)
}

/// `struct xt_comment_info`: the comment, NUL-padded to 256 bytes. Only
/// comments `iptables-restore` would take unchanged (≤ 255 bytes, no
/// control characters); anything else is left to it.
fn comment_info(comment: &str) -> Result<Vec<u8>, FirewallError> {
    if comment.len() >= XT_COMMENT_INFO_LEN || comment.chars().any(char::is_control) {
        return Err(FirewallError::invalid(
            "comment",
            comment,
            "not encodable on the nf_tables fast path",
        ));
    }
    let mut info = comment.as_bytes().to_vec();
    info.resize(XT_COMMENT_INFO_LEN, 0);
    Ok(info)
}

/// `struct nf_nat_ipv4_multi_range_compat` of a plain `-j MASQUERADE`:
/// `rangesize` 1 (host byte order), one zeroed range, padding.
fn masquerade_info() -> Vec<u8> {
    let mut info = 1u32.to_ne_bytes().to_vec();
    info.resize(MASQUERADE_INFO_LEN, 0);
    info
}

#[cfg(test)]
mod tests {
    use super::super::iptables_save::NatTable;
    use super::super::masq_rule::planned_rules;
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().expect("test CIDR")).collect()
    }

    #[test]
    fn prefix_loads_like_iptables_nft() {
        assert_eq!(prefix_load(0), None);
        assert_eq!(prefix_load(4), Some((4, Some([0xf0, 0, 0, 0]))));
        assert_eq!(prefix_load(8), Some((1, None)));
        assert_eq!(prefix_load(12), Some((4, Some([0xff, 0xf0, 0, 0]))));
        assert_eq!(prefix_load(16), Some((2, None)));
        assert_eq!(prefix_load(24), Some((3, None)));
        assert_eq!(prefix_load(31), Some((4, Some([0xff, 0xff, 0xff, 0xfe]))));
        assert_eq!(prefix_load(32), Some((4, None)));
    }

    #[test]
    fn address_matches() {
        let m = |net: &str, neg| addr_match(IPV4_DADDR, net.parse().expect("net"), neg);
        assert_eq!(m("0.0.0.0/0", false).expect("/0"), vec![]);
        assert!(m("0.0.0.0/0", true).is_err());
        assert_eq!(
            m("10.252.0.0/24", false).expect("/24"),
            vec![
                NftExpr::NetworkPayload { offset: 16, len: 3 },
                NftExpr::Cmp {
                    op: CmpOp::Eq,
                    data: vec![10, 252, 0]
                },
            ]
        );
        assert_eq!(
            m("224.0.0.0/4", true).expect("/4"),
            vec![
                NftExpr::NetworkPayload { offset: 16, len: 4 },
                NftExpr::Bitwise {
                    mask: vec![0xf0, 0, 0, 0]
                },
                NftExpr::Cmp {
                    op: CmpOp::Neq,
                    data: vec![0xe0, 0, 0, 0]
                },
            ]
        );
    }

    #[test]
    fn odd_comments_and_ipv6_are_refused() {
        assert!(comment_info(&"x".repeat(255)).is_ok());
        assert!(comment_info(&"x".repeat(256)).is_err());
        assert!(comment_info("a\nb").is_err());
        assert!(comment_info("a\0b").is_err());
        let rules = planned_rules(&NatTable::default(), "CNI-x", "c", &nets(&["fd00::2/64"]));
        assert!(masq_batch("CNI-x", &rules).is_err());
    }

    /// Golden bytes: the batch `iptables-restore --noflush` (iptables 1.8.9,
    /// nf_tables) sent for chain CNI-abc and pod 10.252.0.2/24 with the
    /// mynet/abc123 comment, captured with `strace -e write=3` in a
    /// throwaway netns. Two deliberate differences: no `NFNL_BATCH_GENID`
    /// in `BATCH_BEGIN`, and `NLM_F_ACK` on the chain and rule messages.
    #[cfg(target_endian = "little")]
    #[test]
    fn batch_is_what_iptables_restore_sends() {
        let captured =
            crate::hex::decode(include_str!("testdata/iptables-nft-1.8.9-masq-batch.hex"))
                .expect("hex");
        // BATCH_BEGIN: 28 bytes with the genid attribute → 20 without.
        let mut want = captured[..28].to_vec();
        want[0] = 20;
        want.truncate(20);
        let mut at = 28;
        while at < captured.len() {
            let len = u32::from_ne_bytes(captured[at..at + 4].try_into().expect("len")) as usize;
            let mut msg = captured[at..at + len].to_vec();
            if msg[5] == 0x0a {
                msg[6] |= 0x04; // NLM_F_ACK on NEWCHAIN/NEWRULE
            }
            want.extend_from_slice(&msg);
            at += len;
        }
        let comment = super::super::naming::iptables_comment("mynet", "abc123");
        let rules = planned_rules(
            &NatTable::default(),
            "CNI-abc",
            &comment,
            &nets(&["10.252.0.2/24"]),
        );
        let batch = masq_batch("CNI-abc", &rules).expect("batch");
        assert_eq!(batch.to_bytes(), want);
    }
}
