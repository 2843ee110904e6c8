//! The attachment index that lets ADD/DEL/CHECK/STATUS skip the full
//! directory scan (see the "Attachment index" section of the [module
//! docs](super)).
//!
//! Layout, **outside** the network directory so that stays byte-identical to
//! the reference's (network names cannot start with `.`, so no collision):
//!
//! ```text
//! <dataDir>/.cni-rs-index/            0700
//! <dataDir>/.cni-rs-index/<network>/  0700
//!     state          "cni-rs host-local index v1\n<sec> <nsec>\n"
//!     by-id/<hex32>  "<id>\n<ifname>\n<ip>\n<ip>\n..."   (0600)
//! ```
//!
//! `<hex32>` is the first 16 bytes of SHA-256(`id` NUL `ifname`) in hex:
//! fixed length, no path characters, whatever the id. The marker repeats the
//! id and ifname so a (practically impossible) hash collision is detected
//! rather than trusted.
//!
//! This module only reads and writes index files and stamps the network
//! directory's mtime; [`DiskStore`](super::disk::DiskStore) decides when.

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::OFlag;
use nix::sys::stat::{futimens, Mode};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};

use super::disk::read_at;

/// Directory under `dataDir` holding one index per network.
pub const INDEX_DIR: &str = ".cni-rs-index";
const STATE_FILE: &str = "state";
const BY_ID_DIR: &str = "by-id";
const STATE_MAGIC: &str = "cni-rs host-local index v1";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// A directory modification time, exactly as `stat` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub sec: i64,
    pub nsec: i64,
}

impl Stamp {
    /// The mtime of an open directory.
    pub fn of(dir: &File) -> std::io::Result<Stamp> {
        let m = dir.metadata()?;
        Ok(Stamp {
            sec: m.mtime(),
            nsec: m.mtime_nsec(),
        })
    }

    fn render(&self) -> String {
        format!("{STATE_MAGIC}\n{} {}\n", self.sec, self.nsec)
    }

    fn parse(content: &[u8]) -> Option<Stamp> {
        let text = std::str::from_utf8(content).ok()?;
        let rest = text.strip_prefix(STATE_MAGIC)?.strip_prefix('\n')?;
        let line = rest.strip_suffix('\n')?;
        let (sec, nsec) = line.split_once(' ')?;
        Some(Stamp {
            sec: sec.parse().ok()?,
            nsec: nsec.parse().ok()?,
        })
    }
}

/// Picks the next sentinel mtime. Seconds are two seconds in the past: the
/// kernel stamps a directory with its current (coarse) time on every
/// create/unlink/rename, and a past second never becomes current again (short
/// of the clock being set back), so no later change by anyone else can
/// reproduce it. The nanoseconds are random, so two sentinels differ even
/// within one second and a clock step back leaves only a 1e-9 chance of a
/// match. `previous` is avoided outright: the state file may still hold it.
fn next_sentinel(previous: Option<Stamp>) -> Stamp {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    let sec = i64::try_from(now.as_secs()).unwrap_or(i64::MAX) - 2;
    let nsec = i64::try_from(h.finish() % 1_000_000_000).unwrap_or(0);
    let mut s = Stamp { sec, nsec };
    if Some(s) == previous {
        s.sec -= 1;
    }
    s
}

/// The marker file name of an attachment.
pub fn marker_name(id: &str, ifname: &str) -> String {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update([0u8]);
    h.update(ifname.as_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The marker file content of an attachment holding `ips`.
pub fn marker_content(id: &str, ifname: &str, ips: &[IpAddr]) -> Vec<u8> {
    let mut s = format!("{id}\n{ifname}\n");
    for ip in ips {
        s.push_str(&ip.to_string());
        s.push('\n');
    }
    s.into_bytes()
}

/// Why a marker cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("marker {0} cannot be read: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("marker {0} is malformed or names another attachment")]
    Corrupt(String),
}

fn parse_marker(content: &[u8], id: &str, ifname: &str) -> Option<Vec<IpAddr>> {
    let text = std::str::from_utf8(content).ok()?;
    let body = text.strip_suffix('\n')?;
    let mut lines = body.split('\n');
    if lines.next()? != id || lines.next()? != ifname {
        return None;
    }
    lines.map(|l| l.parse::<IpAddr>().ok()).collect()
}

/// One network's index directory and the sentinel recorded in its state.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    /// The sentinel in `state` when the command started (`None`: absent/corrupt).
    recorded: Option<Stamp>,
    /// Whether the network directory's mtime equalled `recorded` at open.
    trusted: bool,
}

