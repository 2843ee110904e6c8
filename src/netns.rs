//! Network namespace handles (`CNI_NETNS`) and running code inside one.
//!
//! Why a dedicated thread: `setns(CLONE_NEWNET)` changes the namespace of the
//! calling *thread* only. Switching the caller's thread and switching back can
//! fail half-way and leave the rest of the plugin in the wrong namespace (the
//! Go reference's `pkg/ns` README explains the hazards). [`NetNs::run`] instead
//! runs the closure on a fresh scoped thread that enters the namespace and then
//! simply ends, so the caller's thread is never moved.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC, PROC_SUPER_MAGIC};

/// Errors about opening or entering a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path does not exist: the sandbox is gone (DEL treats this as done).
    #[error("netns {path:?} does not exist")]
    NotExist {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The path exists but is neither an nsfs bind mount nor a `/proc` ns link.
    #[error("{path:?} is not a network namespace")]
    NotNs {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// Any other failure to open or inspect the path.
    #[error("failed to open netns {path:?}: {source}")]
    Open {
        /// The path that was asked for.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// `setns(2)` refused to enter the namespace.
    #[error("failed to enter netns {path:?}: {source}")]
    Enter {
        /// The namespace that could not be entered.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: nix::Error,
    },
    /// The thread that ran inside the namespace panicked.
    #[error("thread running in netns {path:?} panicked")]
    Panicked {
        /// The namespace the thread was in.
        path: PathBuf,
    },
}

/// An open network namespace. The file descriptor keeps it alive (and usable
/// for `IFLA_NET_NS_FD`) even if its bind mount or owning process goes away.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens `path` after checking that it really is a network namespace
    /// (nsfs bind mount or `/proc/<pid>/ns/net`), as Go `ns.GetNS` does.
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let fs = statfs(&path).map_err(|errno| match errno {
            nix::Error::ENOENT => NetnsError::NotExist { path: path.clone() },
            other => NetnsError::Open {
                path: path.clone(),
                source: io::Error::from(other),
            },
        })?;
        let fs_type = fs.filesystem_type();
        if fs_type != NSFS_MAGIC && fs_type != PROC_SUPER_MAGIC {
            return Err(NetnsError::NotNs { path });
        }
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => NetnsError::NotExist { path: path.clone() },
            _ => NetnsError::Open {
                path: path.clone(),
                source,
            },
        })?;
        // A /proc file that is not a namespace link (e.g. /proc/self/status)
        // passes the statfs check; setns would reject it later, so reject it now.
        if fs_type == PROC_SUPER_MAGIC && !is_netns_link(&path) {
            return Err(NetnsError::NotNs { path });
        }
        Ok(NetNs { file, path })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<NetNs, NetnsError> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// The path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace's inode (what `/proc/<pid>/ns/net` links name).
    pub fn inode(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.ino())
    }

    /// True when both handles name the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &NetNs) -> bool {
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Runs `f` on a new scoped thread that first enters this namespace.
    /// The caller's thread never changes namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| -> Result<T, NetnsError> {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
                    NetnsError::Enter {
                        path: self.path.clone(),
                        source,
                    }
                })?;
                Ok(f())
            });
            worker.join().map_err(|_| NetnsError::Panicked {
                path: self.path.clone(),
            })?
        })
    }
}

/// Makes `cmd`'s child enter the network namespace `ns` between fork and
/// exec: the program runs there while the caller's threads stay put.
pub fn enter_on_exec(cmd: &mut Command, ns: impl AsFd + Send + Sync + 'static) {
    // SAFETY: only setns(2) runs between fork and exec; it is
    // async-signal-safe and touches no allocator or lock.
    unsafe {
        cmd.pre_exec(move || setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
    }
}

/// A bad `CNI_NETNS` (missing, or not a namespace) is an invalid environment
/// variable (code 4, message names it); anything else is internal (999).
impl From<NetnsError> for crate::error::CniError {
    fn from(e: NetnsError) -> Self {
        use crate::error::codes;
        let code = match e {
            NetnsError::NotExist { .. } | NetnsError::NotNs { .. } => codes::INVALID_ENV,
            _ => codes::INTERNAL,
        };
        crate::error::CniError::new(code, format!("CNI_NETNS: {e}"))
    }
}

/// `/proc/<pid>/ns/net` is a magic symlink whose target reads `net:[<inode>]`.
fn is_netns_link(path: &Path) -> bool {
    std::fs::read_link(path)
        .map(|t| t.to_string_lossy().starts_with("net:["))
        .unwrap_or(false)
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_not_exist() {
        let err = NetNs::open("/nonexistent/netns/path").unwrap_err();
        assert!(matches!(err, NetnsError::NotExist { .. }), "{err:?}");
    }

    #[test]
    fn regular_file_is_not_ns() {
        let err = NetNs::open("/proc/self/status").unwrap_err();
        assert!(matches!(err, NetnsError::NotNs { .. }), "{err:?}");
        let err = NetNs::open("/etc/hostname")
            .or_else(|_| NetNs::open("/etc/passwd"))
            .unwrap_err();
        assert!(matches!(err, NetnsError::NotNs { .. }), "{err:?}");
    }

    #[test]
    fn current_namespace_opens_and_runs() {
        let here = NetNs::current().expect("open own netns");
        let again = NetNs::open("/proc/self/ns/net").expect("open /proc/self/ns/net");
        assert!(here.same_as(&again));
        if !nix::unistd::geteuid().is_root() {
            return; // setns needs CAP_SYS_ADMIN even for the own namespace
        }
        let inode = here
            .run(|| std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()))
            .expect("run")
            .expect("stat");
        assert_eq!(inode, here.file.metadata().expect("stat").ino());
    }
}
