//! Deleting the container's veth without waiting for the kernel's
//! housekeeping (issue 16; docs/benchmarks.md F12).
//!
//! After `RTM_DELLINK` of a veth both ends vanish from every dump within
//! 1–3 ms (names, addresses and routes are gone, and a new `eth0` with the
//! same IP can be created in the pod at once), but the request returns only
//! after `netdev_run_todo`'s `rcu_barrier()`, 15–30 ms later. The request
//! runs inside `sendmsg`, and a process cannot exit while one of its
//! threads is in that syscall, so no thread can hide the wait. Instead a
//! forked helper sends the delete, and the plugin returns as soon as
//! netlink shows both ends gone; the helper sits out the barrier alone.
//!
//! The helper keeps none of the plugin's descriptors (`detach`), except a
//! socket pair made for it on which it reports the kernel's answer. It
//! opens its own netlink socket inside the pod netns and is named
//! [`HELPER_NAME`].
//!
//! The same wait hides in the masquerade teardown: releasing any netfilter
//! socket after a transaction that deleted rules waits for nf_tables'
//! destroy work (a full RCU grace period, ≈ 10 ms), and a process releases
//! its sockets when it exits. With ipMasq the plugin keeps them open
//! (`cni::netlink::keep_netfilter_sockets`) and, once done, sends them over
//! the report channel to the helper ([`Detached::hand_over`]), so they are
//! released when the helper exits.
//!
//! Whenever the fast path cannot be trusted the plugin waits as before: the
//! fork fails, the helper reports an error (the delete is then repeated
//! in-process, so the error is the one a plain delete gives), or the links
//! are still listed after [`VANISH_BOUND`].

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use cni::netlink::{Netlink, NetlinkError};
use cni::netns::NetNs;
use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use nix::sys::time::TimeSpec;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{fork, ForkResult, Pid};

use crate::detach::{detach, KEPT_FD};

/// How long the plugin waits for both ends to vanish before it waits for
/// the kernel's answer instead (unlisting takes 1–3 ms when healthy).
const VANISH_BOUND: Duration = Duration::from_secs(1);

/// Longest pause between two looks at the links; the helper's report ends
/// a pause early.
const POLL_STEP: Duration = Duration::from_micros(200);

/// The helper's `comm`, as `ps` and `/proc/<pid>/status` show it.
pub const HELPER_NAME: &CStr = c"bridge-dellink";

/// The descriptor number the helper's report channel is moved to.
const REPORT_FD: RawFd = KEPT_FD;

/// A delete handed to a helper process: its pid and the plugin's end of
/// the channel (a Unix stream socket pair) the helper reports the kernel's
/// answer on.
pub struct Started {
    pid: Pid,
    report: OwnedFd,
    index: u32,
}

/// Ways the delete has not been handed to a helper; the caller deletes
/// in-process.
#[derive(Debug)]
pub struct NotStarted;

/// Forks the helper that deletes link `index` of `netns`. Must be called
/// while the process has a single thread: the child of a multi-threaded
/// `fork` may only make async-signal-safe calls, and the helper allocates.
pub fn start(netns: &NetNs, index: u32) -> Result<Started, NotStarted> {
    let (report, report_w) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|_| NotStarted)?;
    // SAFETY: the caller guarantees a single-threaded process (see above),
    // so the child may do anything; it never returns from `helper`.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => helper(netns, report_w.as_raw_fd(), index),
        Ok(ForkResult::Parent { child }) => Ok(Started {
            pid: child,
            report,
            index,
        }),
        Err(_) => Err(NotStarted),
    }
}

