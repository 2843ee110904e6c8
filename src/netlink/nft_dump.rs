//! Reading which rules of an nf_tables table jump to which chain.
//!
//! Why: removing a container's iptables-nft chain needs the rules that jump
//! to it (`-j CNI-…` in `POSTROUTING`, in any form the plugin ever wrote).
//! `iptables-save` finds them by printing the whole table (≈ 2.5 ms per
//! exec). Over netlink, one `NFT_MSG_GETRULE` dump of the table answers the
//! same question in microseconds, and finding a jump needs no knowledge of
//! iptables' match encoding: a jump is an `immediate` expression whose
//! verdict is `NFT_JUMP`/`NFT_GOTO` with a chain name. Each rule comes with
//! its handle, which is what a `DELRULE` needs.
//!
//! The kernel's replies are input: every length is checked, a nested
//! attribute must be walked to its exact end (a garbled nest must not hide
//! a verdict), and anything not understood is an error, never a panic. A
//! dump the ruleset changed under (`NLM_F_DUMP_INTR`) is started over
//! (by the transport, as every dump).

use netlink_sys::protocols::NETLINK_NETFILTER;

use super::nft_rules::{
    NFTA_DATA_VERDICT, NFTA_EXPR_DATA, NFTA_EXPR_NAME, NFTA_IMMEDIATE_DATA, NFTA_LIST_ELEM,
    NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_HANDLE, NFTA_RULE_TABLE, NFTA_VERDICT_CHAIN,
    NFTA_VERDICT_CODE, VERDICT_GOTO, VERDICT_JUMP,
};
use super::nft_wire::{attrs_exact, nfgenmsg, nft_type, value_str, Request};
use super::nftables::NfFamily;
use super::transport::{Transport, Wire};
use super::Result;

/// One rule of a dumped table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRuleRef {
    /// The chain the rule is in.
    pub chain: String,
    /// Its handle (unique within the table).
    pub handle: u64,
    /// Chains its verdicts jump or go to (`jump`/`goto`), in order.
    pub jumps: Vec<String>,
}

/// Every rule of `table` in `family`, in the calling thread's network
/// namespace. A missing table is `ENOENT` ([`NetlinkError::Kernel`]). A
/// dump interrupted by a concurrent change (each interruption is someone
/// else's commit, e.g. parallel DELs) is started over by the transport, a
/// bounded number of times.
///
/// [`NetlinkError::Kernel`]: super::NetlinkError::Kernel
pub fn nft_table_rules(family: NfFamily, table: &str) -> Result<Vec<NftRuleRef>> {
    dump_on(&mut Transport::open(NETLINK_NETFILTER)?, family, table)
}

fn dump_on<W: Wire>(
    transport: &mut Transport<W>,
    family: NfFamily,
    table: &str,
) -> Result<Vec<NftRuleRef>> {
    let op = format!("dump rules of table {table}");
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut request = dump_request(family, table);
    transport.dump(&op, &mut request, flags, |frame, rules| {
        if frame.header.message_type != nft_type(libc::NFT_MSG_NEWRULE) {
            return Ok(()); // nothing else is part of a rule dump
        }
        match parse_rule(frame.payload, family, table) {
            Some(Some(rule)) => rules.push(rule),
            Some(None) => {}
            None => return Err("undecodable rule".into()),
        }
        Ok(())
    })
}

