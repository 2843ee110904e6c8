//! The one blocking netlink transport: every request of this crate —
//! rtnetlink (links, addresses, routes) and nfnetlink (nf_tables probes,
//! rule dumps, batches) — is sent and answered here.
//!
//! Why one module: sequence numbers, acknowledgements, multi-part dumps,
//! `EINTR`, and dumps interrupted by a concurrent change (`NLM_F_DUMP_INTR`)
//! are handled once, the same way for every protocol. Messages arrive here
//! already encoded (by netlink-packet-route, or by the hand-written nf_tables
//! encoder) and replies leave as frames (header + payload) for the caller to
//! decode; the transport itself knows only the `nlmsghdr` and the control
//! messages (`NLMSG_ERROR`, `NLMSG_DONE`, `NLMSG_OVERRUN`), read with
//! netlink-packet-core's buffers.
//!
//! Why blocking: one request in flight at a time on a socket bound to one
//! namespace. An async connection needs a reactor thread and a cross-thread
//! wake-up per reply; for a one-shot plugin that is pure overhead.

use std::io;

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NetlinkBuffer, NetlinkHeader, Parseable, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_OVERRUN, NLM_F_DUMP_INTR,
};
use netlink_sys::{Socket, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{NetlinkError, Result};

/// Message types below this are netlink control messages (`NLMSG_NOOP`...).
const NLMSG_MIN_TYPE: u16 = libc::NLMSG_MIN_TYPE as u16;

/// Receive buffer size. The kernel builds netlink replies of at most 32 KiB
/// for a reader whose buffer is at least that large, so one `recv` always
/// gets a whole datagram. (netlink-sys's `recv_from_full` peeks first to
/// size its buffer: two syscalls per reply.)
const RECV_BUFFER: usize = 64 * 1024;

/// How many times a dump that the dumped objects changed under is started
/// over: each interruption is someone else's change (e.g. parallel ADDs or
/// DELs), so a few tries succeed unless the system is churning.
pub(super) const DUMP_TRIES: usize = 4;

/// The socket side of the transport; a trait so that the tests can replay
/// recorded replies.
pub(super) trait Wire {
    /// Sends one datagram.
    fn send(&mut self, datagram: &[u8]) -> io::Result<()>;
    /// Receives one datagram into `buf` (replacing its contents). With
    /// `wait` false, `WouldBlock` when none is queued.
    fn recv(&mut self, buf: &mut Vec<u8>, wait: bool) -> io::Result<()>;
}

/// Whether netfilter sockets are kept open until exit (see
/// [`keep_netfilter_sockets`]).
static KEEP_NF: AtomicBool = AtomicBool::new(false);
/// Netfilter sockets kept open instead of closed.
static KEPT_NF: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// Makes this process keep its `NETLINK_NETFILTER` sockets open instead of
/// closing them; [`take_netfilter_sockets`] hands them out.
///
/// Why: releasing *any* netfilter socket makes the kernel flush nf_tables'
/// pending destroy work (`nft_rcv_nl_event`), which starts with a full RCU
/// grace period whenever a transaction recently deleted rules or chains —
/// e.g. our own masquerade teardown (docs/benchmarks.md, F13). A plugin
/// that wants to return before that wait keeps its sockets and passes them
/// to a process that outlives it (the bridge DEL's detached helper). Only
/// for short-lived plugin processes: a long-running one would collect them.
pub fn keep_netfilter_sockets() {
    KEEP_NF.store(true, Ordering::SeqCst);
}

/// The netfilter sockets kept since [`keep_netfilter_sockets`]; the caller
/// owns them now (dropping them closes them, with the wait above).
pub fn take_netfilter_sockets() -> Vec<OwnedFd> {
    KEPT_NF
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// The kernel side of a [`Transport`]: a netlink socket which, if it is a
/// netfilter one and the process asked for it, is kept open on drop.
pub(super) struct NlSocket {
    sock: Option<Socket>,
    netfilter: bool,
}

impl NlSocket {
    fn sock(&mut self) -> io::Result<&mut Socket> {
        self.sock
            .as_mut()
            .ok_or_else(|| io::Error::other("netlink socket used after drop"))
    }
}

impl Drop for NlSocket {
    fn drop(&mut self) {
        let Some(sock) = self.sock.take() else { return };
        if self.netfilter && KEEP_NF.load(Ordering::SeqCst) {
            // SAFETY: the descriptor comes straight from the socket, whose
            // ownership `into_raw_fd` gives up.
            let fd = unsafe { OwnedFd::from_raw_fd(sock.into_raw_fd()) };
            if let Ok(mut kept) = KEPT_NF.lock() {
                kept.push(fd);
            }
        }
    }
}

impl Wire for NlSocket {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        Socket::send(self.sock()?, datagram, 0).map(drop)
    }

    fn recv(&mut self, buf: &mut Vec<u8>, wait: bool) -> io::Result<()> {
        let sock = self.sock()?;
        buf.clear();
        buf.reserve(RECV_BUFFER);
        // With MSG_TRUNC the result is the datagram's real length.
        let flags = libc::MSG_TRUNC | if wait { 0 } else { libc::MSG_DONTWAIT };
        let len = Socket::recv(sock, buf, flags)?;
        if len > buf.len() {
            return Err(io::Error::other(format!(
                "netlink reply of {len} bytes exceeds the {RECV_BUFFER}-byte buffer"
            )));
        }
        Ok(())
    }
}

/// One reply message of the request being answered.
pub(super) struct Frame<'a> {
    /// Its `nlmsghdr`.
    pub(super) header: NetlinkHeader,
    /// Everything after the `nlmsghdr`.
    pub(super) payload: &'a [u8],
}