/// The helper: detach, delete, report, exit. Runs in the forked child.
fn helper(netns: &NetNs, report: RawFd, index: u32) -> ! {
    let code = match detach(HELPER_NAME, netns, Some(report)) {
        Ok(()) => match Netlink::open().and_then(|mut nl| nl.del_link(index)) {
            Ok(_) => 0,
            Err(e) => e.errno().map_or(-1, |e| e as i32),
        },
        Err(e) => e as i32,
    };
    // A plugin that already returned has closed its end: EPIPE, and
    // SIGPIPE is ignored (skel), so the write simply fails. Whatever the
    // plugin sent over the channel is released when this process exits.
    let _ = nix::unistd::write(
        // SAFETY: REPORT_FD is the channel `detach` put there, open until exit.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(REPORT_FD) },
        &code.to_ne_bytes(),
    );
    // SAFETY: ends the child without running the parent's exit handlers
    // or flushing its copied stdio buffers.
    unsafe { libc::_exit(0) }
}

/// What the helper said so far.
enum Report {
    /// Nothing yet: the kernel is still working.
    Pending,
    /// The kernel's answer: 0, an errno, or -1 for "no answer" (the helper
    /// died or could not detach).
    Done(i32),
}

/// A helper still at work after the plugin's part is done.
pub struct Detached {
    pid: Pid,
    channel: OwnedFd,
}

impl Started {
    /// Returns once both ends of the veth are gone from netlink (`pod`: a
    /// connection in the pod netns; `peer`: the host end's index, looked up
    /// in the calling thread's netns), or once the delete finished. On the
    /// fast path the still-running helper comes back.
    pub fn finish(
        self,
        pod: &mut Netlink,
        peer: Option<u32>,
    ) -> Result<Option<Detached>, NetlinkError> {
        let mut host = match peer {
            Some(_) => Netlink::open().ok(),
            None => None,
        };
        // Without a view of the host end the vanishing cannot be proved.
        let observable = peer.is_none() || host.is_some();
        let deadline = Instant::now() + VANISH_BOUND;
        loop {
            let step = if observable && Instant::now() < deadline {
                Some(POLL_STEP)
            } else {
                None
            };
            if let Report::Done(code) = self.report(step) {
                return self.done(code, pod).map(|()| None);
            }
            if observable
                && gone(pod, self.index)
                && peer.is_none_or(|p| host.as_mut().is_some_and(|h| gone(h, p)))
            {
                return Ok(Some(Detached {
                    pid: self.pid,
                    channel: self.report,
                }));
            }
        }
    }

    /// Waits up to `step` (forever for `None`) for the helper's report.
    fn report(&self, step: Option<Duration>) -> Report {
        let mut fds = [PollFd::new(self.report.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, step.map(TimeSpec::from_duration), None) {
            Ok(0) | Err(Errno::EINTR) => return Report::Pending,
            Ok(_) => {}
            Err(_) => return Report::Done(-1),
        }
        let mut buf = [0u8; 4];
        match nix::unistd::read(&self.report, &mut buf) {
            Ok(4) => Report::Done(i32::from_ne_bytes(buf)),
            Err(Errno::EINTR) => Report::Pending,
            _ => Report::Done(-1),
        }
    }

    /// The helper finished: reap it; on anything but success, delete
    /// in-process (the link may still be there) so the caller gets the
    /// error a plain delete gives.
    fn done(self, code: i32, pod: &mut Netlink) -> Result<(), NetlinkError> {
        let _ = waitpid(self.pid, None);
        if code == 0 {
            return Ok(());
        }
        pod.del_link(self.index).map(drop)
    }
}

impl Detached {
    /// Gives `fds` to the helper: they stay open in its receive queue and
    /// are released when it exits. If it is gone already they are closed
    /// here (the release then waits as it would have anyway). Then reaps
    /// the helper if it has exited, so it does not linger as a zombie.
    pub fn hand_over(self, fds: Vec<OwnedFd>) {
        if !fds.is_empty() {
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            let _ = sendmsg::<()>(
                self.channel.as_raw_fd(),
                &[std::io::IoSlice::new(&[0])],
                &[ControlMessage::ScmRights(&raw)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
        }
        drop(fds);
        let _ = waitpid(self.pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// True once `index` is no longer listed; any other answer (an error
/// included) means "not proven gone yet".
fn gone(nl: &mut Netlink, index: u32) -> bool {
    matches!(nl.link_by_index(index), Ok(None))
}
