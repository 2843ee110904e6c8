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
//!     state          "cni-rs host-local index v2\nmtime <sec> <nsec>\n
//!                     ctime <sec> <nsec>\ndev <dev>\nino <ino>\n"   (0600)
//!     by-id/<hex32>  "<id>\n<ifname>\n<ip>\n<ip>\n..."   (0600)
//! ```
//!
//! `<hex32>` is the first 16 bytes of SHA-256(`id` NUL `ifname`) in hex:
//! fixed length, no path characters, whatever the id. The marker repeats the
//! id and ifname so a (practically impossible) hash collision is detected
//! rather than trusted.
//!
//! `state` holds the network directory's [`Stamp`] after our last seal; the
//! index is trusted only while the directory still has exactly that stamp.
//! This module only reads and writes index files and stamps the network
//! directory's mtime; [`DiskStore`](super::disk::DiskStore) decides when.

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::OFlag;
use nix::sys::stat::{futimens, Mode};
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, ClockId};
use sha2::{Digest, Sha256};

use super::dirfile::read_at;

/// Directory under `dataDir` holding one index per network.
pub const INDEX_DIR: &str = ".cni-rs-index";
const STATE_FILE: &str = "state";
const BY_ID_DIR: &str = "by-id";
const STATE_MAGIC: &str = "cni-rs host-local index v2";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// A timestamp exactly as `stat` reports it. Ordered by (sec, nsec), which
/// only `settle` uses: trust is decided by equality alone, since a clock
/// stepped back makes later times compare lower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    pub sec: i64,
    pub nsec: i64,
}

/// What `state` vouches for: the network directory as it was right after
/// our last seal. The mtime is the sentinel we chose, but anyone can set an
/// mtime (`touch -d`, `rsync -t`, `cp -a`, a restore) or a stepped-back
/// clock can produce it. The ctime cannot be set from userspace and moves on
/// every create/unlink/rename in the directory and every chmod/utimes of it;
/// the device and inode tell a copy or a restored directory from ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub mtime: Time,
    pub ctime: Time,
    pub dev: u64,
    pub ino: u64,
}

