//! Which iptables the node has, so the nf_tables fast paths (`nft_direct`,
//! `nft_teardown`) run only for an iptables-nft whose encoding a test has
//! checked ([`VERIFIED`]); any other version gets the
//! `iptables-save`/`iptables-restore` path, whose rules that version's own
//! userspace writes and reads.
//!
//! Why a cache: `iptables --version` is an exec (≈ 2 ms, the cost the fast
//! path exists to avoid). The answer is kept in a small file,
//! [`DEFAULT_CACHE`] (directory 0700, written to a temp file and renamed),
//! keyed by the resolved path of the `iptables` found on `PATH` and that
//! file's device, inode, size, mtime and ctime: an upgrade, a switch of
//! alternatives or another `PATH` changes the key and triggers one new
//! exec. A missing, corrupt or stale cache means detecting again; failing
//! to write it costs only the next call an exec.

use std::ffi::OsStr;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::exec::Cmd;

/// Where the detected version is cached by default (root-only, tmpfs).
pub const DEFAULT_CACHE: &str = "/run/cni-rs/iptables-version";

/// Overrides [`DEFAULT_CACHE`]; for tests, which must not share one file.
pub const CACHE_ENV: &str = "CNI_RS_IPTABLES_CACHE";

/// First line of a cache file, so that anything else reads as corrupt.
const CACHE_MAGIC: &str = "cni-rs iptables-version 1";

/// An `iptables --version` answer: `iptables v1.8.9 (nf_tables)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IptablesVersion {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) patch: u32,
    /// `(nf_tables)`; `(legacy)` and versions before 1.8 (no suffix) are not.
    pub(crate) nft: bool,
}

/// Versions whose nf_tables encoding of our rules is checked by tests: the
/// golden bytes of `nft_direct` (`testdata/iptables-nft-1.8.9-*.hex`) and
/// `tests/netns/firewall_ipmasq.rs`, which compares our rules with what the
/// installed `iptables-restore` writes. Add a version only after running
/// those tests against it.
pub(crate) const VERIFIED: &[IptablesVersion] = &[IptablesVersion {
    major: 1,
    minor: 8,
    patch: 9,
    nft: true,
}];

impl std::fmt::Display for IptablesVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = if self.nft { "nf_tables" } else { "legacy" };
        write!(f, "v{}.{}.{} ({mode})", self.major, self.minor, self.patch)
    }
}

/// Parses the first line of `iptables --version` (also `ip6tables`,
/// `iptables-nft`, ...): `<name> v<major>.<minor>.<patch>[ (<mode>)]`.
pub(crate) fn parse_version(output: &str) -> Option<IptablesVersion> {
    let line = output.lines().next()?.trim();
    let mut words = line.split_whitespace();
    let _name = words.next()?;
    let numbers = words.next()?.strip_prefix('v')?;
    let mut parts = numbers.split('.');
    let mut number = || -> Option<u32> { parts.next()?.parse().ok() };
    let (major, minor, patch) = (number()?, number()?, number()?);
    if parts.next().is_some() {
        return None;
    }
    let nft = match words.next() {
        Some("(nf_tables)") => true,
        Some("(legacy)") | None => false,
        Some(_) => return None,
    };
    if words.next().is_some() {
        return None;
    }
    Some(IptablesVersion {
        major,
        minor,
        patch,
        nft,
    })
}

/// True when the installed iptables is one of [`VERIFIED`]: the nf_tables
/// fast paths may write and remove its rules. Decided once per process.
pub(crate) fn fast_path_verified() -> bool {
    static VERIFIED_HERE: OnceLock<bool> = OnceLock::new();
    *VERIFIED_HERE.get_or_init(|| {
        let cache = std::env::var_os(CACHE_ENV)
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from);
        let line = installed_version_line(&cache);
        let version = line.as_deref().and_then(parse_version);
        let ok = version.is_some_and(|v| VERIFIED.contains(&v));
        if !ok {
            crate::cni_debug!(
                "ipMasq: iptables {:?} is not a verified version for the nf_tables fast path, \
                 using the iptables tools",
                line.as_deref().unwrap_or("(not found)")
            );
        }
        ok
    })
}

