//! SIGKILL without pid-reuse accidents: a process is named by its PID *and*
//! its start time, and the signal goes through a pidfd opened before the
//! start time is checked again, so it can only reach the process that was
//! seen (a pidfd never follows a reused PID).

use std::os::fd::{FromRawFd, OwnedFd};

use nix::libc;

/// `/proc/<pid>` readers shared with the built-in runtime.
pub use crate::harness::procs::{cmdline, ppid, stat};

/// A process as seen in `/proc`: PID plus start time (clock ticks since
/// boot, `/proc/<pid>/stat` field 22).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcId {
    /// The PID.
    pub pid: i32,
    /// Its start time.
    pub start_time: u64,
}

impl ProcId {
    /// The process now running as `pid`, unless it is gone or a zombie.
    pub fn of(pid: i32) -> Option<ProcId> {
        let (start_time, zombie) = stat(pid)?;
        (!zombie).then_some(ProcId { pid, start_time })
    }

    /// True while this very process still runs (not exited, PID not reused).
    pub fn alive(&self) -> bool {
        ProcId::of(self.pid) == Some(*self)
    }

    /// Sends SIGKILL to this process if it still runs and `still_wanted`
    /// (checked after the pidfd is open) says so. True if the signal was
    /// delivered.
    pub fn kill_if(&self, still_wanted: impl FnOnce() -> bool) -> std::io::Result<bool> {
        // SAFETY: plain syscall; a non-negative return is a new fd we own.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if raw < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(false),
                _ => Err(e),
            };
        }
        let fd_num = i32::try_from(raw).map_err(std::io::Error::other)?;
        // SAFETY: pidfd_open returned this fd to us and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd_num) };
        // The pidfd refers to whatever ran as `pid` when it was opened; if
        // that is still the process we saw, it is the one the fd names.
        if !self.alive() || !still_wanted() {
            return Ok(false);
        }
        // SAFETY: plain syscall on our pidfd, no siginfo.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(false),
                _ => Err(e),
            };
        }
        Ok(true)
    }
}

/// The direct children of `pid` (over all its threads).
pub fn children(pid: i32) -> Vec<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut out = Vec::new();
    for tid in tasks {
        let path = format!("/proc/{pid}/task/{}/children", tid.to_string_lossy());
        for child in std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            if !out.contains(&child) {
                out.push(child);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn kills_the_process_it_saw_and_nothing_after_it_is_gone() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let seen = ProcId::of(pid).expect("running");
        assert!(seen.alive());
        assert!(
            !seen.kill_if(|| false).expect("kill_if"),
            "not wanted: no signal"
        );
        assert!(seen.alive());
        assert!(seen.kill_if(|| true).expect("kill_if"));
        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(!seen.alive());
        assert!(!seen.kill_if(|| true).expect("kill_if after exit"));
    }

    #[test]
    fn a_different_start_time_is_another_process() {
        let me = ProcId::of(std::process::id() as i32).expect("self");
        let other = ProcId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.alive());
        assert!(!other.kill_if(|| true).expect("kill_if"));
    }
}
