//! Small process-wide helpers: Ctrl-C handling, temp dirs, machine facts.

use crate::error::{BenchError, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// First SIGINT/SIGTERM sets a flag that stops the run at the next plugin
/// call, so Drop guards remove temp dirs and namespaces; a second one
/// kills the process (SA_RESETHAND).
pub fn install_interrupt_handler() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }
            .map_err(|e| BenchError::Other(format!("sigaction {sig}: {e}")))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

static TEMP_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Where temp dirs (host-local stores) go. tmpfs (`/dev/shm`) by default:
/// host-local never fsyncs, so on a real node its store lives in the page
/// cache anyway, and ext4 journal/discard work would only add noise (and
/// makes writing 65 000 lease files take minutes on a busy VM).
pub fn default_temp_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Sets the temp root once, before any [`TempDir`] is made.
pub fn set_temp_root(dir: PathBuf) -> Result<()> {
    TEMP_ROOT
        .set(dir)
        .map_err(|_| BenchError::Other("temp root set twice".into()))
}

/// A unique temp dir, removed (with everything in it) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = TEMP_ROOT.get_or_init(default_temp_root);
        let dir = root.join(format!(
            "cni-bench-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the numbers were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub loadavg_start: String,
    pub date_utc: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            loadavg_start: loadavg(),
            date_utc: utc_now(),
        }
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs a command and returns its trimmed stdout if it succeeded.
fn output_of(prog: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The git commit the binaries in `dir` were (most likely) built from:
/// short hash of the enclosing work tree, `-dirty` if tracked files changed.
pub fn git_commit(dir: &Path) -> Option<String> {
    let d = dir.to_str()?;
    let head = output_of("git", &["-C", d, "rev-parse", "--short", "HEAD"])?;
    let dirty = output_of(
        "git",
        &["-C", d, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// Version of the Debian package owning `dir/bridge`, if any.
pub fn package_version(dir: &Path) -> Option<String> {
    let bridge = dir.join("bridge");
    let owner = output_of("dpkg", &["-S", bridge.to_str()?])?;
    let pkg = owner.split(':').next()?.trim().to_string();
    let version = output_of("dpkg-query", &["-W", "-f", "${Version}", &pkg])?;
    Some(format!("{pkg} {version}"))
}

/// The 1/5/15-minute load averages.
pub fn loadavg() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Waits (at most `max`) until the machine's CPUs are idle: fewer than 10 %
/// busy over two consecutive 250 ms samples. Why: a network namespace is
/// torn down by a kernel worker long after its last user is gone (holding
/// RTNL in batches), so a scenario started
/// right after another one, or after a previous run, measures that cleanup
/// too. Returns how long it waited and whether the machine settled.
pub fn settle(max: std::time::Duration) -> (std::time::Duration, bool) {
    let start = std::time::Instant::now();
    let step = std::time::Duration::from_millis(250);
    let mut quiet = 0;
    let mut last = cpu_times();
    while start.elapsed() < max {
        std::thread::sleep(step);
        let now = cpu_times();
        quiet = match (last, now) {
            (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
                if (busy1 - busy0) * 10 < all1 - all0 {
                    quiet + 1
                } else {
                    0
                }
            }
            _ => return (start.elapsed(), false), // no /proc/stat: do not wait
        };
        if quiet >= 2 {
            return (start.elapsed(), true);
        }
        last = now;
    }
    (start.elapsed(), false)
}

/// (busy, total) jiffies of all CPUs from `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_678_104), "2026-11-26T07:28:24Z");
    }

    #[test]
    fn tempdir_is_removed() {
        let p = {
            let t = TempDir::new("unit").unwrap();
            std::fs::write(t.path().join("f"), b"x").unwrap();
            t.path().to_path_buf()
        };
        assert!(!p.exists());
    }
}
