//! A small synchronous rtnetlink client: links (`ip link`, `bridge vlan`),
//! addresses (`ip addr`) and routes (`ip route`); plus nf_tables existence
//! probes (`nftables.rs`), one-transaction rule writes (`nft_rules.rs`) and
//! rule dumps that find jumps by their verdict (`nft_dump.rs`).
//!
//! Why this shape (design.md G4–G6):
//! - The socket is opened on a thread that entered the target namespace
//!   ([`Netlink::open_in`]); a netlink socket stays bound to the namespace it
//!   was created in, so it can then be used from any thread.
//! - Requests are plain blocking `send`/`recv` on one socket, one request in
//!   flight at a time. rtnetlink's async connection needs a reactor thread
//!   (async-io) and a cross-thread wake-up per reply; for a one-shot plugin
//!   that is pure overhead (and binary size). Nothing async is involved.
//! - Messages are encoded and decoded by hand (`wire.rs` plus one module per
//!   object): only a dozen request shapes and a few reply attributes are
//!   needed, and a general rtnetlink codec was a third of the binary.
//! - Kernel errors are classified once here (`ENODEV` → `Ok(None)` for
//!   lookups, `EEXIST` → "already there" where that is what the caller wants),
//!   so callers never compare strings.

mod addr;
mod link;
mod nft_dump;
mod nft_rules;
mod nftables;
mod route;
mod wire;

use std::io;

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

use crate::netns::{NetNs, NetnsError};

pub use addr::Address;
pub use link::{format_mac, parse_mac, BridgeVlan, InfoKind, Link, OperState, VethSpec};
pub use nft_dump::{nft_table_rules, NftRuleRef};
pub use nft_rules::{CmpOp, NftBatch, NftExpr};
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

