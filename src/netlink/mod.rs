//! A small synchronous rtnetlink client: links (`ip link`, `bridge vlan`),
//! addresses (`ip addr`) and routes (`ip route`); plus nf_tables existence
//! probes (`nftables.rs`), one-transaction rule writes (`nft_rules.rs`) and
//! rule dumps that find jumps by their verdict (`nft_dump.rs`).
//!
//! Why this shape (docs/architecture.md, "Principles"):
//! - The socket is opened on a thread that entered the target namespace
//!   ([`Netlink::open_in`]); a netlink socket stays bound to the namespace it
//!   was created in, so it can then be used from any thread.
//! - Every request, rtnetlink or nfnetlink, goes over one blocking
//!   transport (`transport.rs`, on netlink-sys): sequence numbers, ACKs,
//!   multi-part dumps, `EINTR` and dumps interrupted by a concurrent change
//!   (`NLM_F_DUMP_INTR`, restarted a bounded number of times) are handled
//!   there once. rtnetlink's async connection needs a reactor thread and a
//!   cross-thread wake-up per reply; for a one-shot plugin that is pure
//!   overhead. Nothing async is involved.
//! - rtnetlink messages are netlink-packet-route's typed messages
//!   (`LinkMessage`, `AddressMessage`, `RouteMessage`): the kernel ABI's
//!   numbers and layouts come from the crate, not retyped here. Replies are
//!   decoded with the one message type's parser (not the whole
//!   `RouteNetlinkMessage` dispatch), which keeps the parsers of objects we
//!   never read (tc, neighbours, rules) out of the binaries. Link replies
//!   go further: only the attributes the plugins read are decoded, each
//!   with the crate's parser of that value (`link.rs` `parse_link`), as
//!   `LinkAttribute`'s parser links the data parsers of every link kind.
//! - Requests are sent the same way: `encode` takes the `RTM_*` type (from
//!   `libc`) and the one typed body, not a `RouteNetlinkMessage`, whose
//!   `emit` is one match over every rtnetlink object and would link all of
//!   their encoders. The code a call runs is its peak RSS: a page fault on
//!   the static binary maps the kernel's whole fault-around window around
//!   it (docs/benchmarks.md, F15, F19).
//! - nf_tables messages stay hand-written (`nft_wire.rs` and the `nft_*`
//!   modules): no crate encodes the xtables-compat expressions that
//!   iptables-nft writes, and the rules must be byte-for-byte what
//!   iptables-nft sends (golden-bytes tests). Their constants come from
//!   `libc` where it has them.
//! - Kernel errors are classified once here (`ENODEV` → `Ok(None)` for
//!   lookups, `EEXIST` → "already there" where that is what the caller wants),
//!   so callers never compare strings.

mod addr;
pub mod conntrack;
mod link;
mod nft_dump;
mod nft_rules;
mod nft_wire;
mod nftables;
mod route;
#[cfg(test)]
mod test_bytes;
mod transport;

use std::io;

use netlink_packet_core::{
    Emitable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_sys::protocols::NETLINK_ROUTE;
use nix::errno::Errno;

use crate::netns::{NetNs, NetnsError};

pub use addr::Address;
pub use link::{format_mac, parse_mac, BridgeVlan, Link, VethSpec};
/// `IFLA_INFO_KIND` (bridge, veth, ...), as netlink-packet-route names it.
pub use netlink_packet_route::link::InfoKind;
/// `IFLA_OPERSTATE` (RFC 2863 `IF_OPER_*`). The Debug names are what the
/// bridge plugin lowercases into its "port in error state" message.
pub use netlink_packet_route::link::State as OperState;
pub use nft_dump::{nft_table_rules, NftRuleRef};
pub use nft_rules::{CmpOp, NftBatch, NftExpr};
pub use nftables::{nf_exists, NfFamily};
pub use route::{Route, RouteSpec};
pub use transport::{keep_netfilter_sockets, take_netfilter_sockets};

/// Errors from the netlink layer, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Creating the netlink socket failed.
    #[error("failed to open netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// Entering the namespace to open the socket failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The kernel answered with an errno.
    #[error("{op}: {source}")]
    Kernel {
        /// What we asked for, e.g. `add veth "veth1234abcd"`.
        op: String,
        /// The errno as an OS error.
        #[source]
        source: io::Error,
    },
    /// The connection broke or returned something unexpected.
    #[error("{op}: {detail}")]
    Protocol {
        /// What we asked for.
        op: String,
        /// What went wrong.
        detail: String,
    },
}

