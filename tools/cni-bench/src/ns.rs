//! Network namespaces for the benchmark: the process leaves the machine's
//! netns at start-up, every implementation gets its own fresh "node" netns
//! per scenario, and every pod gets a netns held by a parked thread.
//!
//! Safety: nothing here ever runs a command in the machine's own netns.
//! The original netns inode is recorded once ([`leave_original`]) and every
//! node/pod thread checks it is elsewhere before doing anything.

use crate::error::{BenchError, Result};
use cni::netns::NetNs;
use nix::sched::{unshare, CloneFlags};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;

static ORIGINAL: OnceLock<u64> = OnceLock::new();

fn inode(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| BenchError::io(path, e))
}

/// Inode of the calling thread's network namespace.
pub fn thread_inode() -> Result<u64> {
    inode(Path::new("/proc/thread-self/ns/net"))
}

/// Errors out if `ino` is the machine's netns (the one we started in, or
/// PID 1's when readable).
fn ensure_not_original(ino: u64) -> Result<()> {
    let original = ORIGINAL
        .get()
        .ok_or_else(|| BenchError::Netns("leave_original() was not called".into()))?;
    if ino == *original {
        return Err(BenchError::Netns(
            "still in the original network namespace".into(),
        ));
    }
    if let Ok(init) = inode(Path::new("/proc/1/ns/net")) {
        if ino == init {
            return Err(BenchError::Netns("refusing to run in PID 1's netns".into()));
        }
    }
    Ok(())
}

/// Records the machine's netns and moves the calling (main) thread into a
/// fresh one, so that even a stray command cannot reach the machine's
/// network. Call before any other thread exists.
pub fn leave_original() -> Result<()> {
    let before = thread_inode()?;
    ORIGINAL
        .set(before)
        .map_err(|_| BenchError::Netns("leave_original() called twice".into()))?;
    unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| BenchError::Netns(format!("unshare(CLONE_NEWNET): {e} (are you root?)")))?;
    ensure_not_original(thread_inode()?)
}

/// A fresh "node" network namespace with `lo` up, pinned by an open nsfs
/// file descriptor; it vanishes (bridge, veths, firewall rules and all)
/// when the `Node` is dropped and no plugin process is left inside.
pub struct Node {
    ns: NetNs,
    inode: u64,
}

impl Node {
    pub fn new() -> Result<Node> {
        let handle = std::thread::spawn(|| -> Result<Node> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| BenchError::Netns(format!("unshare node netns: {e}")))?;
            let ino = thread_inode()?;
            ensure_not_original(ino)?;
            let status = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .map_err(|e| BenchError::Spawn {
                    path: "ip".into(),
                    source: e,
                })?;
            if !status.success() {
                return Err(BenchError::Netns(format!(
                    "ip link set lo up in the node: {status}"
                )));
            }
            let ns = NetNs::current().map_err(|e| BenchError::Netns(format!("node: {e}")))?;
            Ok(Node { ns, inode: ino })
        });
        handle
            .join()
            .map_err(|_| BenchError::Netns("node thread panicked".into()))?
    }

    /// Runs `f` on a scoped thread inside this node's netns; every process
    /// or thread `f` starts inherits the node netns.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.ns
            .run(|| -> Result<T> {
                let ino = thread_inode()?;
                if ino != self.inode {
                    return Err(BenchError::Netns("setns did not reach the node".into()));
                }
                ensure_not_original(ino)?;
                Ok(f())
            })
            .map_err(|e| BenchError::Netns(format!("node: {e}")))?
    }

    /// Runs a command inside the node and returns its stdout.
    pub fn command_output(&self, argv: &[&str]) -> Result<String> {
        let (prog, rest) = argv
            .split_first()
            .ok_or_else(|| BenchError::Other("empty command".into()))?;
        self.run(|| {
            let out = Command::new(prog)
                .args(rest)
                .output()
                .map_err(|e| BenchError::Spawn {
                    path: PathBuf::from(prog),
                    source: e,
                })?;
            if !out.status.success() {
                return Err(BenchError::Other(format!(
                    "{argv:?} in the node: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        })?
    }

    /// Number of veth links left in the node (a leak check after DELs).
    pub fn veth_count(&self) -> Result<usize> {
        let out = self.command_output(&["ip", "-o", "link", "show", "type", "veth"])?;
        Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
    }
}

/// A pod sandbox netns held by a parked thread (the "pause" container).
/// Creating it is not part of any timing.
pub struct Pod {
    /// `/proc/<pid>/task/<tid>/ns/net`: what the plugins get as `CNI_NETNS`.
    pub path: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Pod {
    pub fn new() -> Result<Pod> {
        let (path_tx, path_rx) = mpsc::channel::<Result<PathBuf>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let made = unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| BenchError::Netns(format!("unshare pod netns: {e}")))
                .and_then(|()| thread_inode())
                .and_then(|ino| ensure_not_original(ino).map(|()| ino))
                .map(|_| {
                    PathBuf::from(format!(
                        "/proc/{}/task/{}/ns/net",
                        std::process::id(),
                        nix::unistd::gettid()
                    ))
                });
            let ok = made.is_ok();
            // The receiver only disappears if Pod::new is gone already.
            let _ = path_tx.send(made);
            if ok {
                let _ = stop_rx.recv();
            }
        });
        let path = path_rx
            .recv()
            .map_err(|_| BenchError::Netns("pod thread died".into()))??;
        Ok(Pod {
            path,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Creates `n` pods (e.g. before a timed concurrent burst).
    pub fn many(n: usize) -> Result<Vec<Pod>> {
        (0..n).map(|_| Pod::new()).collect()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
