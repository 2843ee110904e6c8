//! Helper processes (pause holders and containers): how they are started,
//! recorded, recognised again and killed. A record is only acted on when the
//! pid still runs the same kubesim helper for the same state dir (cmdline)
//! and started at the same time (no pid reuse accidents).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::error::{HarnessError, Result};
use super::nsutil::Netns;

/// How long a helper gets to report "ready".
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A process the harness started and must be able to kill later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    /// Process id.
    pub pid: i32,
    /// Start time (clock ticks since boot, `/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// The hidden subcommand it runs (`__pause`, `__echo-server`).
    pub helper: String,
}

/// The fields of `/proc/<pid>/stat` after comm, the state (field 3) first.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may contain spaces and ')': split after the last ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// Field 22 (starttime) of `/proc/<pid>/stat`, and whether it is a zombie.
pub fn stat(pid: i32) -> Option<(u64, bool)> {
    let fields = stat_fields(pid)?;
    let zombie = fields.first().is_some_and(|s| s == "Z" || s == "X");
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// The parent PID of a pid (field 4).
pub fn ppid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The argv of a pid (empty if gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl ProcRecord {
    /// Records a freshly started helper.
    pub fn of(pid: i32, helper: &str) -> Result<ProcRecord> {
        let (start_time, _) = stat(pid).ok_or_else(|| HarnessError::Start {
            what: helper.to_string(),
            reason: format!("pid {pid} vanished right after start"),
        })?;
        Ok(ProcRecord {
            pid,
            start_time,
            helper: helper.to_string(),
        })
    }

    /// True if the pid still runs this helper for `state_dir`.
    pub fn is_ours(&self, state_dir: &Path) -> bool {
        let Some((start, zombie)) = stat(self.pid) else {
            return false;
        };
        if zombie || start != self.start_time {
            return false;
        }
        let args = cmdline(self.pid);
        let dir = state_dir.to_string_lossy();
        args.contains(&self.helper) && args.iter().any(|a| *a == *dir)
    }

    /// Kills the process if (and only if) it is still ours, and waits until it
    /// is gone, so that its netns is released. Returns whether it was killed.
    pub fn kill(&self, state_dir: &Path) -> bool {
        if !self.is_ours(state_dir) {
            return false;
        }
        let pid = Pid::from_raw(self.pid);
        if kill(pid, Signal::SIGKILL).is_err() {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) => return true,
                // Not our child (started by an earlier kubesim): poll /proc.
                Err(_) => match stat(self.pid) {
                    None => return true,
                    Some((start, zombie)) if zombie || start != self.start_time => return true,
                    Some(_) => {}
                },
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// Starts kubesim helper subcommands as detached processes.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The kubesim executable.
    pub exe: PathBuf,
    /// Absolute state dir (part of every helper's cmdline).
    pub state_dir: PathBuf,
}

impl Launcher {
    /// Starts `kubesim <helper> --state-dir <dir> <args…>` in its own session,
    /// inside `netns` if given, stderr appended to `log`, and waits for its
    /// first stdout line. "ready…" means started; anything else is the reason
    /// it failed (e.g. `error: EADDRINUSE …`).
    pub fn start(
        &self,
        helper: &str,
        args: &[String],
        netns: Option<&Netns>,
        log: &Path,
    ) -> Result<(ProcRecord, String)> {
        let mut cmd = match netns {
            Some(ns) => ns.command(&self.exe)?,
            None => Command::new(&self.exe),
        };
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(HarnessError::io(format!("open log {}", log.display())))?;
        cmd.arg(helper)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        // SAFETY: setsid(2) only; detaches the helper from our terminal and
        // process group so it outlives this kubesim invocation.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(HarnessError::io(format!("spawn {helper}")))?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = BufReader::new(out).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let line = line.trim().to_string();
        if line.starts_with("ready") {
            let rec = ProcRecord::of(child.id() as i32, helper)?;
            return Ok((rec, line));
        }
        let _ = child.kill();
        let _ = child.wait();
        let reason = if line.is_empty() {
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log_text.lines().rev().take(3).collect();
            format!(
                "no ready signal; log: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        } else {
            line
        };
        Err(HarnessError::Start {
            what: format!("{helper} {}", args.join(" ")),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_reads_past_a_comm_with_spaces_and_parens() {
        // A comm like "a) b" would shift a naive split by two fields. A
        // thread's name is its comm, and /proc/<tid>/stat reads like a
        // process's: no process, file or directory to clean up.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("a) b".into())
            .spawn(move || {
                tid_tx
                    .send(nix::unistd::gettid().as_raw())
                    .expect("send tid");
                // Returns once the test drops its sender, even by a panic.
                let _ = done_rx.recv();
            })
            .expect("spawn thread");
        let tid = tid_rx.recv().expect("thread's tid");
        let comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).expect("comm");
        assert_eq!(comm.trim_end(), "a) b");
        assert_eq!(ppid(tid), Some(nix::unistd::getppid().as_raw()));
        let (start, zombie) = stat(tid).expect("stat");
        assert!(start > 0 && !zombie);
        drop(done_tx);
        thread.join().expect("join");
        // The kernel releases the task just after it wakes the joiner.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while stat(tid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(stat(tid), None, "gone after the join");
    }

    #[test]
    fn records_and_refuses_foreign_processes() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let rec = ProcRecord::of(pid, "__pause").expect("record");
        assert!(rec.start_time > 0);
        // `sleep` is not a kubesim helper of this state dir: never killed.
        assert!(!rec.is_ours(Path::new("/run/kubesim-test")));
        assert!(!rec.kill(Path::new("/run/kubesim-test")));
        assert!(
            child.try_wait().expect("wait").is_none(),
            "sleep must survive"
        );
        // A record whose start time does not match is stale (pid reuse).
        let stale = ProcRecord {
            start_time: rec.start_time + 1,
            ..rec.clone()
        };
        assert!(!stale.is_ours(Path::new("/")));
        child.kill().expect("kill our sleep");
        child.wait().expect("reap");
        assert!(stat(pid).is_none() || stat(pid).is_some_and(|(_, z)| z));
    }

    #[test]
    fn parses_own_stat_and_cmdline() {
        let (start, zombie) = stat(std::process::id() as i32).expect("own stat");
        assert!(start > 0);
        assert!(!zombie);
        assert!(!cmdline(std::process::id() as i32).is_empty());
    }
}
