//! The on-disk lease store, byte-compatible with the reference host-local
//! (`backend/disk/backend.go`, `lock.go`), so either binary can take over a
//! `/var/lib/cni/networks` tree written by the other.
//!
//! Layout of `<dataDir>/<network>/` (directory mode 0755):
//! - `<ip>`: one lease. Name = Go `net.IP.String()` (dotted IPv4; IPv6 RFC 5952
//!   compressed lowercase, which Rust's `Display` matches; IPv4-mapped
//!   addresses are stored as IPv4). Content `<id>\r\n<ifname>`, no trailing
//!   newline, mode 0600, created with `O_EXCL`.
//! - `last_reserved_ip.<set>`: the bare last reserved address, no newline.
//!   Written to `last_reserved_ip.<set>.tmp` and renamed, so a crash never
//!   leaves it half-written (a corrupt one is ignored anyway).
//! - `lock`: empty; `flock(LOCK_EX)` on it is held for the **whole** command
//!   (the reference locks per range set). flock dies with its holder, so a
//!   stale `lock` file left by a killed process is harmless.
//!
//! Crash testing: when the environment variable [`CRASH_ENV`]
//! (`CNI_RS_TEST_CRASH_POINT`) equals one of `after-lock`, `after-create`,
//! `after-write`, `before-rename` or `after-remove`, the process kills itself
//! with SIGKILL at that point (after the lock is taken; after a lease file is
//! created but before its content is written; after the lease is written but
//! before `last_reserved_ip`; after the temp file but before the rename; after
//! the first lease removal). Unset, nothing happens. Only tests set it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use super::config::validate_network_name;
use super::error::IpamError;
use super::store::{lease_content, Lease, Owner, Store};

/// Name of the lock file inside the network directory.
pub const LOCK_FILE: &str = "lock";
/// Prefix of the per-range-set round-robin files.
pub const LAST_IP_PREFIX: &str = "last_reserved_ip.";
/// Test-only crash hook, see the module docs.
pub const CRASH_ENV: &str = "CNI_RS_TEST_CRASH_POINT";

/// Lease files are private (reference ≥ v1.4.0; v1.1.1 used 0644).
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o755;

/// Kills the process with SIGKILL if the crash hook names `point`.
fn crash_point(point: &str) {
    if std::env::var_os(CRASH_ENV).is_some_and(|v| v == point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// One network's lease directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl DiskStore {
    /// Creates `<data_dir>/<network>` if needed (0755) and takes the lock.
    pub fn open(data_dir: &Path, network: &str) -> Result<DiskStore, IpamError> {
        validate_network_name(network)?;
        let dir = data_dir.join(network);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(|e| IpamError::io("failed to create the IPAM store directory", &dir, e))?;
        Self::lock(dir)
    }

    /// Like [`open`](Self::open), but returns `None` without creating anything
    /// when the network directory does not exist: DEL, CHECK, GC and STATUS
    /// then have nothing to look at, and the filesystem stays untouched.
    pub fn open_existing(data_dir: &Path, network: &str) -> Result<Option<DiskStore>, IpamError> {
        validate_network_name(network)?;
        let dir = data_dir.join(network);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Self::lock(dir).map(Some),
            Ok(_) => Err(IpamError::io(
                "the IPAM store path is not a directory:",
                &dir,
                std::io::Error::from(ErrorKind::NotADirectory),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IpamError::io(
                "failed to open the IPAM store directory",
                &dir,
                e,
            )),
        }
    }

    fn lock(dir: PathBuf) -> Result<DiskStore, IpamError> {
        let path = dir.join(LOCK_FILE);
        // O_CREAT|O_RDONLY like go-filemutex: needs no write access to `lock`.
        let fd = nix::fcntl::open(
            &path,
            OFlag::O_CREAT | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(FILE_MODE),
        )
        .map_err(|e| IpamError::io("failed to open the IPAM lock file", &path, e.into()))?;
        let mut file = File::from(fd);
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(l) => break l,
                Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(IpamError::io(
                        "failed to lock",
                        &path,
                        std::io::Error::from(errno),
                    ))
                }
            }
        };
        crash_point("after-lock");
        Ok(DiskStore { dir, _lock: lock })
    }

    /// The network directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn last_ip_path(&self, set: usize) -> PathBuf {
        self.dir.join(format!("{LAST_IP_PREFIX}{set}"))
    }
}