/// How a reply stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// `NLMSG_ERROR` with code 0.
    Ack,
    /// `NLMSG_DONE`; `interrupted` if any message of the dump carried
    /// `NLM_F_DUMP_INTR` (its objects may be inconsistent).
    Done { interrupted: bool },
}

/// A netlink connection of one protocol: a socket (or a replay) and the
/// sequence number of the last request.
pub(super) struct Transport<W = NlSocket> {
    wire: W,
    seq: u32,
    buf: Vec<u8>,
}

impl Transport<NlSocket> {
    /// A socket of `protocol` in the calling thread's namespace, bound to a
    /// kernel-chosen port and connected to the kernel.
    pub(super) fn open(protocol: isize) -> Result<Transport> {
        let open = || -> io::Result<Socket> {
            let mut sock = Socket::new(protocol)?;
            sock.bind_auto()?;
            sock.connect(&SocketAddr::new(0, 0))?;
            Ok(sock)
        };
        let sock = open().map_err(NetlinkError::Socket)?;
        Ok(Transport::new(NlSocket {
            sock: Some(sock),
            netfilter: protocol == netlink_sys::protocols::NETLINK_NETFILTER,
        }))
    }
}

impl<W: Wire> Transport<W> {
    pub(super) fn new(wire: W) -> Transport<W> {
        Transport {
            wire,
            seq: 0,
            buf: Vec::new(),
        }
    }

    /// The replay, for tests that look at what was sent.
    #[cfg(test)]
    pub(super) fn wire(&self) -> &W {
        &self.wire
    }

