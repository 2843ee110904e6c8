//! Deleting conntrack entries over ctnetlink (`NETLINK_NETFILTER`).
//!
//! Why: a UDP client that kept sending to a host port before the port was
//! mapped has a conntrack entry that never saw the DNAT, and its packets
//! keep bypassing the new mapping until the entry times out (plugins#123).
//! portmap removes those entries on ADD, as the reference does through
//! vishvananda/netlink: dump the family's table, match in user space,
//! delete each match by its original tuple.

use netlink_packet_core::{NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::protocols::NETLINK_NETFILTER;

use super::nft_wire::{attrs_exact, Request};
use super::transport::Transport;
use super::Result;

// ctnetlink message types and attributes (linux/netfilter/nfnetlink_conntrack.h;
// not in libc).
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;

/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = libc::IPPROTO_UDP as u8;

/// The nfnetlink message type of ctnetlink message `msg`.
const fn ct_type(msg: u16) -> u16 {
    ((libc::NFNL_SUBSYS_CTNETLINK as u16) << 8) | msg
}

/// One flow to delete: its original tuple (raw, as dumped) and zone.
struct Flow {
    tuple: Vec<u8>,
    zone: Option<Vec<u8>>,
}

/// Deletes every conntrack entry of `family` (IPv4 when `v6` is false)
/// whose original direction has IP protocol `proto` and destination port
/// `port`, whatever its addresses (the reference's filter). Returns how
/// many were deleted; a flow that vanished meanwhile is not an error.
pub fn delete_by_dst_port(v6: bool, proto: u8, port: u16) -> Result<usize> {
    let mut nl = Transport::open(NETLINK_NETFILTER)?;
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    let header = [family, libc::NFNETLINK_V0 as u8, 0, 0];
    let mut get = Request::new(ct_type(IPCTNL_MSG_CT_GET), &header).finish(0, 0);
    let flows = nl.dump(
        "conntrack dump",
        &mut get,
        NLM_F_REQUEST | NLM_F_DUMP,
        |frame, out: &mut Vec<Flow>| {
            out.extend(matching_flow(
                frame.payload.get(4..).unwrap_or(&[]),
                proto,
                port,
            ));
            Ok(())
        },
    )?;
    let mut deleted = 0;
    for flow in &flows {
        let mut del = Request::new(ct_type(IPCTNL_MSG_CT_DELETE), &header);
        del.attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &flow.tuple);
        if let Some(zone) = &flow.zone {
            del.attr(CTA_ZONE, zone);
        }
        let mut msg = del.finish(0, 0);
        match nl.request(
            "conntrack delete",
            &mut msg,
            NLM_F_REQUEST | NLM_F_ACK,
            |_| Ok(()),
        ) {
            Ok(()) => deleted += 1,
            // The flow expired or someone else deleted it meanwhile.
            Err(e) if e.is(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// The flow in a `IPCTNL_MSG_CT_NEW` payload (after `nfgenmsg`), if its
/// original tuple has protocol `proto` and destination port `port`.
fn matching_flow(attrs: &[u8], proto: u8, port: u16) -> Option<Flow> {
    let mut tuple = None;
    let mut zone = None;
    for (kind, value) in attrs_exact(attrs)? {
        match kind {
            CTA_TUPLE_ORIG => tuple = Some(value),
            CTA_ZONE => zone = Some(value.to_vec()),
            _ => {}
        }
    }
    let tuple = tuple?;
    let (_, p) = attrs_exact(tuple)?
        .into_iter()
        .find(|(k, _)| *k == CTA_TUPLE_PROTO)?;
    let mut num = None;
    let mut dport = None;
    for (k, v) in attrs_exact(p)? {
        match k {
            CTA_PROTO_NUM => num = v.first().copied(),
            CTA_PROTO_DST_PORT => dport = v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])),
            _ => {}
        }
    }
    (num == Some(proto) && dport == Some(port)).then(|| Flow {
        tuple: tuple.to_vec(),
        zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = 4 + value.len();
        let mut out = Vec::new();
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    #[test]
    fn matches_protocol_and_destination_port() {
        let proto = [
            attr(CTA_PROTO_NUM, &[17]),
            attr(2, &5000u16.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &5053u16.to_be_bytes()),
        ]
        .concat();
        let tuple = attr(
            CTA_TUPLE_ORIG | NLA_F_NESTED,
            &attr(CTA_TUPLE_PROTO | NLA_F_NESTED, &proto),
        );
        let flow = matching_flow(&tuple, 17, 5053).expect("matches");
        assert!(flow.zone.is_none());
        assert!(
            matching_flow(&tuple, 17, 5000).is_none(),
            "source port is not the filter"
        );
        assert!(matching_flow(&tuple, 6, 5053).is_none());
        assert!(matching_flow(&[], 17, 5053).is_none());
    }
}
