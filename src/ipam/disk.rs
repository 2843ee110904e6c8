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
//! The store also keeps the attachment [`Index`] (outside this directory) in
//! step with it; see the "Attachment index" section of the [module docs](super).
//!
//! Crash testing (only in builds with the `test-hooks` feature, see
//! [`crate::test_hooks`]): when the crash hook names one of `after-lock`, `after-create`,
//! `after-write`, `before-rename` or `after-remove`, the process kills itself
//! with SIGKILL at that point (after the lock is taken; after a lease file is
//! created but before its content is written; after the lease is written but
//! before `last_reserved_ip`; after the temp file but before the rename; after
//! the first lease removal). Index steps: `index-after-seal` (sentinel mtime
//! set, marker and state not yet written), `index-after-marker` (marker
//! written, state not), `index-during-rebuild` (after the first marker file
//! of a rebuild), `index-after-rebuild` (markers synced, state not written).
//! Unset, nothing happens. Only tests set it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use std::collections::HashMap;

use super::allocator::LeaseIndex;
use super::config::validate_network_name;
use super::dirfile::read_at;
use super::error::IpamError;
use super::index::{marker_content, marker_name, Index};
use super::store::{lease_content, validate_attachment, Lease, Owner, Store};
use crate::test_hooks::crash_point;

/// Name of the lock file inside the network directory.
pub const LOCK_FILE: &str = "lock";
/// Prefix of the per-range-set round-robin files.
pub const LAST_IP_PREFIX: &str = "last_reserved_ip.";

/// Lease files are private (reference ≥ v1.4.0; v1.1.1 used 0644).
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o755;

