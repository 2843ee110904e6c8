//! Existence probes for nf_tables tables and chains, over netlink.
//!
//! Why: the firewall code learns whether a container's masquerade chain (or
//! the nftables masquerade table) exists by exec'ing `iptables-save`,
//! `ip6tables-save` or `nft`: ≈ 2–3 ms and 2–3 MB of RSS each. When the
//! answer is "it does not exist" — every ADD of a new pod, the IPv6 half of
//! an IPv4-only pod's DEL, the nftables backend on an iptables host — one
//! `NFT_MSG_GETTABLE`/`NFT_MSG_GETCHAIN` round trip on a netlink socket
//! says so in microseconds. Callers treat anything but a clear answer as
//! "unknown" and fall back to the tools.

use netlink_sys::protocols::NETLINK_NETFILTER;
use nix::errno::Errno;

use super::nft_rules::{NFTA_CHAIN_NAME, NFTA_CHAIN_TABLE, NFTA_TABLE_NAME};
use super::nft_wire::{nfgenmsg, nft_type, Request};
use super::transport::{Transport, Wire};

/// `NFPROTO_*`: the nf_tables family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NfFamily {
    /// `inet` (both address families).
    Inet = libc::NFPROTO_INET as u8,
    /// `ip` (what `iptables-nft` uses).
    Ip = libc::NFPROTO_IPV4 as u8,
    /// `ip6` (what `ip6tables-nft` uses).
    Ip6 = libc::NFPROTO_IPV6 as u8,
}

/// Whether table `table` (and, if given, its chain `chain`) exists in the
/// calling thread's network namespace. `None` when the kernel gave no clear
/// answer (nf_tables not available, permission denied, a malformed reply).
pub fn nf_exists(family: NfFamily, table: &str, chain: Option<&str>) -> Option<bool> {
    let mut transport = Transport::open(NETLINK_NETFILTER).ok()?;
    exists(&mut transport, family, table, chain)
}

/// `NFT_MSG_GETTABLE`/`NFT_MSG_GETCHAIN`: an object reply means "exists",
/// `ENOENT` "does not exist"; any other error, or no answer, is unknown.
fn exists<W: Wire>(
    transport: &mut Transport<W>,
    family: NfFamily,
    table: &str,
    chain: Option<&str>,
) -> Option<bool> {
    let mut msg = request(family, table, chain);
    let mut found = false;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    match transport.request("nf_tables lookup", &mut msg, flags, |_| {
        found = true;
        Ok(())
    }) {
        Ok(()) => Some(found),
        Err(e) if e.is(Errno::ENOENT) => Some(false),
        Err(_) => None,
    }
}

/// `nlmsghdr` + `nfgenmsg` + NUL-terminated names (what `nft list table` /
/// `nft list chain` send, plus `NLM_F_ACK`).
fn request(family: NfFamily, table: &str, chain: Option<&str>) -> Vec<u8> {
    let msg_type = match chain {
        None => libc::NFT_MSG_GETTABLE,
        Some(_) => libc::NFT_MSG_GETCHAIN,
    };
    let mut req = Request::new(nft_type(msg_type), &nfgenmsg(family as u8));
    // NFTA_TABLE_NAME and NFTA_CHAIN_TABLE are the same attribute number.
    debug_assert_eq!(NFTA_TABLE_NAME, NFTA_CHAIN_TABLE);
    req.attr_str(NFTA_TABLE_NAME, table);
    if let Some(chain) = chain {
        req.attr_str(NFTA_CHAIN_NAME, chain);
    }
    req.finish(0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::transport::replay::{error, message, Replay};

    #[test]
    fn request_layout() {
        let m = request(NfFamily::Ip, "nat", Some("CNI-x"));
        assert_eq!(m.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x0a04);
        assert_eq!(m[16], 2, "NFPROTO_IPV4");
        // First attribute: len 8 ("nat\0" + header), type 1, padded to 8.
        assert_eq!(&m[20..28], &[8, 0, 1, 0, b'n', b'a', b't', 0]);
        assert_eq!(&m[28..32], &[10, 0, 3, 0]);
        assert_eq!(&m[32..38], b"CNI-x\0");
        assert_eq!(m.len(), 40);
        let t = request(NfFamily::Ip6, "nat", None);
        assert_eq!(u16::from_ne_bytes(t[4..6].try_into().unwrap()), 0x0a01);
        assert_eq!(t.len(), 28);
    }

    fn ask(replies: Vec<Vec<u8>>) -> Option<bool> {
        let mut t = Transport::new(Replay::new(replies));
        exists(&mut t, NfFamily::Ip, "nat", Some("POSTROUTING"))
    }

    #[test]
    fn classify_replies() {
        assert_eq!(ask(vec![error(1, -libc::ENOENT)]), Some(false));
        assert_eq!(ask(vec![error(1, -libc::EPERM)]), None);
        assert_eq!(ask(vec![error(1, 0)]), Some(false));
        let object = message(0x0a03, 0, 1, &[2, 0, 0, 0]);
        assert_eq!(
            ask(vec![[object.clone(), error(1, 0)].concat()]),
            Some(true)
        );
        assert_eq!(ask(vec![object, error(1, 0)]), Some(true));
        assert_eq!(ask(vec![]), None);
        assert_eq!(ask(vec![vec![1, 2, 3]]), None);
    }
}