impl Netlink {
    /// Opens a connection in the calling thread's namespace.
    pub fn open() -> Result<Netlink> {
        let sock = open_socket(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Opens a connection inside `ns` (socket created on a thread that
    /// entered `ns`; the caller's thread is not moved).
    pub fn open_in(ns: &NetNs) -> Result<Netlink> {
        ns.run(Netlink::open)?
    }

    /// Sends one request with `flags` and hands each reply message of this
    /// request (type, payload after the `nlmsghdr`) to `on_reply`, until the
    /// kernel's ACK (`NLMSG_ERROR` with code 0) or, for dumps, `NLMSG_DONE`.
    /// A netlink error reply becomes [`NetlinkError::Kernel`]; `on_reply`
    /// returning `None` (a reply it cannot decode) a protocol error.
    fn request(
        &mut self,
        op: &str,
        req: wire::Request,
        flags: u16,
        mut on_reply: impl FnMut(u16, &[u8]) -> Option<()>,
    ) -> Result<()> {
        let protocol = |detail: String| NetlinkError::Protocol {
            op: op.to_string(),
            detail,
        };
        let kernel = |code: i32| NetlinkError::Kernel {
            op: op.to_string(),
            source: io::Error::from_raw_os_error(code.wrapping_neg()),
        };
        self.seq = self.seq.wrapping_add(1);
        let buf = req.finish(flags, self.seq);
        retry_eintr(|| self.sock.send(&buf, 0)).map_err(|e| protocol(e.to_string()))?;
        let mut data = Vec::new();
        loop {
            retry_eintr(|| recv_datagram(&self.sock, &mut data))
                .map_err(|e| protocol(e.to_string()))?;
            for msg in wire::messages(&data) {
                let msg =
                    msg.map_err(|len| protocol(format!("malformed reply (message length {len})")))?;
                if msg.seq != self.seq {
                    continue; // a late reply to an earlier request
                }
                match msg.msg_type {
                    wire::NLMSG_ERROR => {
                        // `struct nlmsgerr`: the errno, negated, then the request.
                        let code = wire::read_i32(msg.payload, 0)
                            .ok_or_else(|| protocol("truncated error reply".into()))?;
                        return if code == 0 { Ok(()) } else { Err(kernel(code)) };
                    }
                    wire::NLMSG_DONE => {
                        // A dump that failed midway reports the errno here.
                        return match wire::read_i32(msg.payload, 0) {
                            Some(code) if code < 0 => Err(kernel(code)),
                            _ => Ok(()),
                        };
                    }
                    wire::NLMSG_OVERRUN => return Err(protocol("reply overrun".into())),
                    t if t < NLMSG_MIN_TYPE => {} // NLMSG_NOOP
                    t => on_reply(t, msg.payload)
                        .ok_or_else(|| protocol("undecodable reply".into()))?,
                }
            }
        }
    }

    /// A request answered by an ACK only (or whose replies do not matter).
    fn ack(&mut self, op: &str, req: wire::Request, flags: u16) -> Result<()> {
        self.request(op, req, flags, |_, _| Some(()))
    }
}

/// Message types below this are netlink control messages.
const NLMSG_MIN_TYPE: u16 = 0x10;

/// A netlink socket of `protocol` in the calling thread's namespace, bound
/// to a kernel-chosen port and connected to the kernel.
pub(crate) fn open_socket(protocol: isize) -> io::Result<Socket> {
    let mut sock = Socket::new(protocol)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    Ok(sock)
}

/// Whether [`NfSocket`]s are kept open until exit (see [`keep_netfilter_sockets`]).
static KEEP_NF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Netfilter sockets kept open by [`NfSocket`]'s drop.
static KEPT_NF: std::sync::Mutex<Vec<std::os::fd::OwnedFd>> = std::sync::Mutex::new(Vec::new());

/// Makes this process keep its `NETLINK_NETFILTER` sockets open instead of
/// closing them; [`take_netfilter_sockets`] hands them out.
///
/// Why: releasing *any* netfilter socket makes the kernel flush nf_tables'
/// pending destroy work (`nft_rcv_nl_event`), which starts with a full RCU
/// grace period (≈ 10 ms here) whenever a transaction recently deleted
/// rules or chains — e.g. our own masquerade teardown. A plugin that wants
/// to return before that wait keeps its sockets and passes them to a
/// process that outlives it (the bridge DEL's detached helper). Only for
/// short-lived plugin processes: a long-running one would collect sockets.
pub fn keep_netfilter_sockets() {
    KEEP_NF.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The netfilter sockets kept since [`keep_netfilter_sockets`]; the caller
/// owns them now (dropping them closes them, with the wait above).
pub fn take_netfilter_sockets() -> Vec<std::os::fd::OwnedFd> {
    KEPT_NF
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// A `NETLINK_NETFILTER` socket that is kept open on drop when the process
/// asked for it ([`keep_netfilter_sockets`]).
pub(crate) struct NfSocket(Option<Socket>);

impl NfSocket {
    /// Opens one in the calling thread's namespace (as [`open_socket`]).
    pub(crate) fn open() -> io::Result<NfSocket> {
        open_socket(netlink_sys::protocols::NETLINK_NETFILTER).map(|s| NfSocket(Some(s)))
    }
}

impl std::ops::Deref for NfSocket {
    type Target = Socket;
    fn deref(&self) -> &Socket {
        // Only `drop` takes the socket out.
        self.0.as_ref().expect("netfilter socket used after drop")
    }
}

impl Drop for NfSocket {
    fn drop(&mut self) {
        let Some(sock) = self.0.take() else { return };
        if KEEP_NF.load(std::sync::atomic::Ordering::SeqCst) {
            use std::os::fd::{FromRawFd, IntoRawFd};
            // SAFETY: the descriptor comes straight from the socket, whose
            // ownership `into_raw_fd` gives up.
            let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(sock.into_raw_fd()) };
            if let Ok(mut kept) = KEPT_NF.lock() {
                kept.push(fd);
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
const ACK: u16 = wire::NLM_F_REQUEST | wire::NLM_F_ACK;
/// Flags for a dump.
const DUMP: u16 = wire::NLM_F_REQUEST | wire::NLM_F_DUMP;
/// Flags for "create, fail if it exists".
const CREATE_EXCL: u16 = ACK | wire::NLM_F_CREATE | wire::NLM_F_EXCL;
/// Flags for "create or add next to an existing one" (`RouteAddEcmp`).
const CREATE: u16 = ACK | wire::NLM_F_CREATE;
