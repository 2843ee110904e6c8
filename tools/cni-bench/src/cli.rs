//! Hand-written argument parsing (the tool needs no CLI crate).

use crate::error::{BenchError, Result};
use crate::scenarios::Scenario;
use std::path::PathBuf;

/// Base iteration count of the default (`--quick`) run: keeps the whole
/// run under about five minutes on two shared cores.
pub const QUICK_ITERATIONS: usize = 40;

/// Pods per node of the density scenario (issue 16: 500).
pub const DEFAULT_DENSITY: usize = 500;

pub const USAGE: &str = "\
usage: cni-bench [--ours DIR] [--reference DIR] [--quick | --iterations N]
                 [--json PATH] [--only NAME[,NAME...]] [--tmpdir DIR]
                 [--density PODS] [--help]

Benchmarks our bridge, host-local, portmap and loopback plugins against the
reference ones, inside network namespaces it creates (needs root).

  --ours DIR        our plugins (default: the directory of this executable)
  --reference DIR   reference plugins (default: /usr/lib/cni)
  --quick           default: base iteration count 40 (< 5 min on 2 cores)
  --iterations N    base iteration count (longer runs: 200 is bench-ref.sh's)
  --json PATH       also write every result as JSON (for comparing commits)
  --only NAMES      comma-separated subset of: version, hostlocal, floor,
                    bridge, dualstack, concurrent, density, leases, rss,
                    portmap, loopback
  --density PODS    pods the density scenario fills a node with (default 500)
  --tmpdir DIR      where the host-local stores go (default: /dev/shm)
";

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub ours: PathBuf,
    pub reference: PathBuf,
    pub iterations: usize,
    pub json: Option<PathBuf>,
    pub only: Vec<Scenario>,
    pub tmpdir: Option<PathBuf>,
    /// Pods per node of the density scenario.
    pub density: usize,
    pub help: bool,
}

/// Parses `args` (without the program name); `default_ours` is the
/// directory of the running executable.
pub fn parse(args: &[String], default_ours: PathBuf) -> Result<Options> {
    let mut opts = Options {
        ours: default_ours,
        reference: PathBuf::from("/usr/lib/cni"),
        iterations: QUICK_ITERATIONS,
        json: None,
        only: Scenario::ALL.to_vec(),
        tmpdir: None,
        density: DEFAULT_DENSITY,
        help: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| BenchError::Usage(format!("{name} needs a value"))),
            }
        };
        match flag {
            "--ours" => opts.ours = PathBuf::from(value("--ours")?),
            "--reference" => opts.reference = PathBuf::from(value("--reference")?),
            "--quick" => opts.iterations = QUICK_ITERATIONS,
            "--iterations" => {
                let v = value("--iterations")?;
                opts.iterations = v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    BenchError::Usage(format!("--iterations wants an integer >= 1, got {v:?}"))
                })?;
            }
            "--json" => opts.json = Some(PathBuf::from(value("--json")?)),
            "--only" => {
                let v = value("--only")?;
                let mut only = Vec::new();
                for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let s = Scenario::from_name(name).ok_or_else(|| {
                        BenchError::Usage(format!("--only: unknown scenario {name:?}"))
                    })?;
                    if !only.contains(&s) {
                        only.push(s);
                    }
                }
                if only.is_empty() {
                    return Err(BenchError::Usage("--only needs a scenario name".into()));
                }
                // Keep the canonical order whatever order the user typed.
                only.sort_by_key(|s| Scenario::ALL.iter().position(|a| a == s));
                opts.only = only;
            }
            "--tmpdir" => opts.tmpdir = Some(PathBuf::from(value("--tmpdir")?)),
            "--density" => {
                let v = value("--density")?;
                opts.density = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 40)
                    .ok_or_else(|| {
                        BenchError::Usage(format!("--density wants an integer >= 40, got {v:?}"))
                    })?;
            }
            "--help" | "-h" => opts.help = true,
            other => return Err(BenchError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    Ok(opts)
}

/// Iteration counts of every scenario, derived from the base count so that
/// the slow scenarios (DAD stalls, 65 000-lease scans) stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Plan {
    pub version: usize,
    pub hostlocal: usize,
    pub bridge: usize,
    pub dualstack: usize,
    pub concurrent_rounds: usize,
    pub leases: usize,
    pub rss: usize,
    /// Pods per node of the density scenario (not derived from the base).
    pub density: usize,
    pub warmup: usize,
}

impl Plan {
    pub fn from_base(n: usize) -> Plan {
        Plan {
            version: n,
            hostlocal: n,
            bridge: n,
            dualstack: (n / 5).max(1),
            concurrent_rounds: (n / 8).clamp(1, 20),
            leases: (n / 8).max(1),
            rss: (n / 8).clamp(1, 10),
            density: DEFAULT_DENSITY,
            warmup: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, PathBuf::from("/x/release"))
    }

    #[test]
    fn defaults() {
        let o = p(&[]).unwrap();
        assert_eq!(o.ours, PathBuf::from("/x/release"));
        assert_eq!(o.reference, PathBuf::from("/usr/lib/cni"));
        assert_eq!(o.iterations, QUICK_ITERATIONS);
        assert_eq!(o.only, Scenario::ALL.to_vec());
        assert!(o.json.is_none());
        assert_eq!(o.density, DEFAULT_DENSITY);
    }

    #[test]
    fn density_pods() {
        assert_eq!(p(&["--density", "200"]).unwrap().density, 200);
        assert_eq!(p(&["--density=1000"]).unwrap().density, 1000);
        // Fewer than two windows of 20 pods cannot show growth.
        assert!(p(&["--density", "39"]).is_err());
        assert!(p(&["--density", "many"]).is_err());
        let only = p(&["--only", "density,floor"]).unwrap().only;
        assert_eq!(only, vec![Scenario::Floor, Scenario::Density]);
    }

    #[test]
    fn all_flags_both_forms() {
        let o = p(&[
            "--ours=/a",
            "--reference",
            "/b",
            "--iterations",
            "7",
            "--json=/tmp/x.json",
            "--only",
            "rss,hostlocal",
            "--tmpdir",
            "/var/tmp",
        ])
        .unwrap();
        assert_eq!(o.ours, PathBuf::from("/a"));
        assert_eq!(o.reference, PathBuf::from("/b"));
        assert_eq!(o.iterations, 7);
        assert_eq!(o.json, Some(PathBuf::from("/tmp/x.json")));
        assert_eq!(o.only, vec![Scenario::HostLocal, Scenario::Rss]);
        assert_eq!(o.tmpdir, Some(PathBuf::from("/var/tmp")));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(p(&["--iterations", "0"]).is_err());
        assert!(p(&["--iterations", "x"]).is_err());
        assert!(p(&["--iterations"]).is_err());
        assert!(p(&["--only", "nope"]).is_err());
        assert!(p(&["--bogus"]).is_err());
    }

    #[test]
    fn plan_is_bounded() {
        let q = Plan::from_base(QUICK_ITERATIONS);
        assert_eq!(
            (q.dualstack, q.leases, q.concurrent_rounds, q.rss),
            (8, 5, 5, 5)
        );
        let one = Plan::from_base(1);
        assert!(
            one.dualstack >= 1 && one.leases >= 1 && one.concurrent_rounds >= 1 && one.rss >= 1
        );
    }
}