    /// Sends one request `msg` (a whole message, `nlmsghdr` first) with
    /// `flags` and hands each reply message to `on_reply`, until the ACK.
    /// An error reply becomes [`NetlinkError::Kernel`]; `on_reply`'s error
    /// (a reply it cannot decode) a protocol error.
    pub(super) fn request(
        &mut self,
        op: &str,
        msg: &mut [u8],
        flags: u16,
        on_reply: impl FnMut(Frame<'_>) -> Result<(), String>,
    ) -> Result<()> {
        let seq = self.send(op, msg, flags)?;
        self.receive(op, seq, on_reply).map(drop)
    }

    /// Sends dump request `msg` and decodes every reply message into a list
    /// with `decode`. A dump that ends flagged `NLM_F_DUMP_INTR` is thrown
    /// away and requested again, at most [`DUMP_TRIES`] times in all.
    pub(super) fn dump<T>(
        &mut self,
        op: &str,
        msg: &mut [u8],
        flags: u16,
        mut decode: impl FnMut(Frame<'_>, &mut Vec<T>) -> Result<(), String>,
    ) -> Result<Vec<T>> {
        for _ in 0..DUMP_TRIES {
            let seq = self.send(op, msg, flags)?;
            let mut out = Vec::new();
            match self.receive(op, seq, |frame| decode(frame, &mut out))? {
                End::Done { interrupted: true } => continue,
                End::Done { interrupted: false } | End::Ack => return Ok(out),
            }
        }
        Err(protocol(
            op,
            format!("the dumped objects changed during each of {DUMP_TRIES} dumps"),
        ))
    }

    /// Sends a prepared datagram of several messages (an nfnetlink batch,
    /// sequence numbers already set) and waits for the ACK of each message
    /// in `pending` (sequence number, description). The first error reply
    /// becomes [`NetlinkError::Kernel`] named after the message it answers
    /// (after `unknown` if none of `pending`, e.g. the commit itself).
    ///
    /// nfnetlink handles the whole batch inside `send`: every answer is
    /// already queued, so an empty queue means a missing ACK, not a wait.
    pub(super) fn batch(
        &mut self,
        unknown: &str,
        datagram: &[u8],
        pending: &[(u32, String)],
    ) -> Result<()> {
        let mut unacked: Vec<(u32, &str)> = pending.iter().map(|(s, w)| (*s, w.as_str())).collect();
        if let Some(last) = unacked.iter().map(|(s, _)| *s).max() {
            self.seq = self.seq.max(last);
        }
        retry_eintr(|| self.wire.send(datagram)).map_err(|e| protocol(unknown, e))?;
        while !unacked.is_empty() {
            retry_eintr(|| self.wire.recv(&mut self.buf, false)).map_err(|e| {
                let waiting: Vec<&str> = unacked.iter().map(|(_, w)| *w).collect();
                protocol(
                    unknown,
                    format!("{e} (waiting for: {})", waiting.join(", ")),
                )
            })?;
            acks(&self.buf, unknown, &mut unacked)?;
        }
        Ok(())
    }

    /// Stamps `msg` with a new sequence number and `flags` and sends it.
    fn send(&mut self, op: &str, msg: &mut [u8], flags: u16) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkBuffer::new_checked(&mut *msg)
            .map_err(|e| protocol(op, format!("bad request: {e}")))?;
        header.set_flags(flags);
        header.set_sequence_number(self.seq);
        retry_eintr(|| self.wire.send(msg)).map_err(|e| protocol(op, e))?;
        Ok(self.seq)
    }

    /// Reads replies to request `seq` until its ACK or `NLMSG_DONE`, handing
    /// the other messages to `on_reply`. Replies to earlier requests (a
    /// dump abandoned on an error) are skipped.
    fn receive(
        &mut self,
        op: &str,
        seq: u32,
        mut on_reply: impl FnMut(Frame<'_>) -> Result<(), String>,
    ) -> Result<End> {
        let mut interrupted = false;
        loop {
            retry_eintr(|| self.wire.recv(&mut self.buf, true)).map_err(|e| protocol(op, e))?;
            if self.buf.is_empty() {
                return Err(protocol(op, "connection closed before the answer"));
            }
            for frame in frames(&self.buf) {
                let frame = frame.map_err(|e| protocol(op, e))?;
                if frame.header.sequence_number != seq {
                    continue;
                }
                interrupted |= frame.header.flags & NLM_F_DUMP_INTR != 0;
                match frame.header.message_type {
                    NLMSG_ERROR => {
                        return match error_code(frame.payload).map_err(|e| protocol(op, e))? {
                            0 => Ok(End::Ack),
                            code => Err(kernel(op, code)),
                        };
                    }
                    NLMSG_DONE => {
                        // A dump that failed midway reports the errno here;
                        // the kernel may also send an empty NLMSG_DONE.
                        let code = match DoneBuffer::new_checked(frame.payload) {
                            Ok(done) => done.code(),
                            Err(_) => 0,
                        };
                        return if code < 0 {
                            Err(kernel(op, code))
                        } else {
                            Ok(End::Done { interrupted })
                        };
                    }
                    NLMSG_OVERRUN => return Err(protocol(op, "reply overrun")),
                    t if t < NLMSG_MIN_TYPE => {} // NLMSG_NOOP
                    _ => on_reply(frame).map_err(|e| protocol(op, e))?,
                }
            }
        }
    }
}

/// The messages of one datagram; an `Err` (and the end) at the first
/// malformed header.
pub(super) fn frames(data: &[u8]) -> impl Iterator<Item = Result<Frame<'_>, String>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let buf = match NetlinkBuffer::new_checked(rest) {
            Ok(buf) => buf,
            Err(e) => {
                rest = &[];
                return Some(Err(format!("malformed reply: {e}")));
            }
        };
        let len = buf.length() as usize;
        // Cannot fail: the header's fields were checked by `new_checked`.
        let header = NetlinkHeader::parse(&buf).unwrap_or_default();
        let payload = &rest[NETLINK_HEADER_LEN..len];
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some(Ok(Frame { header, payload }))
    })
}