/// Reads a small file without the size-hint `stat` that `fs::read` does:
/// lease files are tiny and there may be tens of thousands of them.
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut buf = Vec::with_capacity(128);
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads `name` relative to the open directory `dir`: `openat`, one `read`
/// and `close` for a normal lease (no full-path lookup, no size-hint `statx`
/// and `lseek` as `read_to_end` would do), which matters with 65k leases.
fn read_at(dir: &File, name: &str) -> std::io::Result<Vec<u8>> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    let mut f = File::from(fd);
    let mut buf = [0u8; 512];
    let n = loop {
        match f.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    let mut out = buf[..n].to_vec();
    // A short read of a regular file means end of file; only a full buffer
    // (an unusually long id) needs more reads.
    if n == buf.len() {
        f.read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Below this many leases one thread reads them all; above it the reads are
/// spread over the CPUs (each is a few syscalls, so they parallelise well).
const PARALLEL_READ_THRESHOLD: usize = 2048;

/// Reads and parses every named lease file.
fn read_owners(dir: &File, names: &[(String, IpAddr)]) -> Vec<Option<Owner>> {
    let read_one = |name: &str| match read_at(dir, name) {
        Ok(content) => Some(Owner::parse(&content)),
        // Removed under us (a writer not using the lock): not a lease any more.
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        // Unreadable (or a symlink): keep the address blocked, do not fail.
        Err(_) => Some(Owner::Unknown),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if names.len() < PARALLEL_READ_THRESHOLD || threads < 2 {
        return names.iter().map(|(n, _)| read_one(n)).collect();
    }
    let chunk = names.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|(n, _)| read_one(n)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl Store for DiskStore {
    fn leases(&mut self) -> Result<Vec<Lease>, IpamError> {
        let list_err = |e| IpamError::io("failed to list the IPAM store", &self.dir, e);
        let dir = File::open(&self.dir).map_err(list_err)?;
        let mut names: Vec<(String, IpAddr)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Only address-named files are leases: `lock`, `last_reserved_ip.*`
            // and anything else are never touched.
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            names.push((name.to_string(), ip.to_canonical()));
        }
        let owners = read_owners(&dir, &names);
        Ok(names
            .into_iter()
            .zip(owners)
            .filter_map(|((key, ip), owner)| {
                Some(Lease {
                    ip,
                    key,
                    owner: owner?,
                })
            })
            .collect())
    }

    fn reserve(&mut self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool, IpamError> {
        let path = self.dir.join(ip.to_canonical().to_string());
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(IpamError::io("failed to create lease file", &path, e)),
        };
        crash_point("after-create");
        // One write(2) of a few dozen bytes: the kernel does not split it, so a
        // crash leaves either an empty file (reclaimed later) or a whole lease.
        if let Err(e) = f.write_all(lease_content(id, ifname).as_bytes()) {
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(IpamError::io("failed to write lease file", &path, e));
        }
        drop(f);
        crash_point("after-write");
        Ok(true)
    }

    fn remove(&mut self, key: &str) -> Result<(), IpamError> {
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            return Err(IpamError::Config(format!(
                "refusing to remove lease key {key:?}"
            )));
        }
        let path = self.dir.join(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                crash_point("after-remove");
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IpamError::io("failed to remove lease file", &path, e)),
        }
    }

    fn last_reserved(&mut self, set: usize) -> Option<IpAddr> {
        let content = read_small(&self.last_ip_path(set)).ok()?;
        let text = std::str::from_utf8(&content).ok()?;
        text.trim()
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical())
    }

    fn set_last_reserved(&mut self, set: usize, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.last_ip_path(set);
        let tmp = self.dir.join(format!("{LAST_IP_PREFIX}{set}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            f.write_all(ip.to_canonical().to_string().as_bytes())?;
            drop(f);
            crash_point("before-rename");
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| IpamError::io("failed to record the last reserved IP in", &path, e))
    }
}

#[cfg(test)]
mod tests;
