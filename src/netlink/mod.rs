//! A small synchronous rtnetlink client: links (`ip link`, `bridge vlan`),
//! addresses (`ip addr`) and routes (`ip route`).
//!
//! Why this shape (design.md G4–G6):
//! - The socket is opened on a thread that entered the target namespace
//!   ([`Netlink::open_in`]); a netlink socket stays bound to the namespace it
//!   was created in, so it can then be used from any thread.
//! - Requests are plain blocking `send`/`recv` on one socket, one request in
//!   flight at a time. rtnetlink's async connection needs a reactor thread
//!   (async-io) and a cross-thread wake-up per reply; for a one-shot plugin
//!   that is pure overhead (and binary size). Only the message types of
//!   `netlink-packet-route` are used. Nothing async is involved.
//! - Kernel errors are classified once here (`ENODEV` → `Ok(None)` for
//!   lookups, `EEXIST` → "already there" where that is what the caller wants),
//!   so callers never compare strings.

mod addr;
mod link;
mod nftables;
mod route;

use std::io;

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

use crate::netns::{NetNs, NetnsError};

pub use addr::Address;
pub use link::{format_mac, parse_mac, BridgeVlan, Link, VethSpec};
pub use netlink_packet_route::link::{InfoKind, State as OperState};
pub use nftables::{nf_exists, NfFamily};
pub use route::{Route, RouteSpec};

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
    sock: Socket,
    /// Sequence number of the last request; replies are matched on it.
    seq: u32,
}

/// Size of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;

impl Netlink {
    /// Opens a connection in the calling thread's namespace.
    pub fn open() -> Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Opens a connection inside `ns` (socket created on a thread that
    /// entered `ns`; the caller's thread is not moved).
    pub fn open_in(ns: &NetNs) -> Result<Netlink> {
        ns.run(Netlink::open)?
    }

    /// Sends one request with `flags` and collects the replies until the
    /// kernel's ACK (`NLMSG_ERROR` with code 0) or, for dumps, `NLMSG_DONE`.
    /// A netlink error reply becomes [`NetlinkError::Kernel`].
    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let io_err = |e: io::Error| NetlinkError::Protocol {
            op: op.to_string(),
            detail: e.to_string(),
        };
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        retry_eintr(|| self.sock.send(&buf, 0)).map_err(io_err)?;
        let mut out = Vec::new();
        let mut data = Vec::new();
        loop {
            retry_eintr(|| recv_datagram(&self.sock, &mut data)).map_err(io_err)?;
            let mut off = 0;
            while data.len() - off >= HEADER_LEN {
                let len = NetlinkBuffer::new(&data[off..]).length() as usize;
                if len < HEADER_LEN || len > data.len() - off {
                    return Err(NetlinkError::Protocol {
                        op: op.to_string(),
                        detail: format!("malformed reply (message length {len})"),
                    });
                }
                let chunk = &data[off..off + len];
                off += (len + 3) & !3;
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(chunk).map_err(|e| {
                        NetlinkError::Protocol {
                            op: op.to_string(),
                            detail: format!("undecodable reply: {e}"),
                        }
                    })?;
                if reply.header.sequence_number != self.seq {
                    continue; // a late reply to an earlier request
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(NetlinkError::Kernel {
                                op: op.to_string(),
                                source: io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(d) if d.code < 0 => {
                        return Err(NetlinkError::Kernel {
                            op: op.to_string(),
                            source: io::Error::from_raw_os_error(-d.code),
                        })
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Overrun(_) => {
                        return Err(NetlinkError::Protocol {
                            op: op.to_string(),
                            detail: "reply overrun".into(),
                        })
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Receive buffer size. The kernel builds netlink replies of at most 32 KiB
/// for a reader whose buffer is at least that large, so one `recv` always
/// gets a whole datagram. (netlink-sys's `recv_from_full` peeks first to
/// size its buffer: two syscalls per reply.)
const RECV_BUFFER: usize = 64 * 1024;

/// Receives one datagram into `buf` (replacing its contents).
pub(crate) fn recv_datagram(sock: &Socket, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    buf.reserve(RECV_BUFFER);
    // With MSG_TRUNC the result is the datagram's real length.
    let len = sock.recv(buf, nix::libc::MSG_TRUNC)?;
    if len > buf.len() {
        return Err(io::Error::other(format!(
            "netlink reply of {len} bytes exceeds the {RECV_BUFFER}-byte buffer"
        )));
    }
    Ok(())
}

/// Retries a blocking socket call interrupted by a signal.
fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Flags for a request that must be acknowledged.
const ACK: u16 = netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_ACK;
/// Flags for a dump.
const DUMP: u16 = netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_DUMP;
/// Flags for "create, fail if it exists".
const CREATE_EXCL: u16 = ACK | netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL;
/// Flags for "create or add next to an existing one" (`RouteAddEcmp`).
const CREATE: u16 = ACK | netlink_packet_core::NLM_F_CREATE;