/// Size of `struct nlmsghdr`.
pub(super) const NETLINK_HEADER_LEN: usize = 16;

/// Netlink aligns messages and attributes to 4 bytes.
pub(super) const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The (negative) errno of an `NLMSG_ERROR` payload; 0 for an ACK.
fn error_code(payload: &[u8]) -> Result<i32, String> {
    let buf = ErrorBuffer::new_checked(payload).map_err(|e| format!("bad error reply: {e}"))?;
    Ok(buf.code().map_or(0, |c| c.get()))
}

/// Crosses off the ACKs in `data`; the first error reply is returned as the
/// error of the message it answers, or of `unknown`.
fn acks(data: &[u8], unknown: &str, unacked: &mut Vec<(u32, &str)>) -> Result<()> {
    for frame in frames(data) {
        let frame = frame.map_err(|e| protocol(unknown, e))?;
        if frame.header.message_type != NLMSG_ERROR {
            continue;
        }
        let seq = frame.header.sequence_number;
        let code = error_code(frame.payload).map_err(|e| protocol(unknown, e))?;
        let what = unacked
            .iter()
            .find(|(s, _)| *s == seq)
            .map_or(unknown, |(_, w)| *w);
        if code != 0 {
            return Err(kernel(what, code));
        }
        unacked.retain(|(s, _)| *s != seq);
    }
    Ok(())
}

fn protocol(op: &str, detail: impl ToString) -> NetlinkError {
    NetlinkError::Protocol {
        op: op.to_string(),
        detail: detail.to_string(),
    }
}

