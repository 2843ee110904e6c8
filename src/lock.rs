//! Node-wide locks between plugin processes: `flock` on small files under
//! [`LOCK_DIR`] (tmpfs, so they vanish with the boot, like the attachments
//! they guard).
//!
//! Why files and not abstract sockets or the store's lock: `flock` dies with
//! its holder (a killed plugin never wedges a node), it has shared and
//! exclusive modes, and a root-only directory keeps unprivileged processes of
//! the node from squatting a lock name (abstract socket names are open to
//! every process of the netns).
//!
//! Lock files are removed by whoever holds them exclusively and knows the
//! thing they guard is gone, so nothing accumulates. That is safe because
//! every acquirer checks, once it holds the lock, that the path still names
//! the inode it locked; if not (it waited on a file that was unlinked), it
//! starts over on the new file.

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode as FileMode;
use sha2::{Digest, Sha256};

/// Where the lock files live.
pub const LOCK_DIR: &str = "/run/cni-rs/locks";

/// A lock failure, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("failed to lock {path}: {source}")]
pub struct LockError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl From<LockError> for crate::error::CniError {
    fn from(e: LockError) -> Self {
        crate::error::CniError::new(crate::error::codes::IO, e.to_string())
    }
}

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    mode: LockMode,
    /// Unlink the file before releasing (exclusive holders only).
    remove_on_drop: bool,
    _lock: Flock<File>,
}

/// The lock file for `parts` (e.g. network, container id, ifname): a fixed
/// length hex name, whatever characters the parts hold, and distinct parts
/// never collide by concatenation (each is followed by a NUL).
pub fn lock_path(kind: &str, parts: &[&str]) -> PathBuf {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    Path::new(LOCK_DIR).join(format!("{kind}-{}", crate::hex::encode(&digest[..16])))
}

impl FileLock {
    /// Blocks until `path` is locked in `mode` (creating it and its
    /// directory, 0700, as needed).
    pub fn acquire(path: &Path, mode: LockMode) -> Result<FileLock, LockError> {
        Self::take(path, mode, true)?.ok_or_else(|| LockError {
            path: path.to_path_buf(),
            source: io::ErrorKind::WouldBlock.into(),
        })
    }

    /// Like [`acquire`](Self::acquire) but returns `None` at once when
    /// another process holds a conflicting lock.
    pub fn try_acquire(path: &Path, mode: LockMode) -> Result<Option<FileLock>, LockError> {
        Self::take(path, mode, false)
    }

    fn take(path: &Path, mode: LockMode, wait: bool) -> Result<Option<FileLock>, LockError> {
        let err = |source: io::Error| LockError {
            path: path.to_path_buf(),
            source,
        };
        let arg = match (mode, wait) {
            (LockMode::Shared, true) => FlockArg::LockShared,
            (LockMode::Exclusive, true) => FlockArg::LockExclusive,
            (LockMode::Shared, false) => FlockArg::LockSharedNonblock,
            (LockMode::Exclusive, false) => FlockArg::LockExclusiveNonblock,
        };
        loop {
            let mut file = open_lock_file(path).map_err(err)?;
            let lock = loop {
                match Flock::lock(file, arg) {
                    Ok(l) => break l,
                    Err((f, Errno::EINTR)) => file = f,
                    Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                    Err((_, errno)) => return Err(err(errno.into())),
                }
            };
            // The file may have been removed (and maybe recreated) while we
            // waited: then our lock guards nothing; take the current one.
            let held = lock.metadata().map_err(err)?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Some(FileLock {
                        path: path.to_path_buf(),
                        mode,
                        remove_on_drop: false,
                        _lock: lock,
                    }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(e)),
            }
        }
    }

    /// Releases the lock and removes its file now.
    pub fn remove(self) {
        drop(self.removed_on_drop());
    }

    /// Makes the release also remove the file. Only an exclusive holder
    /// removes (a shared holder cannot know that nobody else holds it).
    pub fn removed_on_drop(mut self) -> Self {
        self.remove_on_drop = self.mode == LockMode::Exclusive;
        self
    }
}

impl Drop for FileLock {
    /// Unlinks (when asked) while still holding the lock; the flock itself
    /// is released after this, when the file is closed.
    fn drop(&mut self) {
        if self.remove_on_drop {
            // Best effort: a leftover file is only an empty inode on tmpfs.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes every lock file nobody holds (GC's sweep). Always safe: a
/// process that opened a file before it was removed notices once it holds
/// the lock, and moves on to a new file.
pub fn sweep() {
    let Ok(entries) = std::fs::read_dir(LOCK_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        if let Ok(Some(lock)) = FileLock::try_acquire(&entry.path(), LockMode::Exclusive) {
            lock.remove();
        }
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    let open = || {
        nix::fcntl::open(
            path,
            OFlag::O_CREAT | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            FileMode::from_bits_truncate(0o600),
        )
    };
    match open() {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::ENOENT) => {
            if let Some(dir) = path.parent() {
                DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            Ok(File::from(open()?))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_lock(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cni-rs-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub").join("l")
    }

    #[test]
    fn names_are_fixed_length_and_unambiguous() {
        let a = lock_path("att", &["net", "ab", "c"]);
        let b = lock_path("att", &["net", "a", "bc"]);
        assert_ne!(a, b);
        assert_eq!(a.file_name().unwrap().len(), "att-".len() + 32);
        assert!(a.starts_with(LOCK_DIR));
        assert_eq!(
            lock_path("att", &["../x"]).parent(),
            Some(Path::new(LOCK_DIR))
        );
    }

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let p = tmp_lock("modes");
        let s1 = FileLock::acquire(&p, LockMode::Shared).unwrap();
        let s2 = FileLock::try_acquire(&p, LockMode::Shared).unwrap();
        assert!(s2.is_some(), "two shared holders");
        assert!(FileLock::try_acquire(&p, LockMode::Exclusive)
            .unwrap()
            .is_none());
        drop((s1, s2));
        let x = FileLock::try_acquire(&p, LockMode::Exclusive).unwrap();
        assert!(x.is_some());
        assert!(FileLock::try_acquire(&p, LockMode::Shared)
            .unwrap()
            .is_none());
        x.unwrap().remove();
        assert!(!p.exists(), "an exclusive holder removes the file");
        let _ = std::fs::remove_dir_all(p.parent().unwrap().parent().unwrap());
    }

    /// A waiter on a file that its holder removes moves on to the new file,
    /// so two holders never hold "the" lock at once.
    #[test]
    fn removal_while_waited_on_keeps_mutual_exclusion() {
        let p = tmp_lock("remove");
        let inside = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let l = FileLock::acquire(&p, LockMode::Exclusive).unwrap();
                        let n = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        assert_eq!(n, 0, "two holders at once");
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        l.remove();
                    }
                });
            }
        });
        let _ = std::fs::remove_dir_all(p.parent().unwrap().parent().unwrap());
    }
}