impl Stamp {
    /// The stamp of an open directory.
    pub fn of(dir: &File) -> std::io::Result<Stamp> {
        let m = dir.metadata()?;
        Ok(Stamp {
            mtime: Time {
                sec: m.mtime(),
                nsec: m.mtime_nsec(),
            },
            ctime: Time {
                sec: m.ctime(),
                nsec: m.ctime_nsec(),
            },
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn render(&self) -> String {
        let Stamp {
            mtime: m,
            ctime: c,
            dev,
            ino,
        } = self;
        format!(
            "{STATE_MAGIC}\nmtime {} {}\nctime {} {}\ndev {dev}\nino {ino}\n",
            m.sec, m.nsec, c.sec, c.nsec
        )
    }

    /// Strict: any other magic (e.g. v1, which held only the mtime) or a
    /// malformed line is "no state", so an old or damaged file means a
    /// rebuild, never a misread.
    fn parse(content: &[u8]) -> Option<Stamp> {
        let text = std::str::from_utf8(content).ok()?;
        let rest = text.strip_prefix(STATE_MAGIC)?.strip_prefix('\n')?;
        let mut lines = rest.strip_suffix('\n')?.split('\n');
        let mut field = |key: &str| -> Option<Vec<&str>> {
            let (k, v) = lines.next()?.split_once(' ')?;
            (k == key).then(|| v.split(' ').collect())
        };
        let time = |v: Vec<&str>| -> Option<Time> {
            let [sec, nsec] = v.as_slice() else {
                return None;
            };
            let t = Time {
                sec: sec.parse().ok()?,
                nsec: nsec.parse().ok()?,
            };
            (0..1_000_000_000).contains(&t.nsec).then_some(t)
        };
        let one = |v: Vec<&str>| -> Option<u64> {
            let [x] = v.as_slice() else { return None };
            x.parse().ok()
        };
        let stamp = Stamp {
            mtime: time(field("mtime")?)?,
            ctime: time(field("ctime")?)?,
            dev: one(field("dev")?)?,
            ino: one(field("ino")?)?,
        };
        lines.next().is_none().then_some(stamp)
    }
}

/// The kernel's coarse clock, the one it stamps ctimes with.
fn coarse_now() -> std::io::Result<Time> {
    let t = clock_gettime(ClockId::CLOCK_REALTIME_COARSE)?;
    Ok(Time {
        sec: t.tv_sec(),
        nsec: t.tv_nsec(),
    })
}

/// How long [`settle`] waits at most: many clock ticks (1-10 ms each).
const SETTLE_LIMIT: Duration = Duration::from_millis(200);

/// Whether a change right after our seal could get the seal's ctime `got`.
/// `first` is the ctime of an identical futimens a moment earlier (queried
/// by a stat in between), `coarse` the coarse clock read after `got`. Two
/// changes microseconds apart with distinct ctimes, the second ahead of the
/// coarse clock, mean multigrain timestamps (Linux >= 6.13 on ext4, xfs,
/// btrfs, tmpfs): once queried, the ctime is never handed out again, so no
/// wait is needed. Otherwise ctimes are clock ticks and [`settle`] must wait.
fn ctime_may_repeat(first: Time, got: Time, coarse: Time) -> bool {
    got == first || got <= coarse
}

/// Waits until the coarse clock has passed `ctime`, the ctime our seal got.
/// A change in the same tick would get the same ctime, so a same-tick change
/// plus a forged mtime would pass for ours; once the tick is over (and we
/// still hold the lock) no later change can. Fails if the clock does not get
/// there in time (stepped back): the index is then simply not trusted.
fn settle(ctime: Time) -> std::io::Result<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    while coarse_now()? <= ctime {
        if Instant::now() >= deadline {
            return Err(std::io::Error::other(
                "the clock did not pass the directory's ctime",
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Picks the next sentinel mtime. Seconds are two seconds in the past: the
/// kernel stamps a directory with its current (coarse) time on every
/// create/unlink/rename, and a past second never becomes current again (short
/// of the clock being set back), so no later change by anyone else can
/// reproduce it. The nanoseconds are random, so two sentinels differ even
/// within one second and a clock step back leaves only a 1e-9 chance of a
/// match. `previous` is avoided outright: the state file may still hold it.
fn next_sentinel(previous: Option<Time>) -> Time {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    let sec = i64::try_from(now.as_secs()).unwrap_or(i64::MAX) - 2;
    let nsec = i64::try_from(h.finish() % 1_000_000_000).unwrap_or(0);
    let mut s = Time { sec, nsec };
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
    crate::hex::encode(&digest[..16])
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
    /// Whether the network directory's stamp equalled `recorded` at open.
    trusted: bool,
    /// The last seal's ctime may be handed out again (see [`ctime_may_repeat`]).
    must_settle: bool,
}

impl Index {
    /// Reads the state of `<data_dir>/.cni-rs-index/<network>` and compares
    /// it with the network directory's current [`Stamp`]: trusted only if
    /// every field is equal. Never fails: anything unreadable just means
    /// "not trusted".
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
            must_settle: true,
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
    /// its resulting [`Stamp`] (the futimens also moves its ctime). From here
    /// until [`write_state`](Self::write_state) the directory differs from
    /// the recorded state, so the index is untrusted while markers change.
    pub fn seal(&mut self, net_dir: &File) -> std::io::Result<Stamp> {
        let want = next_sentinel(self.recorded.map(|r| r.mtime));
        let stamp = || {
            futimens(
                net_dir,
                &TimeSpec::UTIME_OMIT,
                &TimeSpec::new(want.sec, want.nsec),
            )?;
            Stamp::of(net_dir)
        };
        // Twice, to learn whether ctimes are fine-grained (ctime_may_repeat).
        let first = stamp()?.ctime;
        let got = stamp()?;
        self.must_settle = ctime_may_repeat(first, got.ctime, coarse_now()?);
        if got.mtime != want {
            // The filesystem rounds timestamps, so its ctimes are as coarse:
            // a change plus a forged mtime within one rounding step would
            // pass unseen. Never trust the index there.
            return Err(std::io::Error::other(
                "the filesystem rounds directory timestamps",
            ));
        }
        if Some(got) == self.recorded {
            // A crash before write_state would go unnoticed.
            return Err(std::io::Error::other(
                "the filesystem cannot store a distinct directory stamp",
            ));
        }
        self.trusted = false;
        Ok(got)
    }

    /// Records `stamp` (from [`seal`](Self::seal)) in `state`: from now on the
    /// index is trusted as long as the network directory matches `stamp`.
    /// Waits out the clock tick of the seal's ctime first if a later change
    /// could share it (see `settle`); callers hold the lock until after
    /// this returns.
    pub fn write_state(&mut self, stamp: Stamp) -> std::io::Result<()> {
        if self.must_settle {
            settle(stamp.ctime)?;
        }
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

    fn stamp() -> Stamp {
        Stamp {
            mtime: Time {
                sec: 1_700_000_000,
                nsec: 123_456_789,
            },
            ctime: Time {
                sec: 1_700_000_002,
                nsec: 5,
            },
            dev: 2049,
            ino: 1_234_567,
        }
    }

    #[test]
    fn state_roundtrip() {
        let s = stamp();
        assert_eq!(
            s.render(),
            "cni-rs host-local index v2\nmtime 1700000000 123456789\n\
             ctime 1700000002 5\ndev 2049\nino 1234567\n"
        );
        assert_eq!(Stamp::parse(s.render().as_bytes()), Some(s));
        let neg = Stamp {
            ctime: Time { sec: -3, nsec: 0 },
            ..s
        };
        assert_eq!(Stamp::parse(neg.render().as_bytes()), Some(neg));
    }

    #[test]
    fn v1_and_malformed_states_are_no_state() {
        let good = stamp().render();
        let bad = [
            // v1: the mtime alone, even when it would match.
            "cni-rs host-local index v1\n1700000000 123456789\n".to_string(),
            String::new(),
            good.replacen("v2", "v3", 1),
            good.strip_suffix('\n').unwrap_or_default().to_string(),
            format!("{good}extra\n"),
            good.replacen("ino 1234567\n", "", 1),
            good.replacen("dev", "ino", 1),
            good.replacen("dev 2049", "dev 2049 1", 1),
            good.replacen("ctime 1700000002 5", "ctime 1700000002", 1),
            good.replacen(" 5\n", " 1000000000\n", 1),
            good.replacen(" 5\n", " -1\n", 1),
            good.replacen("2049", "-1", 1),
            good.replacen("mtime", "mtime ", 1),
        ];
        for b in bad {
            assert_eq!(Stamp::parse(b.as_bytes()), None, "{b:?}");
        }
    }

    #[test]
    fn any_differing_field_breaks_trust() {
        let s = stamp();
        let t = |sec, nsec| Time { sec, nsec };
        for other in [
            Stamp {
                mtime: t(1_700_000_000, 123_456_788),
                ..s
            },
            // A clock stepped back: an earlier ctime is a mismatch too.
            Stamp {
                ctime: t(1_699_999_000, 5),
                ..s
            },
            Stamp {
                ctime: t(1_700_000_002, 6),
                ..s
            },
            Stamp { dev: 2050, ..s },
            Stamp { ino: 7, ..s },
        ] {
            assert_ne!(other, s);
        }
    }

    #[test]
    fn only_distinct_ctimes_ahead_of_the_coarse_clock_spare_the_wait() {
        let t = |sec, nsec| Time { sec, nsec };
        let coarse = t(100, 4_000_000);
        // Fine-grained: distinct and ahead of the tick.
        assert!(!ctime_may_repeat(
            t(100, 4_000_100),
            t(100, 4_000_900),
            coarse
        ));
        // Tick-grained: both futimens got the tick's time.
        assert!(ctime_may_repeat(coarse, coarse, coarse));
        // A tick boundary between the two: distinct, but not ahead.
        assert!(ctime_may_repeat(t(100, 0), coarse, coarse));
        // Equal but ahead (a clock that went back a little): still wait.
        assert!(ctime_may_repeat(
            t(100, 5_000_000),
            t(100, 5_000_000),
            coarse
        ));
    }

    #[test]
    fn settle_waits_for_the_next_tick_and_gives_up_on_a_future_ctime() {
        let now = coarse_now().expect("clock");
        let start = Instant::now();
        settle(now).expect("the coarse clock advances");
        assert!(coarse_now().expect("clock") > now);
        assert!(start.elapsed() < SETTLE_LIMIT);
        // The clock was stepped back below the ctime: bounded, then an error.
        let future = Time {
            sec: now.sec + 3600,
            nsec: 0,
        };
        let start = Instant::now();
        assert!(settle(future).is_err());
        assert!(start.elapsed() >= SETTLE_LIMIT);
    }

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cni-rs-index-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("net")).expect("mkdir");
        d
    }

    /// Seal and record, as a write command does; returns the stamp.
    fn seal_now(data: &Path) -> Stamp {
        let net = File::open(data.join("net")).expect("open");
        let mut idx = Index::open(data, "net", &net);
        let stamp = idx.seal(&net).expect("seal");
        DirBuilder::new()
            .recursive(true)
            .create(idx.dir())
            .expect("mkdir");
        idx.write_state(stamp).expect("state");
        stamp
    }

    fn trusted(data: &Path) -> bool {
        let net = File::open(data.join("net")).expect("open");
        Index::open(data, "net", &net).trusted()
    }

    #[test]
    fn a_change_hidden_by_restoring_the_mtime_is_seen() {
        let d = tmp_dir("forge");
        for _ in 0..20 {
            let stamp = seal_now(&d);
            assert!(trusted(&d));
            // Right after the seal: create a file and put the mtime back.
            std::fs::write(d.join("net/x"), b"").expect("write");
            let net = File::open(d.join("net")).expect("open");
            futimens(
                &net,
                &TimeSpec::UTIME_OMIT,
                &TimeSpec::new(stamp.mtime.sec, stamp.mtime.nsec),
            )
            .expect("futimens");
            assert_eq!(Stamp::of(&net).expect("stat").mtime, stamp.mtime);
            assert!(!trusted(&d));
            std::fs::remove_file(d.join("net/x")).expect("rm");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_seal_moves_the_ctime_off_the_recorded_one() {
        let d = tmp_dir("reseal");
        let first = seal_now(&d);
        let net = File::open(d.join("net")).expect("open");
        let mut idx = Index::open(&d, "net", &net);
        assert!(idx.trusted());
        let second = idx.seal(&net).expect("seal");
        assert!(!idx.trusted());
        assert_ne!(second.ctime, first.ctime);
        assert_ne!(second.mtime, first.mtime);
        assert_eq!((second.dev, second.ino), (first.dev, first.ino));
        let _ = std::fs::remove_dir_all(&d);
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
