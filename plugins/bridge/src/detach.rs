//! Turning a freshly forked child into a helper that outlives the plugin
//! without holding anything of the caller's (used by `detached_del` and
//! `announce`).
//!
//! Go's `exec` and containerd wait for EOF on the plugin's stdout and
//! stderr, so a helper must not keep them: stdin, stdout and stderr become
//! `/dev/null` and every other inherited descriptor is closed (no lock
//! outlives the plugin), except one the caller asks to keep. The helper
//! leaves the caller's session, takes its own `comm` and enters the pod
//! netns. Once the plugin exits it is reparented to the nearest subreaper
//! or to init, which reaps it (containerd's shim is a subreaper, the daemon
//! that runs CNI plugins is not; cnitool, ctr and podman are not either).

use std::ffi::CStr;
use std::os::fd::{AsFd, RawFd};

use cni::netns::NetNs;
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

/// The descriptor number a kept descriptor is moved to.
pub const KEPT_FD: RawFd = 3;

/// Detaches the calling (forked, single-threaded) child: own session and
/// name, inside `netns`, stdio on `/dev/null`, `keep` moved to
/// [`KEPT_FD`], everything else closed.
pub fn detach(name: &CStr, netns: &NetNs, keep: Option<RawFd>) -> Result<(), Errno> {
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(name);
    setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)?;
    // SAFETY (the block): plain descriptor syscalls on numbers this
    // process owns; nothing else runs in the child.
    unsafe {
        let keep = match keep {
            Some(fd) => Some(Errno::result(libc::fcntl(fd, libc::F_DUPFD, 10))?),
            None => None,
        };
        let null = Errno::result(libc::open(c"/dev/null".as_ptr(), libc::O_RDWR))?;
        for fd in 0..3 {
            if fd != null {
                Errno::result(libc::dup2(null, fd))?;
            }
        }
        match keep {
            Some(fd) => {
                Errno::result(libc::dup2(fd, KEPT_FD))?;
                close_from(KEPT_FD + 1)
            }
            None => close_from(KEPT_FD),
        }
    }
}

/// Closes every descriptor from `first` on: `close_range(2)`, or one by one
/// from `/proc/self/fd` on kernels before 5.9.
fn close_from(first: RawFd) -> Result<(), Errno> {
    // SAFETY: closes descriptors only; the caller keeps none of them.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) };
    if r == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|_| Errno::EBADF)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: as above; the directory's own descriptor is already
        // closed, so closing its number again fails harmlessly.
        unsafe { libc::close(fd) };
    }
    Ok(())
}
