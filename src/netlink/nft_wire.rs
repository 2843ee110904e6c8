//! Hand-written nfnetlink framing for the nf_tables messages: an
//! `nlmsghdr` + `nfgenmsg` + `nlattr`s builder, and attribute walking.
//!
//! Why hand-written: no crate encodes the nf_tables objects iptables-nft
//! writes (xtables-compat `match`/`target` expressions in particular), and
//! the messages must be byte-for-byte what iptables-nft sends (golden-bytes
//! tests in `nft_rules.rs`). The rtnetlink side uses netlink-packet-route.
//! Attribute values are whatever the caller passes (nf_tables' are
//! big-endian); every read is bounds-checked, so a short or garbled reply
//! yields `None` or ends the iteration, never a panic.

use netlink_packet_core::{NetlinkBuffer, NLA_F_NESTED, NLA_HEADER_SIZE, NLA_TYPE_MASK};

use super::transport::{align, NETLINK_HEADER_LEN};

/// `nfgenmsg` of an nf_tables object message: family, `NFNETLINK_V0`,
/// `res_id` 0.
pub(super) fn nfgenmsg(family: u8) -> [u8; 4] {
    [family, libc::NFNETLINK_V0 as u8, 0, 0]
}

/// The nfnetlink message type of nf_tables message `msg` (`NFT_MSG_*`).
pub(super) const fn nft_type(msg: libc::c_int) -> u16 {
    ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | msg as u16
}

/// One message being built. The `nlmsghdr` is reserved up front and filled
/// in by [`Request::finish`], once the length is known.
pub(super) struct Request {
    buf: Vec<u8>,
    msg_type: u16,
}

impl Request {
    /// A message of `msg_type` whose payload starts with the fixed `header`
    /// (`nfgenmsg`).
    pub(super) fn new(msg_type: u16, header: &[u8]) -> Request {
        let mut buf = Vec::with_capacity(128);
        buf.resize(NETLINK_HEADER_LEN, 0);
        buf.extend_from_slice(header);
        buf.resize(align(buf.len()), 0);
        Request { buf, msg_type }
    }

    /// Appends an attribute; the length excludes the trailing padding.
    pub(super) fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Request {
        let len = NLA_HEADER_SIZE + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// A NUL-terminated string attribute (`NLA_NUL_STRING`/`NLA_STRING`).
    pub(super) fn attr_str(&mut self, kind: u16, value: &str) -> &mut Request {
        let len = NLA_HEADER_SIZE + value.len() + 1;
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Opens a nested attribute with `NLA_F_NESTED` set, as libnftnl does;
    /// close it with [`Request::end_nest`]. The nest's length covers its
    /// padded children, as the kernel expects.
    pub(super) fn begin_nest(&mut self, kind: u16) -> Nest {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        Nest(start)
    }

    pub(super) fn end_nest(&mut self, nest: Nest) -> &mut Request {
        let len = (self.buf.len() - nest.0) as u16;
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The finished message with `flags` and `seq` (the transport restamps
    /// both for a single request). The port id stays 0: the kernel's.
    pub(super) fn finish(mut self, flags: u16, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        let mut header = NetlinkBuffer::new(&mut self.buf[..]);
        header.set_length(len);
        header.set_message_type(self.msg_type);
        header.set_flags(flags);
        header.set_sequence_number(seq);
        self.buf
    }
}

/// The message body after `nlmsghdr`: lets tests look at what is built.
#[cfg(test)]
pub(super) fn payload(req: Request) -> Vec<u8> {
    req.finish(0, 0)[NETLINK_HEADER_LEN..].to_vec()
}

/// Start offset of an open nested attribute.
#[must_use = "a nest must be closed with end_nest"]
pub(super) struct Nest(usize);

/// The `(type, value)` attributes of `data`, flag bits masked off, or
/// `None` unless they cover it exactly (up to the last one's padding): a
/// garbled nest must not hide an attribute.
pub(super) fn attrs_exact(data: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = usize::from(read_u16(data, at)?);
        if len < NLA_HEADER_SIZE {
            return None;
        }
        let kind = read_u16(data, at + 2)? & NLA_TYPE_MASK;
        out.push((kind, data.get(at + NLA_HEADER_SIZE..at + len)?));
        at += align(len);
    }
    Some(out)
}

pub(super) fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

/// A string attribute: up to the first NUL.
pub(super) fn value_str(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_padding_and_lengths() {
        let mut req = Request::new(16, &[7, 0, 0, 0]);
        req.attr_str(3, "br0")
            .attr(9, &[1])
            .attr(4, &1500u32.to_be_bytes());
        let bytes = req.finish(libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16, 42);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &44u32.to_ne_bytes()[..], &16u16.to_ne_bytes(), &5u16.to_ne_bytes(),
            &42u32.to_ne_bytes(), &0u32.to_ne_bytes(),
            &[7, 0, 0, 0],
            &8u16.to_ne_bytes(), &3u16.to_ne_bytes(), b"br0\0",
            &5u16.to_ne_bytes(), &9u16.to_ne_bytes(), &[1, 0, 0, 0],
            &8u16.to_ne_bytes(), &4u16.to_ne_bytes(), &1500u32.to_be_bytes(),
        ].concat();
        assert_eq!(bytes, want);
    }

    #[test]
    fn nested_length_covers_padded_children() {
        let mut req = Request::new(16, &[]);
        let nest = req.begin_nest(18);
        req.attr_str(1, "veth");
        let inner = req.begin_nest(2);
        req.attr(7, &[1]);
        req.end_nest(inner);
        req.end_nest(nest);
        let bytes = req.finish(0, 1);
        // 4 (nest) + 12 ("veth\0" padded) + 4 (inner) + 8 (u8 padded)
        assert_eq!(read_u16(&bytes, 16), Some(28));
        assert_eq!(read_u16(&bytes, 18), Some(18 | NLA_F_NESTED));
        assert_eq!(read_u16(&bytes, 32), Some(12));
        let outer = attrs_exact(&bytes[16..]).expect("exact");
        assert_eq!(outer.len(), 1);
        assert_eq!(outer[0].0, 18, "flag masked");
        let inner = attrs_exact(outer[0].1).expect("exact");
        assert_eq!(inner.len(), 2);
        assert_eq!(value_str(inner[0].1), "veth");
        assert_eq!(attrs_exact(inner[1].1), Some(vec![(7, &[1u8][..])]));
    }

    #[test]
    fn odd_attributes() {
        assert_eq!(attrs_exact(&[4, 0, 1, 0]), Some(vec![(1, &[][..])]));
        assert_eq!(attrs_exact(&[3, 0, 1, 0]), None);
        assert_eq!(attrs_exact(&[8, 0, 1, 0, 1]), None);
        assert_eq!(attrs_exact(&[5, 0, 1, 0, 9]), Some(vec![(1, &[9u8][..])]));
        assert_eq!(attrs_exact(&[200, 0, 3, 0, 1]), None);
    }

    #[test]
    fn message_types() {
        assert_eq!(nft_type(libc::NFT_MSG_NEWRULE), 0x0a06);
        assert_eq!(nfgenmsg(libc::NFPROTO_IPV6 as u8), [10, 0, 0, 0]);
    }
}