impl NetlinkError {
    /// The kernel errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    /// True when the kernel refused with `errno`.
    pub fn is(&self, errno: Errno) -> bool {
        self.errno() == Some(errno)
    }
}

/// Kernel refusals are internal errors (999), like every non-typed error of
/// the reference plugins; `EAGAIN`/`EBUSY` mean "try again later" (11).
impl From<NetlinkError> for crate::error::CniError {
    fn from(e: NetlinkError) -> Self {
        use crate::error::codes;
        let code = match e.errno() {
            Some(Errno::EAGAIN) | Some(Errno::EBUSY) => codes::TRY_AGAIN_LATER,
            _ => match e {
                NetlinkError::Netns(inner) => return inner.into(),
                _ => codes::INTERNAL,
            },
        };
        crate::error::CniError::new(code, e.to_string())
    }
}

/// Result alias of this module.
pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

/// An rtnetlink connection bound to one network namespace.
pub struct Netlink {
    transport: transport::Transport,
}

impl Netlink {
    /// Opens a connection in the calling thread's namespace.
    pub fn open() -> Result<Netlink> {
        Ok(Netlink {
            transport: transport::Transport::open(NETLINK_ROUTE)?,
        })
    }

    /// Opens a connection inside `ns` (socket created on a thread that
    /// entered `ns`; the caller's thread is not moved).
    pub fn open_in(ns: &NetNs) -> Result<Netlink> {
        ns.run(Netlink::open)?
    }

    /// Sends `msg` with `flags` and hands each reply message (type,
    /// payload after the `nlmsghdr`) to `on_reply` until the kernel's ACK.
    /// A netlink error reply becomes [`NetlinkError::Kernel`]; `on_reply`'s
    /// error (a reply it cannot decode) a protocol error.
    fn request(
        &mut self,
        op: &str,
        message_type: u16,
        body: &dyn Emitable,
        flags: u16,
        mut on_reply: impl FnMut(u16, &[u8]) -> Result<(), String>,
    ) -> Result<()> {
        self.transport
            .request(op, &mut encode(message_type, body), flags, |frame| {
                on_reply(frame.header.message_type, frame.payload)
            })
    }

    /// A request answered by an ACK only (or whose replies do not matter).
    fn ack(&mut self, op: &str, message_type: u16, body: &dyn Emitable, flags: u16) -> Result<()> {
        self.request(op, message_type, body, flags, |_, _| Ok(()))
    }

    /// A dump: `decode` turns each reply message (type, payload) into
    /// items. Restarted when the kernel flags it inconsistent.
    fn dump<T>(
        &mut self,
        op: &str,
        message_type: u16,
        body: &dyn Emitable,
        mut decode: impl FnMut(u16, &[u8], &mut Vec<T>) -> Result<(), String>,
    ) -> Result<Vec<T>> {
        self.transport
            .dump(op, &mut encode(message_type, body), DUMP, |frame, out| {
                decode(frame.header.message_type, frame.payload, out)
            })
    }
}

/// One rtnetlink request: its `RTM_*` message type and its body, one of
/// netlink-packet-route's typed messages (`LinkMessage`, `AddressMessage`,
/// `RouteMessage`). Stands in for `RouteNetlinkMessage`, whose `emit` is
/// one match over every rtnetlink object (see the module doc).
struct RtRequest<'a> {
    message_type: u16,
    body: &'a dyn Emitable,
}

