//! `cni-bench`: our bridge + host-local plugins against the reference ones
//! (issue 7), in network namespaces it creates, alternating the two
//! implementations every iteration. Prints a Markdown table (stdout),
//! progress (stderr) and optionally the whole result set as JSON.
//!
//! Run as root: `cargo build --release && sudo target/release/cni-bench`.

mod cli;
mod error;
mod exec;
mod ns;
mod report;
mod rssprobe;
mod scenarios;
mod stats;
mod store;
mod util;

use error::{BenchError, Result};
use report::Report;
use scenarios::{Ctx, Impl, Side};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cni-bench: {e}");
            if matches!(e, BenchError::Usage(_)) {
                eprint!("{}", cli::USAGE);
                2
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}

/// Directory of the running executable: `target/release` after a build.
fn exe_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("/proc/self/exe", e))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| BenchError::Other(format!("{} has no parent dir", exe.display())))
}

/// Both plugins must be present (and executable) before anything starts.
fn check_dir(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir.canonicalize().map_err(|e| BenchError::io(dir, e))?;
    for plugin in ["bridge", "host-local"] {
        let p = dir.join(plugin);
        let meta = std::fs::metadata(&p).map_err(|e| BenchError::io(&p, e))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(BenchError::Other(format!(
                "{} is not an executable file",
                p.display()
            )));
        }
    }
    Ok(dir)
}

fn real_main() -> Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = cli::parse(&args, exe_dir()?)?;
    if opts.help {
        print!("{}", cli::USAGE);
        return Ok(0);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::Other(
            "needs root (it creates network namespaces); run with sudo".into(),
        ));
    }
    let ours = check_dir(&opts.ours)?;
    let reference = check_dir(&opts.reference)?;
    if let Some(dir) = &opts.tmpdir {
        let dir = dir.canonicalize().map_err(|e| BenchError::io(dir, e))?;
        util::set_temp_root(dir)?;
    }
    util::install_interrupt_handler()?;
    // From here on the whole process is outside the machine's netns.
    ns::leave_original()?;

    let plan = cli::Plan {
        density: opts.density,
        ..cli::Plan::from_base(opts.iterations)
    };
    let machine = util::Machine::probe();
    let ctx = Ctx {
        ours: Impl {
            side: Side::Ours,
            dir: ours.clone(),
        },
        reference: Impl {
            side: Side::Reference,
            dir: reference.clone(),
        },
        plan,
    };
    eprintln!(
        "cni-bench: ours={} reference={} base iterations={} on {} CPUs ({}), load {}",
        ours.display(),
        reference.display(),
        opts.iterations,
        machine.nproc,
        machine.cpu_model,
        machine.loadavg_start
    );
    let t0 = Instant::now();
    let mut scenarios = Vec::new();
    for s in &opts.only {
        if util::interrupted() {
            break;
        }
        let r = s.run(&ctx);
        eprintln!(
            "cni-bench: {} done in {:.1} s{}",
            r.name,
            r.seconds,
            r.error
                .as_ref()
                .map(|e| format!(" — ERROR: {e}"))
                .unwrap_or_default()
        );
        scenarios.push(r);
    }
    let report = Report {
        tool: "cni-bench",
        machine,
        ours_commit: util::git_commit(&ours),
        ours_dir: ours,
        reference_package: util::package_version(&reference),
        reference_dir: reference,
        iterations: opts.iterations,
        plan,
        scenarios,
        loadavg_end: util::loadavg(),
        total_seconds: t0.elapsed().as_secs_f64(),
    };
    print!("{}", report.table());
    if let Some(path) = &opts.json {
        report.write_json(path)?;
        eprintln!("cni-bench: JSON written to {}", path.display());
    }
    Ok(if util::interrupted() {
        130
    } else if report.had_errors() {
        1
    } else {
        0
    })
}
