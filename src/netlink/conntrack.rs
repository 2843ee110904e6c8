//! Deleting conntrack entries over ctnetlink (`NETLINK_NETFILTER`).
//!
//! Why: a UDP client that kept sending to a host port before the port was
//! mapped has a conntrack entry that never saw the DNAT, and its packets
//! keep bypassing the new mapping until the entry times out (plugins#123).
//! portmap removes those entries on ADD, as the reference does through
//! vishvananda/netlink: dump the family's table, match in user space,
//! delete each match by its original tuple.

use std::io;

use netlink_sys::protocols::NETLINK_NETFILTER;

use super::wire::{self, Request};
use super::{open_socket, recv_datagram, retry_eintr, NetlinkError, Result};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
/// `NLA_F_NESTED`, set on nested attributes we send.
const NLA_F_NESTED: u16 = 0x8000;

/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// One flow to delete: its original tuple (raw, as dumped) and zone.
struct Flow {
    tuple: Vec<u8>,
    zone: Option<Vec<u8>>,
}

fn proto_error(op: &str, detail: impl Into<String>) -> NetlinkError {
    NetlinkError::Protocol {
        op: op.to_string(),
        detail: detail.into(),
    }
}

/// Deletes every conntrack entry of `family` (IPv4 when `v6` is false)
/// whose original direction has IP protocol `proto` and destination port
/// `port`, whatever its addresses (the reference's filter). Returns how
/// many were deleted; a flow that vanished meanwhile is not an error.
pub fn delete_by_dst_port(v6: bool, proto: u8, port: u16) -> Result<usize> {
    let op = "conntrack dump";
    let sock = open_socket(NETLINK_NETFILTER).map_err(NetlinkError::Socket)?;
    let family: u8 = if v6 { 10 } else { 2 };
    let header = [family, 0, 0, 0];
    let get = Request::new((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, &header);
    let buf = get.finish(wire::NLM_F_REQUEST | wire::NLM_F_DUMP, 1);
    retry_eintr(|| sock.send(&buf, 0)).map_err(|e| proto_error(op, e.to_string()))?;
    let mut flows = Vec::new();
    let mut data = Vec::new();
    'dump: loop {
        retry_eintr(|| recv_datagram(&sock, &mut data))
            .map_err(|e| proto_error(op, e.to_string()))?;
        for msg in wire::messages(&data) {
            let msg = msg.map_err(|len| proto_error(op, format!("malformed reply ({len})")))?;
            match msg.msg_type {
                wire::NLMSG_DONE => break 'dump,
                wire::NLMSG_ERROR => {
                    let code = wire::read_i32(msg.payload, 0).unwrap_or(0);
                    if code == 0 {
                        break 'dump;
                    }
                    return Err(NetlinkError::Kernel {
                        op: op.to_string(),
                        source: io::Error::from_raw_os_error(code.wrapping_neg()),
                    });
                }
                _ => {
                    if let Some(flow) =
                        matching_flow(msg.payload.get(4..).unwrap_or(&[]), proto, port)
                    {
                        flows.push(flow);
                    }
                }
            }
        }
    }
    let mut deleted = 0;
    for (seq, flow) in (2u32..).zip(&flows) {
        let mut del = Request::new((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, &header);
        del.attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &flow.tuple);
        if let Some(zone) = &flow.zone {
            del.attr(CTA_ZONE, zone);
        }
        let buf = del.finish(wire::NLM_F_REQUEST | wire::NLM_F_ACK, seq);
        retry_eintr(|| sock.send(&buf, 0))
            .map_err(|e| proto_error("conntrack delete", e.to_string()))?;
        retry_eintr(|| recv_datagram(&sock, &mut data))
            .map_err(|e| proto_error("conntrack delete", e.to_string()))?;
        // ENOENT: the flow expired or someone else deleted it meanwhile.
        let ok = wire::messages(&data)
            .filter_map(|m| m.ok())
            .any(|m| m.msg_type == wire::NLMSG_ERROR && wire::read_i32(m.payload, 0) == Some(0));
        deleted += usize::from(ok);
    }
    Ok(deleted)
}

/// The flow in a `IPCTNL_MSG_CT_NEW` payload (after `nfgenmsg`), if its
/// original tuple has protocol `proto` and destination port `port`.
fn matching_flow(attrs: &[u8], proto: u8, port: u16) -> Option<Flow> {
    let mut tuple = None;
    let mut zone = None;
    for (kind, value) in wire::attrs(attrs) {
        match kind {
            CTA_TUPLE_ORIG => tuple = Some(value),
            CTA_ZONE => zone = Some(value.to_vec()),
            _ => {}
        }
    }
    let tuple = tuple?;
    let (_, p) = wire::attrs(tuple).find(|(k, _)| *k == CTA_TUPLE_PROTO)?;
    let mut num = None;
    let mut dport = None;
    for (k, v) in wire::attrs(p) {
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
