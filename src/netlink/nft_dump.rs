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
//! dump the ruleset changed under (`NLM_F_DUMP_INTR`) is started over.

use super::nft_rules::{
    NFNL_SUBSYS_NFTABLES, NFTA_DATA_VERDICT, NFTA_EXPR_DATA, NFTA_EXPR_NAME, NFTA_IMMEDIATE_DATA,
    NFTA_LIST_ELEM, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_HANDLE, NFTA_RULE_TABLE,
    NFTA_VERDICT_CHAIN, NFTA_VERDICT_CODE, NFT_MSG_NEWRULE, VERDICT_GOTO, VERDICT_JUMP,
};
use super::nftables::NfFamily;
use super::wire::{self, Request};
use super::{NetlinkError, Result};

const NFT_MSG_GETRULE: u16 = 7;
/// Sequence number of the dump request (one request per socket).
const SEQ: u32 = 1;
/// `nlattr` header size, and the flag bits of `nla_type`.
const ATTR_HEADER_LEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

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

/// How many times a dump the ruleset changed under is started over.
const DUMP_TRIES: usize = 4;

/// Every rule of `table` in `family`, in the calling thread's network
/// namespace. A missing table is `ENOENT` ([`NetlinkError::Kernel`]). A
/// dump interrupted by a concurrent change is started over (a few times:
/// each interruption is someone else's commit, e.g. parallel DELs).
pub fn nft_table_rules(family: NfFamily, table: &str) -> Result<Vec<NftRuleRef>> {
    for _ in 1..DUMP_TRIES {
        if let Some(rules) = dump_once(family, table)? {
            return Ok(rules);
        }
    }
    dump_once(family, table)?.ok_or_else(|| NetlinkError::Protocol {
        op: format!("dump rules of table {table}"),
        detail: format!("the ruleset changed during each of {DUMP_TRIES} dumps"),
    })
}

/// One dump on a fresh socket; `None` if it was interrupted.
fn dump_once(family: NfFamily, table: &str) -> Result<Option<Vec<NftRuleRef>>> {
    let protocol = |detail: String| NetlinkError::Protocol {
        op: format!("dump rules of table {table}"),
        detail,
    };
    let sock = super::NfSocket::open().map_err(NetlinkError::Socket)?;
    let request = dump_request(family, table);
    super::retry_eintr(|| sock.send(&request, 0)).map_err(|e| protocol(e.to_string()))?;
    let mut rules = Vec::new();
    let mut data = Vec::new();
    loop {
        super::retry_eintr(|| super::recv_datagram(&sock, &mut data))
            .map_err(|e| protocol(e.to_string()))?;
        if data.is_empty() {
            return Err(protocol(
                "connection closed before the end of the dump".into(),
            ));
        }
        match parse_datagram(&data, family, table, &mut rules)? {
            Dump::More => {}
            Dump::Done => return Ok(Some(rules)),
            Dump::Interrupted => return Ok(None),
        }
    }
}

/// Where a dump stands after one datagram.
#[derive(Debug, PartialEq, Eq)]
enum Dump {
    /// More datagrams follow.
    More,
    /// `NLMSG_DONE`: complete.
    Done,
    /// `NLM_F_DUMP_INTR`: the ruleset changed since the dump began, so the
    /// rules read so far may be inconsistent.
    Interrupted,
}

/// `NFT_MSG_GETRULE` dump of one table (what `nft list table` sends).
fn dump_request(family: NfFamily, table: &str) -> Vec<u8> {
    let mut req = Request::new(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
        &[family as u8, 0, 0, 0],
    );
    req.attr_str(NFTA_RULE_TABLE, table);
    req.finish(wire::NLM_F_REQUEST | wire::NLM_F_DUMP, SEQ)
}

/// Adds the rules in one reply datagram to `rules`.
fn parse_datagram(
    data: &[u8],
    family: NfFamily,
    table: &str,
    rules: &mut Vec<NftRuleRef>,
) -> Result<Dump> {
    let op = || format!("dump rules of table {table}");
    let protocol = |detail: &str| NetlinkError::Protocol {
        op: op(),
        detail: detail.to_string(),
    };
    for msg in wire::messages(data) {
        let msg =
            msg.map_err(|len| protocol(&format!("malformed reply (message length {len})")))?;
        if msg.seq != SEQ {
            continue;
        }
        if msg.flags & wire::NLM_F_DUMP_INTR != 0 {
            return Ok(Dump::Interrupted);
        }
        match msg.msg_type {
            wire::NLMSG_ERROR | wire::NLMSG_DONE => {
                let code = wire::read_i32(msg.payload, 0)
                    .ok_or_else(|| protocol("truncated end of dump"))?;
                if code < 0 {
                    return Err(NetlinkError::Kernel {
                        op: op(),
                        source: std::io::Error::from_raw_os_error(code.wrapping_neg()),
                    });
                }
                return Ok(Dump::Done);
            }
            wire::NLMSG_OVERRUN => return Err(protocol("reply overrun")),
            t if t == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => {
                match parse_rule(msg.payload, family, table) {
                    Some(Some(rule)) => rules.push(rule),
                    Some(None) => {}
                    None => return Err(protocol("undecodable rule")),
                }
            }
            _ => {} // NLMSG_NOOP, or nothing a rule dump sends
        }
    }
    Ok(Dump::More)
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
            NFTA_RULE_TABLE => rule_table = Some(wire::value_str(value)),
            NFTA_RULE_CHAIN => chain = Some(wire::value_str(value)),
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
                NFTA_EXPR_NAME => name = Some(wire::value_str(value)),
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
            NFTA_VERDICT_CHAIN => chain = Some(wire::value_str(value)),
            _ => {}
        }
    }
    match code? {
        VERDICT_JUMP | VERDICT_GOTO => Some(Some(chain?)),
        _ => Some(None),
    }
}