/// One network's lease directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    /// The network directory itself, for `openat`/`fstatat` and its stamp.
    dir_fd: File,
    index: Index,
    /// This command created, removed or renamed something in `dir`.
    dirty: bool,
    /// A store operation failed half-way: the index can no longer vouch for `dir`.
    tainted: bool,
    /// The full scan found entries the index does not model (non-canonical
    /// names, directories named like addresses).
    irregular: bool,
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
        Self::lock(data_dir, network, dir)
    }

    /// Like [`open`](Self::open), but returns `None` without creating anything
    /// when the network directory does not exist: DEL, CHECK, GC and STATUS
    /// then have nothing to look at, and the filesystem stays untouched.
    pub fn open_existing(data_dir: &Path, network: &str) -> Result<Option<DiskStore>, IpamError> {
        validate_network_name(network)?;
        let dir = data_dir.join(network);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Self::lock(data_dir, network, dir).map(Some),
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

    fn lock(data_dir: &Path, network: &str, dir: PathBuf) -> Result<DiskStore, IpamError> {
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
        let dir_fd = nix::fcntl::open(
            &dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| IpamError::io("failed to open the IPAM store directory", &dir, e.into()))?;
        let dir_fd = File::from(dir_fd);
        let index = Index::open(data_dir, network, &dir_fd);
        Ok(DiskStore {
            dir,
            dir_fd,
            index,
            dirty: false,
            tainted: false,
            irregular: false,
            _lock: lock,
        })
    }

    /// The network directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn last_ip_path(&self, set: usize) -> PathBuf {
        self.dir.join(format!("{LAST_IP_PREFIX}{set}"))
    }

    /// Whether the attachment index matched the directory when the store was opened.
    pub fn index_trusted(&self) -> bool {
        self.index.trusted()
    }

    /// The fast path's view of one attachment: its leases as listed by its
    /// marker, each verified by reading the lease file (one small read per
    /// address, no directory listing). `None` when the index is not trusted
    /// or disagrees with the directory; the index is then invalidated and the
    /// caller must take the full-scan path (which rebuilds it).
    pub fn indexed_leases(&mut self, id: &str, ifname: &str) -> Option<Vec<Lease>> {
        let net = self.network_label();
        if !self.index.trusted() {
            crate::cni_debug!("host-local {net}: full scan (index not trusted)");
            return None;
        }
        let ips = match self.index.read_marker(id, ifname) {
            Ok(ips) => ips.unwrap_or_default(),
            Err(e) => return self.distrust(&format!("{e}")),
        };
        let mut out = Vec::with_capacity(ips.len());
        for ip in ips {
            let key = ip.to_string();
            let owner = match read_at(&self.dir_fd, &key) {
                Ok(c) => Owner::parse(&c),
                Err(e) => return self.distrust(&format!("lease {key}: {e}")),
            };
            if !owner.is_attachment(id, ifname) {
                return self.distrust(&format!("lease {key} is not held by the marker's owner"));
            }
            out.push(Lease { ip, key, owner });
        }
        crate::cni_debug!("host-local {net}: index trusted");
        Some(out)
    }

    /// Drops trust after the fast path found the index inconsistent.
    fn distrust(&mut self, why: &str) -> Option<Vec<Lease>> {
        let net = self.network_label();
        crate::cni_debug!("host-local {net}: full scan (index inconsistent: {why})");
        self.invalidate_index();
        None
    }

    /// Prepares a full-scan command (GC, or a fallback): a trusted index is
    /// invalidated first, so a crash while the command changes the directory
    /// and rebuilds the markers can never leave it trusted but stale.
    pub fn begin_full_scan(&mut self, why: &str) {
        let net = self.network_label();
        crate::cni_debug!("host-local {net}: full scan ({why})");
        if self.index.trusted() {
            self.invalidate_index();
        }
    }

    fn invalidate_index(&mut self) {
        if let Err(e) = self.index.invalidate() {
            // The state still names the old sentinel; it only matches the
            // directory again if nothing changes it, and then the index is
            // still right. Logged, not fatal: the index is an optimisation.
            crate::cni_debug!(
                "host-local: cannot invalidate index {}: {e}",
                self.index.dir().display()
            );
        }
    }

    /// Whether `ip` is held, as STATUS counts it: a missing file or an empty
    /// (orphaned) one is free, since ADD would reclaim it; anything else,
    /// including an unreadable entry, is taken. One `openat` + `read`.
    pub fn is_taken(&self, ip: IpAddr) -> bool {
        match read_at(&self.dir_fd, &ip.to_canonical().to_string()) {
            Ok(c) => Owner::parse(&c) != Owner::Orphan,
            Err(e) => e.kind() != ErrorKind::NotFound,
        }
    }

    /// Ends a fast-path command: if the directory changed, records the
    /// attachment's addresses (`before` as its marker listed them, `after` as
    /// they are now) and re-trusts the index. Order: lease files (already
    /// done) → sentinel mtime → marker → state; a crash anywhere leaves the
    /// directory's stamp different from the state, i.e. an untrusted index.
    pub fn finish_fast(&mut self, id: &str, ifname: &str, before: &[IpAddr], after: &[IpAddr]) {
        if !self.dirty {
            return;
        }
        if self.tainted {
            self.invalidate_index();
            return;
        }
        let res = (|| -> std::io::Result<()> {
            let stamp = self.index.seal(&self.dir_fd)?;
            crash_point("index-after-seal");
            if before != after {
                self.index.write_marker(id, ifname, after)?;
                crash_point("index-after-marker");
            }
            self.index.write_state(stamp)
        })();
        if let Err(e) = res {
            self.index_failed(&e);
        }
    }

    /// Ends a full-scan command that may write (ADD, DEL, GC): rebuilds the
    /// index from `leases` (the command's final view of the directory) and
    /// trusts it, unless the directory holds something the index cannot
    /// model (legacy id-only or empty leases, odd names) or a store operation
    /// failed; then the index stays untrusted and the next command scans.
    /// `surprised` is the allocator's report of a lease that appeared
    /// outside the lock during the command.
    pub fn finish_full(&mut self, leases: &LeaseIndex, surprised: bool) {
        let net = self.network_label();
        let markers = match self.markers_for(leases) {
            Some(m) if !self.tainted && !self.irregular && !surprised => m,
            _ => {
                crate::cni_debug!("host-local {net}: index not rebuilt (irregular store)");
                self.invalidate_index();
                return;
            }
        };
        // Sealing first (the state is already stale here) means a filesystem
        // that refuses explicit mtimes costs one failed call, not a rebuild.
        let res = (|| -> std::io::Result<()> {
            let stamp = self.index.seal(&self.dir_fd)?;
            crash_point("index-after-seal");
            self.index
                .sync_all(&markers, &|| crash_point("index-during-rebuild"))?;
            crash_point("index-after-rebuild");
            self.index.write_state(stamp)
        })();
        match res {
            Ok(()) => crate::cni_debug!(
                "host-local {net}: index rebuilt ({} attachments)",
                markers.len()
            ),
            Err(e) => self.index_failed(&e),
        }
    }

    fn index_failed(&mut self, e: &std::io::Error) {
        crate::cni_debug!(
            "host-local: index {} not updated: {e}",
            self.index.dir().display()
        );
        self.invalidate_index();
    }

    /// Marker name → content for every attachment in `leases`; `None` when a
    /// lease has no attachment form the index can express (legacy id-only,
    /// empty). Unreadable content and owners no valid command can name are
    /// left out: only GC (always a full scan) ever removes those.
    fn markers_for(&self, leases: &LeaseIndex) -> Option<HashMap<String, Vec<u8>>> {
        let mut groups: HashMap<(&str, &str), Vec<IpAddr>> = HashMap::new();
        for l in leases.iter() {
            match &l.owner {
                Owner::Attachment { id, ifname } => {
                    if validate_attachment(id, ifname).is_ok() {
                        groups.entry((id, ifname)).or_default().push(l.ip);
                    }
                }
                Owner::Unknown => {}
                Owner::Legacy { .. } | Owner::Orphan => return None,
            }
        }
        Some(
            groups
                .into_iter()
                .map(|((id, ifname), mut ips)| {
                    ips.sort_by_key(|ip| super::range::to_u128(*ip));
                    (marker_name(id, ifname), marker_content(id, ifname, &ips))
                })
                .collect(),
        )
    }

    fn network_label(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
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

/// Reads and parses every named lease file.
fn read_owners(dir: &File, names: &[(String, IpAddr)]) -> Vec<Option<Owner>> {
    let read_one = |name: &str| match read_at(dir, name) {
        Ok(content) => Some(Owner::parse(&content)),
        // Removed under us (a writer not using the lock): not a lease any more.
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        // Unreadable (or a symlink): keep the address blocked, do not fail.
        Err(_) => Some(Owner::Unknown),
    };
    super::parallel::map(names, |(n, _)| read_one(n))
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
                self.irregular = true;
                continue;
            }
            let ip = ip.to_canonical();
            // The fast path finds leases by their canonical name only.
            if ip.to_string() != name {
                self.irregular = true;
            }
            names.push((name.to_string(), ip));
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
            Err(e) => {
                self.tainted = true;
                return Err(IpamError::io("failed to create lease file", &path, e));
            }
        };
        self.dirty = true;
        crash_point("after-create");
        // One write(2) of a few dozen bytes: the kernel does not split it, so a
        // crash leaves either an empty file (reclaimed later) or a whole lease.
        if let Err(e) = f.write_all(lease_content(id, ifname).as_bytes()) {
            drop(f);
            let _ = std::fs::remove_file(&path);
            self.tainted = true;
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
                self.dirty = true;
                crash_point("after-remove");
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => {
                self.tainted = true;
                Err(IpamError::io("failed to remove lease file", &path, e))
            }
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
        // The temp file and the rename change the directory.
        self.dirty = true;
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