impl Index {
    /// Reads the state of `<data_dir>/.cni-rs-index/<network>` and compares
    /// it with the network directory's current mtime. Never fails: anything
    /// unreadable just means "not trusted".
    pub fn open(data_dir: &Path, network: &str, net_dir: &File) -> Index {
        let dir = data_dir.join(INDEX_DIR).join(network);
        let recorded = read_file(&dir.join(STATE_FILE))
            .ok()
            .and_then(|c| Stamp::parse(&c));
        let trusted = match (recorded, Stamp::of(net_dir)) {
            (Some(r), Ok(now)) => r == now,
            _ => false,
        };
        Index {
            dir,
            recorded,
            trusted,
        }
    }

    /// True when the index describes the network directory exactly.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// The index directory (for diagnostics).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn by_id(&self) -> PathBuf {
        self.dir.join(BY_ID_DIR)
    }

    /// The addresses the marker of `(id, ifname)` lists; `Ok(None)` when
    /// there is no marker (the attachment holds nothing, if trusted).
    pub fn read_marker(&self, id: &str, ifname: &str) -> Result<Option<Vec<IpAddr>>, MarkerError> {
        let name = marker_name(id, ifname);
        match read_file(&self.by_id().join(&name)) {
            Ok(c) => parse_marker(&c, id, ifname)
                .map(Some)
                .ok_or(MarkerError::Corrupt(name)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MarkerError::Io(name, e)),
        }
    }

    /// Writes (or, for no addresses, removes) the marker of `(id, ifname)`.
    /// Overwritten in place: callers only do this while the state is stale.
    pub fn write_marker(&self, id: &str, ifname: &str, ips: &[IpAddr]) -> std::io::Result<()> {
        let path = self.by_id().join(marker_name(id, ifname));
        if ips.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        write_file(&path, &marker_content(id, ifname, ips))
    }

    /// Makes the index untrusted for every later command (removes `state`).
    pub fn invalidate(&mut self) -> std::io::Result<()> {
        self.trusted = false;
        self.recorded = None;
        match std::fs::remove_file(self.dir.join(STATE_FILE)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Stamps the network directory with a fresh sentinel mtime and returns
    /// the value the filesystem actually stored (it may round). From here
    /// until [`write_state`](Self::write_state) the mtime differs from the
    /// recorded state, so the index is untrusted while markers change.
    pub fn seal(&mut self, net_dir: &File) -> std::io::Result<Stamp> {
        let want = next_sentinel(self.recorded);
        futimens(
            net_dir,
            &TimeSpec::UTIME_OMIT,
            &TimeSpec::new(want.sec, want.nsec),
        )?;
        let got = Stamp::of(net_dir)?;
        if Some(got) == self.recorded {
            // A filesystem too coarse to tell the sentinels apart: a crash
            // before write_state would go unnoticed, so never trust it.
            return Err(std::io::Error::other(
                "the filesystem cannot store a distinct directory mtime",
            ));
        }
        self.trusted = false;
        Ok(got)
    }

    /// Records `stamp` (from [`seal`](Self::seal)) in `state`: from now on the
    /// index is trusted as long as the network directory's mtime is `stamp`.
    pub fn write_state(&mut self, stamp: Stamp) -> std::io::Result<()> {
        write_file(&self.dir.join(STATE_FILE), stamp.render().as_bytes())?;
        self.recorded = Some(stamp);
        self.trusted = true;
        Ok(())
    }

    /// Makes `by-id/` hold exactly `markers` (name → content), touching only
    /// files that differ (reading a marker is cheaper than rewriting it).
    /// Large indexes are synced on several threads, like the lease scan.
    /// Only call while the index is untrusted. `on_progress` runs after each
    /// file written or removed (crash tests).
    pub fn sync_all(
        &self,
        markers: &HashMap<String, Vec<u8>>,
        on_progress: &(dyn Fn() + Sync),
    ) -> std::io::Result<()> {
        let by_id = self.by_id();
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&by_id)?;
        let mut existing: HashSet<String> = HashSet::new();
        for entry in std::fs::read_dir(&by_id)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if markers.contains_key(&name) {
                existing.insert(name);
            } else {
                remove_entry(&entry.path())?;
                on_progress();
            }
        }
        // Relative to an open by-id/ fd: one path component per lookup.
        let dir = File::open(&by_id)?;
        let work: Vec<(&String, &Vec<u8>)> = markers.iter().collect();
        let sync_one = |(name, content): &(&String, &Vec<u8>)| -> std::io::Result<()> {
            if existing.contains(*name) && read_at(&dir, name).is_ok_and(|c| c == **content) {
                return Ok(());
            }
            write_at(&dir, name, content)?;
            on_progress();
            Ok(())
        };
        super::parallel::map(&work, sync_one).into_iter().collect()
    }
}

