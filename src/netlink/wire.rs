//! Netlink framing: building `nlmsghdr` + fixed header + `nlattr`s, and
//! walking them back out of a reply.
//!
//! Why hand-written: the plugins send a dozen request shapes and read a
//! handful of attributes; a general rtnetlink codec parses every attribute
//! of every link kind and was a third of the bridge binary. Everything here
//! is host byte order (none of the attributes used is `NLA_F_NET_BYTEORDER`)
//! and every read is bounds-checked: a short or garbled reply yields `None`
//! or ends the iteration, never a panic.

/// Size of `struct nlmsghdr`.
pub(super) const HEADER_LEN: usize = 16;
/// Size of `struct nlattr`.
const ATTR_HEADER_LEN: usize = 4;

/// `NLMSG_NOOP`..`NLMSG_OVERRUN`: control messages below `NLMSG_MIN_TYPE`.
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLMSG_OVERRUN: u16 = 4;

pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
pub(super) const NLM_F_EXCL: u16 = 0x200;
pub(super) const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLM_F_DUMP: u16 = 0x300;
/// Set on dump replies when the dumped objects changed during the dump.
pub(super) const NLM_F_DUMP_INTR: u16 = 0x10;

/// The flag bits of `nla_type`; the rest is the attribute type.
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);

/// Netlink aligns messages and attributes to 4 bytes.
const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// One request being built. The `nlmsghdr` is reserved up front and filled
/// in by [`Request::finish`], once the length is known.
pub(super) struct Request {
    buf: Vec<u8>,
    msg_type: u16,
}

impl Request {
    /// A message of `msg_type` whose payload starts with the fixed `header`
    /// (`ifinfomsg`, `ifaddrmsg`, `rtmsg`).
    pub(super) fn new(msg_type: u16, header: &[u8]) -> Request {
        let mut buf = Vec::with_capacity(128);
        buf.resize(HEADER_LEN, 0);
        buf.extend_from_slice(header);
        buf.resize(align(buf.len()), 0);
        Request { buf, msg_type }
    }

    /// Appends an attribute; the length excludes the trailing padding.
    pub(super) fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Request {
        let len = ATTR_HEADER_LEN + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub(super) fn attr_u8(&mut self, kind: u16, value: u8) -> &mut Request {
        self.attr(kind, &[value])
    }

    pub(super) fn attr_u16(&mut self, kind: u16, value: u16) -> &mut Request {
        self.attr(kind, &value.to_ne_bytes())
    }

    pub(super) fn attr_u32(&mut self, kind: u16, value: u32) -> &mut Request {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// A NUL-terminated string attribute (`NLA_NUL_STRING`/`NLA_STRING`).
    pub(super) fn attr_str(&mut self, kind: u16, value: &str) -> &mut Request {
        let len = ATTR_HEADER_LEN + value.len() + 1;
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Raw bytes inside the current nest (e.g. the peer's `ifinfomsg`).
    pub(super) fn raw(&mut self, bytes: &[u8]) -> &mut Request {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Opens a nested attribute; close it with [`Request::end_nest`]. The
    /// nest's length covers its padded children, as the kernel expects.
    pub(super) fn begin_nest(&mut self, kind: u16) -> Nest {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        Nest(start)
    }

    pub(super) fn end_nest(&mut self, nest: Nest) -> &mut Request {
        let len = (self.buf.len() - nest.0) as u16;
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The finished datagram. The port id stays 0: the kernel fills it in.
    pub(super) fn finish(mut self, flags: u16, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[4..6].copy_from_slice(&self.msg_type.to_ne_bytes());
        self.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// The message body after `nlmsghdr`, as a reply would carry it: lets the
/// decoders' unit tests parse what the encoders build.
#[cfg(test)]
pub(super) fn payload(req: Request) -> Vec<u8> {
    req.finish(0, 0)[HEADER_LEN..].to_vec()
}

/// Start offset of an open nested attribute.
#[must_use = "a nest must be closed with end_nest"]
pub(super) struct Nest(usize);

/// One message of a reply datagram.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Message<'a> {
    pub(super) msg_type: u16,
    /// `nlmsg_flags` (e.g. `NLM_F_MULTI`, `NLM_F_DUMP_INTR`).
    pub(super) flags: u16,
    pub(super) seq: u32,
    /// Everything after the `nlmsghdr`.
    pub(super) payload: &'a [u8],
}

/// Splits a datagram into messages. Yields `Err(len)` (the bad
/// `nlmsg_len`) once and stops when a header's length is malformed.
pub(super) fn messages(data: &[u8]) -> impl Iterator<Item = Result<Message<'_>, usize>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < HEADER_LEN {
            return None;
        }
        let len = read_u32(rest, 0)? as usize;
        if len < HEADER_LEN || len > rest.len() {
            rest = &[];
            return Some(Err(len));
        }
        let msg = Message {
            msg_type: read_u16(rest, 4)?,
            flags: read_u16(rest, 6)?,
            seq: read_u32(rest, 8)?,
            payload: rest.get(HEADER_LEN..len)?,
        };
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    })
}

/// Iterates `(type, value)` of the attributes in `data`, with the
/// `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER` bits masked off; stops at the
/// first malformed attribute.
pub(super) fn attrs(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let len = usize::from(read_u16(rest, 0)?);
        let kind = read_u16(rest, 2)? & NLA_TYPE_MASK;
        let value = rest.get(ATTR_HEADER_LEN..len)?;
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some((kind, value))
    })
}

pub(super) fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

pub(super) fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

pub(super) fn read_i32(data: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// A `u32` attribute value (exactly four bytes).
pub(super) fn value_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.try_into().ok()?))
}

