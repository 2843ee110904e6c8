//! A small synchronous rtnetlink client: links (`ip link`, `bridge vlan`),
//! addresses (`ip addr`) and routes (`ip route`).
//!
//! Why this shape (design.md G4–G6):
//! - The socket is opened on a thread that entered the target namespace
//!   ([`Netlink::open_in`]); a netlink socket stays bound to the namespace it
//!   was created in, so it can then be used from any thread.
//! - rtnetlink is async; plugins are short one-shot processes, so each call
//!   drives the connection and the request together with
//!   `block_on(select(conn, work))` instead of spawning an executor. Nothing
//!   async leaks out of this module.
//! - Kernel errors are classified once here (`ENODEV` → `Ok(None)` for
//!   lookups, `EEXIST` → "already there" where that is what the caller wants),
//!   so callers never compare strings.

mod addr;
mod link;
mod route;

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};

use futures::future::{select, Either};
use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::proto::Connection;
use rtnetlink::sys::SmolSocket;
use rtnetlink::Handle;

use crate::netns::{NetNs, NetnsError};

pub use addr::Address;
pub use link::{format_mac, parse_mac, BridgeVlan, Link, VethSpec};
pub use netlink_packet_route::link::{InfoKind, State as OperState};
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
    conn: Pin<Box<Connection<RouteNetlinkMessage, SmolSocket>>>,
    handle: Handle,
}

impl Netlink {
    /// Opens a connection in the calling thread's namespace.
    pub fn open() -> Result<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection_with_socket::<SmolSocket>().map_err(NetlinkError::Socket)?;
        Ok(Netlink {
            conn: Box::pin(conn),
            handle,
        })
    }

    /// Opens a connection inside `ns` (socket created on a thread that
    /// entered `ns`; the caller's thread is not moved).
    pub fn open_in(ns: &NetNs) -> Result<Netlink> {
        ns.run(Netlink::open)?
    }

    /// Drives the connection until `work` completes.
    fn block_on<F: Future>(&mut self, op: &str, work: F) -> Result<F::Output> {
        let work = pin!(work);
        match futures::executor::block_on(select(self.conn.as_mut(), work)) {
            Either::Right((out, _)) => Ok(out),
            Either::Left(((), _)) => Err(NetlinkError::Protocol {
                op: op.to_string(),
                detail: "netlink connection closed".into(),
            }),
        }
    }

    /// Sends one request with `flags` and collects the replies. A netlink
    /// error reply becomes [`NetlinkError::Kernel`].
    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let mut replies = self
            .handle
            .request(req)
            .map_err(|e| NetlinkError::Protocol {
                op: op.to_string(),
                detail: e.to_string(),
            })?;
        let collect = async move {
            let mut out = Vec::new();
            while let Some(reply) = replies.next().await {
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        if let Some(code) = e.code {
                            return Err(io::Error::from_raw_os_error(-code.get()));
                        }
                    }
                    _ => {}
                }
            }
            Ok(out)
        };
        self.block_on(op, collect)?
            .map_err(|source| NetlinkError::Kernel {
                op: op.to_string(),
                source,
            })
    }
}

/// Flags for a request that must be acknowledged.
const ACK: u16 = rtnetlink::packet_core::NLM_F_REQUEST | rtnetlink::packet_core::NLM_F_ACK;
/// Flags for a dump.
const DUMP: u16 = rtnetlink::packet_core::NLM_F_REQUEST | rtnetlink::packet_core::NLM_F_DUMP;
/// Flags for "create, fail if it exists".
const CREATE_EXCL: u16 =
    ACK | rtnetlink::packet_core::NLM_F_CREATE | rtnetlink::packet_core::NLM_F_EXCL;
/// Flags for "create or add next to an existing one" (`RouteAddEcmp`).
const CREATE: u16 = ACK | rtnetlink::packet_core::NLM_F_CREATE;