/// The `iptables --version` line for the `iptables` on `PATH`, from `cache`
/// when its key still matches, else from one exec (then cached). `None`
/// if there is no `iptables` or it does not answer.
fn installed_version_line(cache: &Path) -> Option<String> {
    let key = binary_key(&find_on_path("iptables")?)?;
    cached_or_detect(cache, &key, || {
        Cmd::new("iptables", &["--version"])
            .run()
            .ok()
            .map(|o| o.stdout)
    })
}

/// The first `dir/name` on `PATH` that is a file, as `Command` would run it.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What identifies the binary `found` runs: its resolved path (symlinks and
/// alternatives followed) and that file's identity and times.
fn binary_key(found: &Path) -> Option<String> {
    let real = std::fs::canonicalize(found).ok()?;
    let m = std::fs::metadata(&real).ok()?;
    Some(format!(
        "{} dev={} ino={} size={} mtime={}.{} ctime={}.{}",
        real.display(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// The version line cached in `cache` under `key`, or `detect()`'s first
/// line, written to `cache` for the next call (best effort).
fn cached_or_detect(
    cache: &Path,
    key: &str,
    detect: impl FnOnce() -> Option<String>,
) -> Option<String> {
    if let Some(line) = std::fs::read_to_string(cache)
        .ok()
        .and_then(|text| read_cache(&text, key))
    {
        return Some(line);
    }
    let line = detect()?.lines().next()?.trim().to_string();
    if let Err(e) = write_cache(cache, key, &line) {
        crate::cni_debug!(
            "ipMasq: iptables version not cached in {}: {e}",
            cache.display()
        );
    }
    Some(line)
}

/// The cached version line if `text` is a well-formed cache for `key`.
fn read_cache(text: &str, key: &str) -> Option<String> {
    let mut lines = text.lines();
    if lines.next()? != CACHE_MAGIC || lines.next()?.strip_prefix("key ")? != key {
        return None;
    }
    let line = lines.next()?.strip_prefix("version ")?;
    (lines.next().is_none() && !line.is_empty()).then(|| line.to_string())
}

fn cache_text(key: &str, line: &str) -> String {
    format!("{CACHE_MAGIC}\nkey {key}\nversion {line}\n")
}

/// Writes the cache atomically: a private temp file next to it, renamed
/// over it, so readers see the old or the new file, never a torn one. The
/// directory is created root-only when missing.
fn write_cache(cache: &Path, key: &str, line: &str) -> std::io::Result<()> {
    if key.contains('\n') || line.contains('\n') {
        return Err(std::io::Error::other("newline in key or version"));
    }
    let dir = cache
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let name = cache.file_name().unwrap_or(OsStr::new("iptables-version"));
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(cache_text(key, line).as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, cache));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn v(major: u32, minor: u32, patch: u32, nft: bool) -> Option<IptablesVersion> {
        Some(IptablesVersion {
            major,
            minor,
            patch,
            nft,
        })
    }

    #[test]
    fn version_strings() {
        assert_eq!(
            parse_version("iptables v1.8.9 (nf_tables)\n"),
            v(1, 8, 9, true)
        );
        assert_eq!(parse_version("iptables v1.8.7 (legacy)"), v(1, 8, 7, false));
        assert_eq!(
            parse_version("ip6tables-nft v1.8.10 (nf_tables)"),
            v(1, 8, 10, true)
        );
        assert_eq!(parse_version("iptables v1.6.1"), v(1, 6, 1, false));
        assert_eq!(
            parse_version("iptables v1.8.11 (nf_tables)\nsecond line"),
            v(1, 8, 11, true)
        );
        for bad in [
            "",
            "iptables",
            "iptables 1.8.9 (nf_tables)",
            "iptables v1.8 (nf_tables)",
            "iptables v1.8.9.1 (nf_tables)",
            "iptables v1.8.x (nf_tables)",
            "iptables v1.8.9 (something)",
            "iptables v1.8.9 (nf_tables) extra",
        ] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
        assert_eq!(
            v(1, 8, 9, true).expect("v").to_string(),
            "v1.8.9 (nf_tables)"
        );
    }

    #[test]
    fn only_checked_versions_are_verified() {
        let ok = |s: &str| parse_version(s).is_some_and(|v| VERIFIED.contains(&v));
        assert!(ok("iptables v1.8.9 (nf_tables)"));
        assert!(!ok("iptables v1.8.9 (legacy)"));
        assert!(!ok("iptables v1.8.7 (nf_tables)"));
        assert!(!ok("iptables v1.8.10 (nf_tables)"));
    }

    /// One detection per key: a matching cache is used as is; another key,
    /// a corrupt or a missing file detects again and rewrites the cache.
    #[test]
    fn cache_detects_once_per_key() {
        let dir = std::env::temp_dir().join(format!("cni-rs-iptv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = dir.join("sub").join("iptables-version");
        let runs = Cell::new(0);
        let detect = |out: &'static str| {
            let runs = &runs;
            move || {
                runs.set(runs.get() + 1);
                Some(out.to_string())
            }
        };
        let nft189 = "iptables v1.8.9 (nf_tables)\n";
        let got = cached_or_detect(&cache, "k1", detect(nft189));
        assert_eq!(got.as_deref(), Some("iptables v1.8.9 (nf_tables)"));
        assert_eq!(runs.get(), 1);
        let got = cached_or_detect(&cache, "k1", detect("unused"));
        assert_eq!(got.as_deref(), Some("iptables v1.8.9 (nf_tables)"));
        assert_eq!(runs.get(), 1, "a matching cache needs no exec");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o777;
        assert_eq!(mode(cache.parent().expect("dir")), 0o700);
        assert_eq!(mode(&cache), 0o600);

        let other = "iptables v1.8.7 (nf_tables)";
        let got = cached_or_detect(&cache, "k2", detect(other));
        assert_eq!(got.as_deref(), Some(other));
        assert_eq!(runs.get(), 2, "another binary, another exec");
        for corrupt in ["", "garbage", "cni-rs iptables-version 1\nkey k2\n"] {
            std::fs::write(&cache, corrupt).expect("corrupt the cache");
            let got = cached_or_detect(&cache, "k2", detect(other));
            assert_eq!(got.as_deref(), Some(other));
        }
        assert_eq!(runs.get(), 5);
        assert_eq!(
            std::fs::read_to_string(&cache).expect("rewritten"),
            cache_text("k2", other)
        );
        // No iptables answer: nothing cached, nothing verified.
        std::fs::remove_file(&cache).expect("rm");
        assert_eq!(cached_or_detect(&cache, "k3", || None), None);
        assert!(!cache.exists());
        let names: Vec<_> = std::fs::read_dir(cache.parent().expect("dir"))
            .expect("ls")
            .collect();
        assert!(names.is_empty(), "no temp file left: {names:?}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn key_follows_the_binary() {
        let dir = std::env::temp_dir().join(format!("cni-rs-iptk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let bin = dir.join("xtables-nft-multi");
        std::fs::write(&bin, "one").expect("write");
        let link = dir.join("iptables");
        std::os::unix::fs::symlink(&bin, &link).expect("symlink");
        let k1 = binary_key(&link).expect("key");
        assert!(k1.starts_with(&format!("{} ", bin.display())), "{k1}");
        assert_eq!(binary_key(&link), Some(k1.clone()));
        std::fs::write(&bin, "two!").expect("rewrite");
        assert_ne!(binary_key(&link), Some(k1));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
