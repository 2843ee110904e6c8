//! The kubelet + container runtime role, on one machine, entirely inside
//! network namespaces it creates (see `tools/kubesim`).
//!
//! - a **node** is a netns held by a `kubesim __pause` process, with its own
//!   conflist, CNI cache dir and host-local dataDir; nodes are joined by an
//!   underlay (a bridge in a further netns, one veth per node) with a route
//!   per remote pod CIDR, so pod IPs are routable cluster-wide;
//! - a **pod sandbox** is another `__pause` process holding the pod netns;
//!   the runtime ([`cni::runtime`]) runs CNI ADD/DEL for it, executing the
//!   plugins inside the node netns, with the kubelet's `CNI_ARGS`: the
//!   `loopback` network for `lo` ([`loopback`]), then the node's conflist
//!   for `eth0` with the pod's `hostPort`s as `portMappings` ([`hostport`]);
//! - a **container** is a `kubesim __echo-server` process that joined the
//!   sandbox netns; restarting it makes no CNI call.
//!
//! Everything is recorded in a state dir ([`state`]), so `down` cleans up
//! even after a crash.

pub mod child;
pub mod claims;
pub mod cluster;
pub mod demo;
pub mod error;
pub mod hostport;
pub mod inspect;
pub mod lookup;
pub mod loopback;
pub mod netlink;
pub mod nodeconf;
pub mod nsutil;
pub mod pod;
pub mod procs;
pub mod report;
pub mod state;
pub mod story;
pub mod table;
pub mod teardown;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use error::{HarnessError, Result};
use procs::Launcher;
use state::StateDir;

/// One harness invocation: the state dir and how to start helpers.
#[derive(Clone, Debug)]
pub struct Harness {
    /// The state dir.
    pub dir: StateDir,
    /// Starts `kubesim __…` helpers.
    pub launcher: Launcher,
    /// Print progress lines to stderr.
    pub verbose: bool,
}

impl Harness {
    /// A harness on `state_dir` (created if needed) re-executing `exe` for helpers.
    pub fn new(state_dir: &Path, exe: PathBuf) -> Result<Harness> {
        let dir = StateDir::create(state_dir)?;
        std::fs::create_dir_all(dir.logs()).map_err(HarnessError::io("create log dir"))?;
        Ok(Harness {
            launcher: Launcher {
                exe,
                state_dir: dir.root.clone(),
            },
            dir,
            verbose: true,
        })
    }

    /// Runs `f`, printing `what … done (N ms)` around it when verbose.
    pub fn step<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        if self.verbose {
            eprint!("  {what} … ");
        }
        let out = f();
        if self.verbose {
            match &out {
                Ok(_) => eprintln!("done ({} ms)", start.elapsed().as_millis()),
                Err(_) => eprintln!("FAILED"),
            }
        }
        out
    }

    /// Prints one progress line when verbose.
    pub fn say(&self, msg: &str) {
        if self.verbose {
            eprintln!("{msg}");
        }
    }
}

/// Random bytes as lowercase hex (sandbox ids, pod UIDs, probe tokens),
/// from getrandom(2).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < bytes {
        // SAFETY: writes at most `bytes - filled` bytes into our own buffer.
        let n =
            unsafe { nix::libc::getrandom(buf[filled..].as_mut_ptr().cast(), bytes - filled, 0) };
        if n <= 0 {
            // Interrupted or unavailable: mix in time and pid instead of
            // failing (uniqueness, not secrecy, is what callers need).
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let seed = t ^ (u128::from(std::process::id()) << 64);
            for (i, b) in buf[filled..].iter_mut().enumerate() {
                *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
            }
            break;
        }
        filled += n as usize;
    }
    cni::hex::encode(&buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_hex_is_hex_and_varies() {
        let a = super::random_hex(32);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, super::random_hex(32));
    }
}