/// The `(type, value)` attributes of `data`, or `None` unless they cover it
/// exactly (up to the last attribute's padding). Stricter than
/// `wire::attrs`, which stops quietly at a malformed attribute.
fn attrs_exact(data: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = usize::from(wire::read_u16(data, at)?);
        if len < ATTR_HEADER_LEN {
            return None;
        }
        let kind = wire::read_u16(data, at + 2)? & NLA_TYPE_MASK;
        out.push((kind, data.get(at + ATTR_HEADER_LEN..at + len)?));
        at += (len + 3) & !3;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: &str = "CNI-70a29d9dc18bc4d652ea5d59";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Golden bytes: the kernel's (6.18) answer to `nft list table ip nat`'s
    /// rule dump (captured with `strace -e read=3`), for
    /// `-A POSTROUTING -s 10.22.0.2/32 -m comment … -j CNI-70a2…`,
    /// `-A CNI-70a2… -d 10.22.0.0/16 -j ACCEPT` and `-A CNI-other -g CNI-70a2…`
    /// written by iptables-restore 1.8.9: one datagram of three `NEWRULE`
    /// messages, then `NLMSG_DONE` (sequence number 0, as nft sent it).
    fn captured() -> Vec<u8> {
        hex(include_str!("testdata/nft-1.0.6-getrule-dump.hex"))
    }

    /// The capture with its sequence numbers set to ours.
    #[cfg(target_endian = "little")]
    fn captured_with_our_seq() -> Vec<u8> {
        let mut data = captured();
        let mut at = 0;
        while at + 16 <= data.len() {
            let len = wire::read_u32(&data, at).expect("len") as usize;
            data[at + 8..at + 12].copy_from_slice(&SEQ.to_ne_bytes());
            at += (len + 3) & !3;
        }
        data
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_captured_dump() {
        let mut rules = Vec::new();
        let done = parse_datagram(&captured_with_our_seq(), NfFamily::Ip, "nat", &mut rules)
            .expect("parse");
        assert_eq!(done, Dump::Done);
        let rule = |chain: &str, handle, jumps: &[&str]| NftRuleRef {
            chain: chain.into(),
            handle,
            jumps: jumps.iter().map(|j| j.to_string()).collect(),
        };
        assert_eq!(
            rules,
            vec![
                rule(CHAIN, 5, &[]),
                rule("CNI-other", 6, &[CHAIN]),
                rule("POSTROUTING", 4, &[CHAIN]),
            ]
        );
        // Other family or table: skipped, not an error.
        let mut other = Vec::new();
        for (family, table) in [(NfFamily::Ip6, "nat"), (NfFamily::Ip, "filter")] {
            let done = parse_datagram(&captured_with_our_seq(), family, table, &mut other);
            assert_eq!(done.expect("parse"), Dump::Done);
        }
        assert!(other.is_empty());
        // Replies to another request are not ours.
        let mut none = Vec::new();
        let more = parse_datagram(&captured(), NfFamily::Ip, "nat", &mut none).expect("parse");
        assert_eq!(more, Dump::More);
        assert!(none.is_empty());
        // A message flagged NLM_F_DUMP_INTR: the dump must start over.
        let mut data = captured_with_our_seq();
        data[6] |= wire::NLM_F_DUMP_INTR as u8;
        let intr = parse_datagram(&data, NfFamily::Ip, "nat", &mut Vec::new()).expect("parse");
        assert_eq!(intr, Dump::Interrupted);
    }

    /// Cut anywhere, the capture never panics: a cut message is an error,
    /// a cut attribute inside one makes the rule undecodable.
    #[test]
    fn truncated_dump_never_panics() {
        let data = captured();
        for cut in 0..data.len() {
            let mut rules = Vec::new();
            let _ = parse_datagram(&data[..cut], NfFamily::Ip, "nat", &mut rules);
        }
        // The first message's payload, cut at every length: it decodes only
        // if cut between top-level attributes before the expressions (then
        // no verdict is in it), never to a wrong jump.
        let first_len = wire::read_u32(&data, 0).expect("len") as usize;
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

    #[test]
    fn request_is_what_nft_sends() {
        // nft 1.0.6 `list table ip nat`: flags REQUEST|DUMP, family ip,
        // NFTA_RULE_TABLE "nat" (sequence number 0 there, 1 here).
        let want = hex("1c000000 070a0103 01000000 00000000
             02000000 08000100 6e617400");
        let mut got = dump_request(NfFamily::Ip, "nat");
        got[8..12].copy_from_slice(&[1, 0, 0, 0]);
        assert_eq!(got, want);
    }

    #[test]
    fn verdicts_and_odd_attributes() {
        let verdict = |code: i32, chain: Option<&str>| {
            let mut req = Request::new(0, &[]);
            req.attr(NFTA_VERDICT_CODE, &code.to_be_bytes());
            if let Some(c) = chain {
                req.attr_str(NFTA_VERDICT_CHAIN, c);
            }
            wire::payload(req)
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
        assert_eq!(attrs_exact(&[4, 0, 1, 0]), Some(vec![(1, &[][..])]));
        assert_eq!(attrs_exact(&[3, 0, 1, 0]), None);
        assert_eq!(attrs_exact(&[8, 0, 1, 0, 1]), None);
        assert_eq!(attrs_exact(&[5, 0, 1, 0, 9]), Some(vec![(1, &[9u8][..])]));
    }
}
