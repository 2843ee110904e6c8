//! One plugin execution, timed from spawn to reap, with the CPU time of the
//! child and the children it waited for (host-local, iptables, ...) from
//! `wait4`. (Its `ru_maxrss` is not usable here: see `rssprobe`.)

use crate::error::{BenchError, Result};
use crate::util;
use cni::invoke::CniEnv;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The PATH plugins get (they exec iptables/nft/host-local by name).
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A CNI invocation: environment and stdin.
#[derive(Debug, Clone)]
pub struct Call {
    pub command: &'static str,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub cni_path: PathBuf,
    pub stdin: Vec<u8>,
    /// A wrapper command the plugin runs under (e.g. `/usr/bin/time`).
    pub wrap: Vec<String>,
}

impl Call {
    pub fn new(command: &'static str, container_id: &str, netns: &Path, cni_path: &Path) -> Call {
        Call {
            command,
            container_id: container_id.to_string(),
            netns: Some(netns.to_path_buf()),
            ifname: "eth0".to_string(),
            cni_path: cni_path.to_path_buf(),
            stdin: Vec::new(),
            wrap: Vec::new(),
        }
    }

    pub fn stdin(mut self, v: &serde_json::Value) -> Call {
        self.stdin = v.to_string().into_bytes();
        self
    }
}

/// What one execution produced and cost.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Wall time from just before spawn to just after reaping, in ms.
    pub elapsed_ms: f64,
    /// Exit code, or minus the signal number.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// User + system CPU time of the same tree, ms. Only the sum is exact:
    /// the kernel splits it by tick sampling, useless for ms-long processes.
    pub cpu_ms: f64,
}

impl Outcome {
    /// Fails unless the plugin exited 0.
    pub fn ok(self, side: &str, what: &str) -> Result<Outcome> {
        if self.code == 0 {
            Ok(self)
        } else {
            Err(BenchError::Plugin {
                side: side.into(),
                what: what.into(),
                code: self.code,
                stdout: self.stdout.trim().to_string(),
                stderr: if self.stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(" / stderr: {}", self.stderr.trim())
                },
            })
        }
    }

    /// stdout as JSON.
    pub fn json(&self, side: &str, what: &str) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).map_err(|e| BenchError::Output {
            side: side.into(),
            what: what.into(),
            detail: format!("{e}: {:?}", self.stdout),
        })
    }
}

fn tv_ms(tv: nix::libc::timeval) -> f64 {
    tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3
}

/// Runs `bin` with a clean environment (PATH + the `CNI_*` variables, as
/// the shared invoker sets them) and `call.stdin`. Not through
/// [`cni::invoke::Invocation`]: the child is reaped with `wait4` for its
/// CPU time.
/// Only spawn → wait is timed; the caller builds configs beforehand.
pub fn exec(bin: &Path, call: &Call) -> Result<Outcome> {
    if util::interrupted() {
        return Err(BenchError::Interrupted);
    }
    let mut cmd = match call.wrap.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let cni_env = CniEnv {
        command: call.command.to_string(),
        container_id: call.container_id.clone(),
        netns: call
            .netns
            .as_ref()
            .map(|ns| ns.display().to_string())
            .unwrap_or_default(),
        args: String::new(),
        ifname: call.ifname.clone(),
    };
    cmd.env_clear()
        .env("PATH", PLUGIN_PATH)
        .envs(cni_env.vars(std::slice::from_ref(&call.cni_path)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |e| BenchError::Spawn {
        path: bin.to_path_buf(),
        source: e,
    };
    let t0 = Instant::now();
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let pid = child.id() as nix::libc::pid_t;
    // Plugins read all of stdin before writing anything, and configs are far
    // below the pipe buffer, so writing then reading cannot deadlock; a
    // plugin that dies early gives EPIPE, which its exit code reports.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&call.stdin);
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout)
            .map_err(|e| BenchError::io(bin, e))?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr)
            .map_err(|e| BenchError::io(bin, e))?;
    }
    let mut status: nix::libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 only writes
    // through the two pointers, which point at live locals.
    let mut ru: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: see above; `pid` is our own unreaped child (std's Child
        // never waits for it because we never call wait on it).
        let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    if reaped != pid {
        return Err(BenchError::io(bin, std::io::Error::last_os_error()));
    }
    let code = if nix::libc::WIFEXITED(status) {
        nix::libc::WEXITSTATUS(status)
    } else if nix::libc::WIFSIGNALED(status) {
        -nix::libc::WTERMSIG(status)
    } else {
        -1
    };
    Ok(Outcome {
        elapsed_ms,
        code,
        stdout,
        stderr,
        cpu_ms: tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime),
    })
}