/// A string attribute: up to the first NUL.
pub(super) fn value_str(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// An IPv4 or IPv6 address attribute, told apart by its length.
pub(super) fn value_ip(value: &[u8]) -> Option<std::net::IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(value) {
        return Some(v4.into());
    }
    <[u8; 16]>::try_from(value).ok().map(Into::into)
}

/// The bytes of an address attribute.
pub(super) fn ip_bytes(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_padding_and_lengths() {
        let mut req = Request::new(16, &[7, 0, 0, 0]);
        req.attr_str(3, "br0").attr_u8(9, 1).attr_u32(4, 1500);
        let bytes = req.finish(NLM_F_REQUEST | NLM_F_ACK, 42);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &44u32.to_ne_bytes()[..], &16u16.to_ne_bytes(), &5u16.to_ne_bytes(),
            &42u32.to_ne_bytes(), &0u32.to_ne_bytes(),
            &[7, 0, 0, 0],
            &8u16.to_ne_bytes(), &3u16.to_ne_bytes(), b"br0\0",
            &5u16.to_ne_bytes(), &9u16.to_ne_bytes(), &[1, 0, 0, 0],
            &8u16.to_ne_bytes(), &4u16.to_ne_bytes(), &1500u32.to_ne_bytes(),
        ].concat();
        assert_eq!(bytes, want);
    }

    #[test]
    fn nested_length_covers_padded_children() {
        let mut req = Request::new(16, &[]);
        let nest = req.begin_nest(18);
        req.attr_str(1, "veth");
        let inner = req.begin_nest(2);
        req.attr_u8(7, 1);
        req.end_nest(inner);
        req.end_nest(nest);
        let bytes = req.finish(0, 1);
        // 4 (nest) + 12 ("veth\0" padded) + 4 (inner) + 8 (u8 padded)
        assert_eq!(read_u16(&bytes, 16), Some(28));
        assert_eq!(read_u16(&bytes, 32), Some(12));
        let (kind, value) = attrs(&bytes[16..]).next().expect("one attribute");
        assert_eq!(kind, 18);
        let inner: Vec<_> = attrs(value).collect();
        assert_eq!(inner.len(), 2);
        assert_eq!(value_str(inner[0].1), "veth");
        assert_eq!(attrs(inner[1].1).next(), Some((7, &[1u8][..])));
    }

    #[test]
    fn nested_flag_is_masked() {
        let data: Vec<u8> = [
            &8u16.to_ne_bytes()[..],
            &(0x8000u16 | 26).to_ne_bytes(),
            &[1, 2, 3, 4],
        ]
        .concat();
        let mut it = attrs(&data);
        assert_eq!(it.next(), Some((26, &[1u8, 2, 3, 4][..])));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn truncated_input_never_panics() {
        let mut req = Request::new(16, &[0; 16]);
        req.attr_str(3, "eth0").attr_u32(4, 9000);
        let bytes = req.finish(0, 3);
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            for msg in messages(part).flatten() {
                for (_, v) in attrs(msg.payload.get(16..).unwrap_or(&[])) {
                    let _ = (value_u32(v), value_str(v), value_ip(v));
                }
            }
            for skip in 0..part.len() {
                attrs(&part[skip..]).for_each(drop);
            }
        }
        // An attribute claiming more than is there, or less than a header.
        let short = [200u8, 0, 3, 0, 1];
        assert_eq!(attrs(&short).count(), 0);
        let tiny = [2u8, 0, 3, 0];
        assert_eq!(attrs(&tiny).count(), 0);
    }

    #[test]
    fn malformed_message_length_is_reported() {
        let mut data = Request::new(16, &[]).finish(0, 1);
        data[0..4].copy_from_slice(&100u32.to_ne_bytes());
        let got: Vec<_> = messages(&data).collect();
        assert_eq!(got, vec![Err(100)]);
        data[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(messages(&data).collect::<Vec<_>>(), vec![Err(8)]);
    }

    #[test]
    fn two_messages_in_one_datagram() {
        let mut a = Request::new(16, &[1]).finish(0, 5);
        let b = Request::new(3, &[]).finish(0, 5);
        a.extend_from_slice(&b);
        let got: Vec<_> = messages(&a).map(|m| m.map(|m| m.msg_type)).collect();
        assert_eq!(got, vec![Ok(16), Ok(3)]);
    }
}