impl NetlinkSerializable for RtRequest<'_> {
    fn message_type(&self) -> u16 {
        self.message_type
    }

    fn buffer_len(&self) -> usize {
        self.body.buffer_len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        self.body.emit(buffer)
    }
}

/// One rtnetlink request (`RTM_*` type, typed body) as bytes, `nlmsghdr`
/// included (flags and sequence number are set by the transport).
fn encode(message_type: u16, body: &dyn Emitable) -> Vec<u8> {
    let msg = RtRequest { message_type, body };
    let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// A decoding failure of a reply, as the protocol error's detail.
fn undecodable(what: &str, e: netlink_packet_core::DecodeError) -> String {
    format!("undecodable {what}: {e}")
}

/// Flags for a request that must be acknowledged.
const ACK: u16 = NLM_F_REQUEST | NLM_F_ACK;
/// Flags for a dump.
const DUMP: u16 = NLM_F_REQUEST | NLM_F_DUMP;
/// Flags for "create, fail if it exists".
const CREATE_EXCL: u16 = ACK | NLM_F_CREATE | NLM_F_EXCL;
/// Flags for "create or add next to an existing one" (`RouteAddEcmp`).
const CREATE: u16 = ACK | NLM_F_CREATE;

#[cfg(test)]
mod tests {
    use netlink_packet_route::address::AddressMessage;
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use netlink_packet_route::route::RouteMessage;
    use netlink_packet_route::RouteNetlinkMessage;

    use super::*;

    /// What `encode` replaced: the crate's whole-protocol message.
    fn crate_encode(msg: RouteNetlinkMessage) -> Vec<u8> {
        let mut msg =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    /// `encode` of (`RTM_*`, typed body) is byte for byte the crate's
    /// `RouteNetlinkMessage` encoding, type and length included.
    #[test]
    fn encode_is_the_crate_encoding() {
        let mut link = LinkMessage::default();
        link.header.index = 7;
        link.attributes = vec![LinkAttribute::IfName("cni0".into())];
        let mut addr = AddressMessage::default();
        addr.header.prefix_len = 24;
        let route = RouteMessage::default();
        let cases = [
            (
                libc::RTM_NEWLINK,
                &link as &dyn Emitable,
                RouteNetlinkMessage::NewLink(link.clone()),
            ),
            (
                libc::RTM_SETLINK,
                &link,
                RouteNetlinkMessage::SetLink(link.clone()),
            ),
            (
                libc::RTM_DELLINK,
                &link,
                RouteNetlinkMessage::DelLink(link.clone()),
            ),
            (
                libc::RTM_GETLINK,
                &link,
                RouteNetlinkMessage::GetLink(link.clone()),
            ),
            (
                libc::RTM_NEWADDR,
                &addr,
                RouteNetlinkMessage::NewAddress(addr.clone()),
            ),
            (
                libc::RTM_DELADDR,
                &addr,
                RouteNetlinkMessage::DelAddress(addr.clone()),
            ),
            (
                libc::RTM_GETADDR,
                &addr,
                RouteNetlinkMessage::GetAddress(addr.clone()),
            ),
            (
                libc::RTM_NEWROUTE,
                &route,
                RouteNetlinkMessage::NewRoute(route.clone()),
            ),
            (
                libc::RTM_DELROUTE,
                &route,
                RouteNetlinkMessage::DelRoute(route.clone()),
            ),
            (
                libc::RTM_GETROUTE,
                &route,
                RouteNetlinkMessage::GetRoute(route.clone()),
            ),
        ];
        for (message_type, body, whole) in cases {
            assert_eq!(
                encode(message_type, body),
                crate_encode(whole),
                "type {message_type}"
            );
        }
    }
}
