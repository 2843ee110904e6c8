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

impl Store for DiskStore {
    fn leases(&mut self) -> Result<Vec<Lease>, IpamError> {
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| IpamError::io("failed to list the IPAM store", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry =
                entry.map_err(|e| IpamError::io("failed to list the IPAM store", &self.dir, e))?;
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
            let owner = match read_small(&entry.path()) {
                Ok(content) => Owner::parse(&content),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                // Unreadable: keep the address blocked rather than fail the command.
                Err(_) => Owner::Unknown,
            };
            out.push(Lease {
                ip: ip.to_canonical(),
                key: name.to_string(),
                owner,
            });
        }
        Ok(out)
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