/// `NFT_MSG_GETRULE` dump of one table (what `nft list table` sends).
fn dump_request(family: NfFamily, table: &str) -> Vec<u8> {
    let mut req = Request::new(nft_type(libc::NFT_MSG_GETRULE), &nfgenmsg(family as u8));
    req.attr_str(NFTA_RULE_TABLE, table);
    req.finish((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16, 0)
}

/// One `NEWRULE` message (after `nlmsghdr`): `None` if malformed,
/// `Some(None)` if it belongs to another family or table (a kernel that
/// ignored the table filter).
fn parse_rule(payload: &[u8], family: NfFamily, table: &str) -> Option<Option<NftRuleRef>> {
    // nfgenmsg: family, version, res_id.
    let nf_family = *payload.first()?;
    let mut rule_table = None;
    let mut chain = None;
    let mut handle = None;
    let mut jumps = Vec::new();
    for (kind, value) in attrs_exact(payload.get(4..)?)? {
        match kind {
            NFTA_RULE_TABLE => rule_table = Some(value_str(value)),
            NFTA_RULE_CHAIN => chain = Some(value_str(value)),
            NFTA_RULE_HANDLE => handle = Some(u64::from_be_bytes(value.try_into().ok()?)),
            NFTA_RULE_EXPRESSIONS => jumps = expression_jumps(value)?,
            _ => {}
        }
    }
    if nf_family != family as u8 || rule_table? != table {
        return Some(None);
    }
    Some(Some(NftRuleRef {
        chain: chain?,
        handle: handle?,
        jumps,
    }))
}

/// The jump/goto targets of the `immediate` expressions in an
/// `NFTA_RULE_EXPRESSIONS` list.
fn expression_jumps(list: &[u8]) -> Option<Vec<String>> {
    let mut jumps = Vec::new();
    for (kind, elem) in attrs_exact(list)? {
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        let mut name = None;
        let mut data = None;
        for (kind, value) in attrs_exact(elem)? {
            match kind {
                NFTA_EXPR_NAME => name = Some(value_str(value)),
                NFTA_EXPR_DATA => data = Some(value),
                _ => {}
            }
        }
        if name? == "immediate" {
            jumps.extend(immediate_jump(data?)?);
        }
    }
    Some(jumps)
}

/// `NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { code, chain } }`: the chain
/// of a jump or goto verdict; `Some(None)` for any other immediate.
fn immediate_jump(data: &[u8]) -> Option<Option<String>> {
    for (kind, value) in attrs_exact(data)? {
        if kind != NFTA_IMMEDIATE_DATA {
            continue;
        }
        for (kind, value) in attrs_exact(value)? {
            if kind == NFTA_DATA_VERDICT {
                return verdict_jump(value);
            }
        }
    }
    Some(None)
}

fn verdict_jump(verdict: &[u8]) -> Option<Option<String>> {
    let mut code = None;
    let mut chain = None;
    for (kind, value) in attrs_exact(verdict)? {
        match kind {
            NFTA_VERDICT_CODE => code = Some(i32::from_be_bytes(value.try_into().ok()?)),
            NFTA_VERDICT_CHAIN => chain = Some(value_str(value)),
            _ => {}
        }
    }
    match code? {
        VERDICT_JUMP | VERDICT_GOTO => Some(Some(chain?)),
        _ => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::test_bytes::hex;
    use crate::netlink::transport::replay::Replay;

    const CHAIN: &str = "CNI-70a29d9dc18bc4d652ea5d59";

    /// Golden bytes: the kernel's (6.18) answer to `nft list table ip nat`'s
    /// rule dump (captured with `strace -e read=3`), for
    /// `-A POSTROUTING -s 10.22.0.2/32 -m comment … -j CNI-70a2…`,
    /// `-A CNI-70a2… -d 10.22.0.0/16 -j ACCEPT` and `-A CNI-other -g CNI-70a2…`
    /// written by iptables-restore 1.8.9: one datagram of three `NEWRULE`
    /// messages, then `NLMSG_DONE` (sequence number 0, as nft sent it).
    fn captured() -> Vec<u8> {
        hex(include_str!("testdata/nft-1.0.6-getrule-dump.hex"))
    }

    /// The capture with its sequence numbers set to `seq`, and `flags`
    /// added to every message.
    #[cfg(target_endian = "little")]
    fn captured_as(seq: u32, flags: u16) -> Vec<u8> {
        let mut data = captured();
        let mut at = 0;
        while at + 16 <= data.len() {
            let len = u32::from_ne_bytes(data[at..at + 4].try_into().expect("len")) as usize;
            let old = u16::from_ne_bytes(data[at + 6..at + 8].try_into().expect("flags"));
            data[at + 6..at + 8].copy_from_slice(&(old | flags).to_ne_bytes());
            data[at + 8..at + 12].copy_from_slice(&seq.to_ne_bytes());
            at += (len + 3) & !3;
        }
        data
    }

    fn replay(
        replies: impl IntoIterator<Item = Vec<u8>>,
        family: NfFamily,
        table: &str,
    ) -> (Result<Vec<NftRuleRef>>, usize) {
        let mut t = Transport::new(Replay::new(replies));
        let rules = dump_on(&mut t, family, table);
        (rules, t.wire().sent.len())
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_captured_dump() {
        let (rules, sent) = replay([captured_as(1, 0)], NfFamily::Ip, "nat");
        assert_eq!(sent, 1);
        let rule = |chain: &str, handle, jumps: &[&str]| NftRuleRef {
            chain: chain.into(),
            handle,
            jumps: jumps.iter().map(|j| j.to_string()).collect(),
        };
        assert_eq!(
            rules.expect("parse"),
            vec![
                rule(CHAIN, 5, &[]),
                rule("CNI-other", 6, &[CHAIN]),
                rule("POSTROUTING", 4, &[CHAIN]),
            ]
        );
        // Other family or table: skipped, not an error.
        for (family, table) in [(NfFamily::Ip6, "nat"), (NfFamily::Ip, "filter")] {
            let (rules, _) = replay([captured_as(1, 0)], family, table);
            assert_eq!(rules.expect("parse"), vec![]);
        }
        // Replies to another request are not ours: the dump reads on.
        let (rules, _) = replay([captured(), captured_as(1, 0)], NfFamily::Ip, "nat");
        assert_eq!(rules.expect("parse").len(), 3);
    }

    /// Recorded frames replayed: the first dump is flagged
    /// `NLM_F_DUMP_INTR` (the ruleset changed under it), so it is thrown
    /// away and the table dumped again with the next sequence number.
    #[cfg(target_endian = "little")]
    #[test]
    fn interrupted_dump_is_dumped_again() {
        let intr = libc::NLM_F_DUMP_INTR as u16;
        let (rules, sent) = replay(
            [captured_as(1, intr), captured_as(2, 0)],
            NfFamily::Ip,
            "nat",
        );
        assert_eq!((rules.expect("second dump").len(), sent), (3, 2));
        let always = (1..=10).map(|seq| captured_as(seq, intr));
        let (rules, sent) = replay(always, NfFamily::Ip, "nat");
        let err = rules.expect_err("never consistent");
        assert!(err.to_string().contains("changed during each"), "{err}");
        assert_eq!(sent, crate::netlink::transport::DUMP_TRIES);
    }

    /// Cut anywhere, the capture never panics: a cut message is an error,
    /// a cut attribute inside one makes the rule undecodable.
    #[test]
    fn truncated_dump_never_panics() {
        let data = captured();
        for cut in 0..data.len() {
            let (rules, _) = replay([data[..cut].to_vec()], NfFamily::Ip, "nat");
            assert!(rules.is_err(), "no NLMSG_DONE of ours: {cut}");
        }
        // The first message's payload, cut at every length: it decodes only
        // if cut between top-level attributes before the expressions (then
        // no verdict is in it), never to a wrong jump.
        let first_len = u32::from_ne_bytes(data[0..4].try_into().expect("len")) as usize;
        let payload = &data[16..first_len];
        let full = parse_rule(payload, NfFamily::Ip, "nat")
            .flatten()
            .expect("first rule");
        for cut in 0..payload.len() {
            if let Some(Some(rule)) = parse_rule(&payload[..cut], NfFamily::Ip, "nat") {
                assert!(
                    rule.jumps.is_empty() || rule == full,
                    "cut at {cut}: {rule:?}"
                );
            }
        }
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn request_is_what_nft_sends() {
        // nft 1.0.6 `list table ip nat`: flags REQUEST|DUMP, family ip,
        // NFTA_RULE_TABLE "nat" (sequence number 0 there, 1 here).
        let want = hex("1c000000 070a0103 01000000 00000000
             02000000 08000100 6e617400");
        let mut t = Transport::new(Replay::new([captured_as(1, 0)]));
        dump_on(&mut t, NfFamily::Ip, "nat").expect("dump");
        assert_eq!(t.wire().sent, vec![want]);
    }

    #[test]
    fn verdicts_and_odd_attributes() {
        let verdict = |code: i32, chain: Option<&str>| {
            let mut req = Request::new(0, &[]);
            req.attr(NFTA_VERDICT_CODE, &code.to_be_bytes());
            if let Some(c) = chain {
                req.attr_str(NFTA_VERDICT_CHAIN, c);
            }
            crate::netlink::nft_wire::payload(req)
        };
        assert_eq!(
            verdict_jump(&verdict(-3, Some("X"))),
            Some(Some("X".into()))
        );
        assert_eq!(
            verdict_jump(&verdict(-4, Some("Y"))),
            Some(Some("Y".into()))
        );
        assert_eq!(verdict_jump(&verdict(1, None)), Some(None));
        assert_eq!(verdict_jump(&verdict(-3, None)), None, "jump without chain");
        assert_eq!(verdict_jump(&[]), None, "no code");
    }
}