fn remove_entry(path: &Path) -> std::io::Result<()> {
    let res = if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match res {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut buf = Vec::with_capacity(256);
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// [`write_file`] relative to an open directory.
fn write_at(dir: &File, name: &str, content: &[u8]) -> std::io::Result<()> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(FILE_MODE),
    )?;
    File::from(fd).write_all(content)
}

/// Truncates and writes in one `write(2)`. A crash may leave a short file,
/// which is harmless: it is only ever trusted after a later `write_state`.
fn write_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_are_short_hex_and_distinct() {
        let a = marker_name("abc", "eth0");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, marker_name("abc", "eth1"));
        // The NUL separator keeps ("ab","ceth0") apart from ("abc","eth0").
        assert_ne!(marker_name("ab", "ceth0"), marker_name("abc", "eth0"));
    }

    #[test]
    fn marker_roundtrip_and_mismatch() {
        let ips: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd10::2".parse().unwrap()];
        let c = marker_content("abc", "eth0", &ips);
        assert_eq!(c, b"abc\neth0\n10.0.0.2\nfd10::2\n");
        assert_eq!(parse_marker(&c, "abc", "eth0"), Some(ips));
        assert_eq!(parse_marker(&c, "abc", "eth1"), None);
        assert_eq!(parse_marker(b"abc\neth0\nnot-an-ip\n", "abc", "eth0"), None);
        assert_eq!(parse_marker(b"abc\neth0\n10.0.0.2", "abc", "eth0"), None);
        assert_eq!(parse_marker(b"abc\neth0\n", "abc", "eth0"), Some(vec![]));
    }

    #[test]
    fn state_roundtrip() {
        let s = Stamp {
            sec: 1_700_000_000,
            nsec: 123_456_789,
        };
        assert_eq!(Stamp::parse(s.render().as_bytes()), Some(s));
        assert_eq!(Stamp::parse(b""), None);
        assert_eq!(Stamp::parse(b"cni-rs host-local index v1\n1 2"), None);
        assert_eq!(Stamp::parse(b"other\n1 2\n"), None);
    }

    #[test]
    fn sentinels_are_in_the_past_and_avoid_the_previous_one() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let s = next_sentinel(None);
        assert!(s.sec <= now - 2 && s.sec >= now - 4, "{s:?}");
        assert!((0..1_000_000_000).contains(&s.nsec));
        for _ in 0..100 {
            let prev = next_sentinel(None);
            assert_ne!(next_sentinel(Some(prev)), prev);
        }
    }
}