/// `code` is the negated errno, as netlink sends it.
fn kernel(op: &str, code: i32) -> NetlinkError {
    NetlinkError::Kernel {
        op: op.to_string(),
        source: io::Error::from_raw_os_error(code.wrapping_neg()),
    }
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

/// A fake [`Wire`] replaying recorded reply datagrams, for the tests of the
/// transport and of the modules above it.
#[cfg(test)]
pub(super) mod replay {
    use std::collections::VecDeque;
    use std::io;

    /// Replies are handed out in order, one per `recv`; what was sent is
    /// kept. An exhausted replay answers `WouldBlock`.
    #[derive(Default)]
    pub(crate) struct Replay {
        pub(crate) replies: VecDeque<Vec<u8>>,
        pub(crate) sent: Vec<Vec<u8>>,
        /// `EINTR` before every other call, to prove it is retried.
        pub(crate) interrupt: bool,
        interrupted: bool,
    }

    impl Replay {
        pub(crate) fn new(replies: impl IntoIterator<Item = Vec<u8>>) -> Replay {
            Replay {
                replies: replies.into_iter().collect(),
                ..Replay::default()
            }
        }

        fn signal(&mut self) -> io::Result<()> {
            if self.interrupt && !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.interrupted = false;
            Ok(())
        }
    }

    impl super::Wire for Replay {
        fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
            self.signal()?;
            self.sent.push(datagram.to_vec());
            Ok(())
        }

        fn recv(&mut self, buf: &mut Vec<u8>, _wait: bool) -> io::Result<()> {
            self.signal()?;
            *buf = self.replies.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
            Ok(())
        }
    }

    /// One reply message: `nlmsghdr` (type, flags, seq) + payload, padded.
    pub(crate) fn message(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = super::NETLINK_HEADER_LEN + payload.len();
        let mut m = Vec::with_capacity(super::align(len));
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&msg_type.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(super::align(len), 0);
        m
    }

    /// `NLMSG_ERROR` answering `seq` with `code` (0: ACK).
    pub(crate) fn error(seq: u32, code: i32) -> Vec<u8> {
        let mut payload = code.to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]); // the echoed request header
        message(super::NLMSG_ERROR, 0, seq, &payload)
    }

    /// `NLMSG_DONE` of dump `seq`, with `flags` (`NLM_F_MULTI`, ...).
    pub(crate) fn done(seq: u32, flags: u16) -> Vec<u8> {
        message(super::NLMSG_DONE, flags, seq, &0i32.to_ne_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::replay::{done, error, message, Replay};
    use super::*;

    const MULTI: u16 = netlink_packet_core::NLM_F_MULTIPART;
    const INTR: u16 = NLM_F_DUMP_INTR;

    /// A bare request: `nlmsghdr` of type 18 with a 4-byte payload.
    fn request() -> Vec<u8> {
        message(18, 0, 0, &[0; 4])
    }

    /// A dump reply object carrying `value`.
    fn object(seq: u32, flags: u16, value: u8) -> Vec<u8> {
        message(16, MULTI | flags, seq, &[value, 0, 0, 0])
    }

    fn collect(t: &mut Transport<Replay>) -> Result<Vec<u8>> {
        t.dump("dump things", &mut request(), 0x301, |frame, out| {
            out.push(frame.payload[0]);
            Ok(())
        })
    }

    #[test]
    fn dump_collects_several_datagrams_and_skips_stale_replies() {
        let first = [object(1, 0, 1), object(7, 0, 99), object(1, 0, 2)].concat();
        let second = [object(1, 0, 3), done(1, MULTI)].concat();
        let mut t = Transport::new(Replay::new([first, second]));
        assert_eq!(collect(&mut t).expect("dump"), vec![1, 2, 3]);
        let sent = &t.wire().sent;
        assert_eq!(sent.len(), 1);
        let header = NetlinkBuffer::new_checked(&sent[0][..]).expect("header");
        assert_eq!((header.flags(), header.sequence_number()), (0x301, 1));
    }

    /// A dump whose objects changed while it ran is thrown away and asked
    /// for again (after its `NLMSG_DONE`: a socket runs one dump at a time).
    #[test]
    fn interrupted_dump_is_restarted() {
        let replies = [
            [object(1, 0, 1), object(1, INTR, 2)].concat(),
            done(1, MULTI | INTR),
            [object(2, 0, 1), object(2, 0, 2), object(2, 0, 3)].concat(),
            done(2, MULTI),
        ];
        let mut t = Transport::new(Replay::new(replies));
        assert_eq!(collect(&mut t).expect("dump"), vec![1, 2, 3]);
        let seqs: Vec<u32> = t
            .wire()
            .sent
            .iter()
            .map(|m| {
                NetlinkBuffer::new_checked(&m[..])
                    .expect("hdr")
                    .sequence_number()
            })
            .collect();
        assert_eq!(seqs, vec![1, 2]);

        // Only the DONE flagged: also interrupted.
        let replies = [
            object(1, 0, 9),
            done(1, MULTI | INTR),
            object(2, 0, 4),
            done(2, MULTI),
        ];
        let mut t = Transport::new(Replay::new(replies));
        assert_eq!(collect(&mut t).expect("dump"), vec![4]);
    }

    #[test]
    fn interrupted_dump_gives_up_after_a_bound() {
        let replies = (1..=DUMP_TRIES as u32 + 1).map(|seq| done(seq, MULTI | INTR));
        let mut t = Transport::new(Replay::new(replies));
        let err = collect(&mut t).expect_err("always interrupted");
        assert!(matches!(err, NetlinkError::Protocol { .. }), "{err}");
        assert!(err.to_string().contains("changed during each"), "{err}");
        assert_eq!(t.wire().sent.len(), DUMP_TRIES);
        assert_eq!(t.wire().replies.len(), 1, "no reply read past the bound");
    }

    #[test]
    fn errors_acks_and_eintr() {
        let mut replay = Replay::new([object(1, 0, 5), error(1, 0)]);
        replay.interrupt = true;
        let mut t = Transport::new(replay);
        let mut got = Vec::new();
        t.request("get", &mut request(), 5, |f| {
            got.push(f.payload[0]);
            Ok(())
        })
        .expect("acked despite EINTR");
        assert_eq!(got, vec![5]);

        let mut t = Transport::new(Replay::new([error(1, -libc::EEXIST)]));
        let err = t
            .request("add x", &mut request(), 5, |_| Ok(()))
            .expect_err("EEXIST");
        assert!(err.is(nix::errno::Errno::EEXIST));
        assert!(err.to_string().starts_with("add x: "), "{err}");

        // A dump failing midway reports its errno in NLMSG_DONE.
        let failed = message(NLMSG_DONE, MULTI, 1, &(-libc::EBUSY).to_ne_bytes());
        let mut t = Transport::new(Replay::new([failed]));
        assert!(collect(&mut t)
            .expect_err("EBUSY")
            .is(nix::errno::Errno::EBUSY));

        // An empty NLMSG_DONE ends a dump too.
        let mut t = Transport::new(Replay::new([message(NLMSG_DONE, MULTI, 1, &[])]));
        assert_eq!(collect(&mut t).expect("dump"), Vec::<u8>::new());

        // A decoder's complaint and a malformed length are protocol errors.
        let mut t = Transport::new(Replay::new([object(1, 0, 1)]));
        let err = t
            .request("get", &mut request(), 5, |_| Err("odd".into()))
            .expect_err("undecodable");
        assert_eq!(err.to_string(), "get: odd");
        let mut bad = object(1, 0, 1);
        bad[0] = 200;
        let mut t = Transport::new(Replay::new([bad]));
        assert!(matches!(
            collect(&mut t),
            Err(NetlinkError::Protocol { .. })
        ));
        // No answer at all.
        let mut t = Transport::new(Replay::new([]));
        assert!(t.request("get", &mut request(), 5, |_| Ok(())).is_err());
    }

    #[test]
    fn batch_acks_cross_off_and_errors_name_the_message() {
        let pending = vec![(2, "add chain".to_string()), (3, "append rule".to_string())];
        let mut t = Transport::new(Replay::new([[error(2, 0), error(3, 0)].concat()]));
        t.batch("commit", b"batch", &pending).expect("acked");
        assert_eq!(t.wire().sent, vec![b"batch".to_vec()]);

        let mut t = Transport::new(Replay::new([error(2, 0), error(3, -libc::ENOENT)]));
        let err = t.batch("commit", b"batch", &pending).expect_err("ENOENT");
        assert!(err.is(nix::errno::Errno::ENOENT), "{err}");
        assert!(err.to_string().starts_with("append rule"), "{err}");

        let mut t = Transport::new(Replay::new([error(1, -libc::EPERM)]));
        let err = t.batch("commit", b"batch", &pending).expect_err("EPERM");
        assert!(err.to_string().starts_with("commit"), "{err}");

        // A missing ACK: nothing queued is an error, not a hang.
        let mut t = Transport::new(Replay::new([error(2, 0)]));
        let err = t.batch("commit", b"batch", &pending).expect_err("no ACK");
        assert!(
            err.to_string().contains("waiting for: append rule"),
            "{err}"
        );
    }

    #[test]
    fn truncated_datagrams_never_panic() {
        let data = [object(1, 0, 1), error(1, 0)].concat();
        for cut in 0..data.len() {
            for frame in frames(&data[..cut]).flatten() {
                let _ = error_code(frame.payload);
            }
            let _ = acks(&data[..cut], "x", &mut vec![(1, "y")]);
        }
    }
}
