//! Running a delegated plugin (IPAM) the way Go's `pkg/invoke` does: find
//! it on `CNI_PATH`, run it with our environment but another
//! `CNI_COMMAND`, feed it the same stdin, forward its stderr, and parse its
//! result or error.

use crate::error::{codes, CniError, Result};
use crate::skel::{CmdArgs, Command};
use crate::spec::CniResult;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

/// How often a spawn failing with "text file busy" is tried (libcni).
const ETXTBSY_ATTEMPTS: usize = 5;
/// Pause between those attempts (libcni sleeps 1 s).
const ETXTBSY_PAUSE: Duration = Duration::from_secs(1);

/// Finds plugin `name` in the `cni_path` directories, in order (Go
/// `FindInPath`). Only regular files with an execute bit count.
/// Errors (code 7): empty name, a name containing `/`, no directories,
/// or not found: `failed to find plugin "x" in path [/a /b]`.
pub fn find_plugin(name: &str, cni_path: &[PathBuf]) -> Result<PathBuf> {
    if name.is_empty() {
        return Err(CniError::new(
            codes::INVALID_CONFIG,
            "no plugin name provided",
        ));
    }
    if name.contains('/') {
        return Err(CniError::new(
            codes::INVALID_CONFIG,
            format!("invalid plugin name: {name}"),
        ));
    }
    if cni_path.is_empty() {
        return Err(CniError::new(codes::INVALID_CONFIG, "no paths provided"));
    }
    for dir in cni_path {
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    let dirs = cni_path
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    Err(CniError::new(
        codes::INVALID_CONFIG,
        format!("failed to find plugin {name:?} in path [{dirs}]"),
    ))
}

/// What a finished delegate printed.
struct ChildOutput {
    stdout: Vec<u8>,
}

/// The environment overrides for the child: `CNI_COMMAND` plus the CNI
/// variables from `a` (identical to ours when called from [`crate::skel::run`];
/// explicit so delegation also works when `a` came from an injected env).
fn cni_env(command: Command, a: &CmdArgs) -> Vec<(&'static str, String)> {
    let mut env = vec![("CNI_COMMAND", command.as_str().to_string())];
    if !a.container_id.is_empty() {
        env.push(("CNI_CONTAINERID", a.container_id.clone()));
    }
    if let Some(ns) = &a.netns {
        env.push(("CNI_NETNS", ns.display().to_string()));
    }
    if !a.ifname.is_empty() {
        env.push(("CNI_IFNAME", a.ifname.clone()));
    }
    if !a.args.as_str().is_empty() {
        env.push(("CNI_ARGS", a.args.as_str().to_string()));
    }
    if !a.path.is_empty() {
        let joined = std::env::join_paths(&a.path)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        env.push(("CNI_PATH", joined));
    }
    env
}

/// Spawns `bin`, retrying while the binary is still being written.
fn spawn(bin: &Path, env: &[(&'static str, String)]) -> Result<std::process::Child> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = Process::new(bin)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match r {
            Ok(child) => return Ok(child),
            Err(e)
                if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < ETXTBSY_ATTEMPTS =>
            {
                std::thread::sleep(ETXTBSY_PAUSE);
            }
            Err(e) => {
                return Err(CniError::new(
                    codes::IO,
                    format!("failed to execute plugin {}: {e}", bin.display()),
                ))
            }
        }
    }
}

/// Runs the delegate and maps a failure to the child's own CNI error.
fn exec(plugin_type: &str, command: Command, a: &CmdArgs) -> Result<ChildOutput> {
    let bin = find_plugin(plugin_type, &a.path)?;
    crate::cni_debug!("delegate {command} to {}", bin.display());
    let mut child = spawn(&bin, &cni_env(command, a))?;
    // Feed stdin from a thread so a child that writes a lot before reading
    // cannot deadlock us on full pipes.
    let mut pipe = child
        .stdin
        .take()
        .ok_or_else(|| CniError::internal("delegate stdin not captured"))?;
    let input = a.stdin.clone();
    let writer = std::thread::spawn(move || {
        // A child that exits without reading stdin causes EPIPE: harmless.
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().map_err(|e| {
        CniError::new(
            codes::IO,
            format!("failed to wait for plugin {}: {e}", bin.display()),
        )
    })?;
    let _ = writer.join();
    // Forward the child's diagnostics to our stderr (never our stdout).
    if !out.stderr.is_empty() {
        let _ = std::io::stderr().write_all(&out.stderr);
    }
    if out.status.success() {
        return Ok(ChildOutput { stdout: out.stdout });
    }
    if let Some(sig) = out.status.signal() {
        return Err(CniError::internal(format!(
            "plugin {} was killed by signal {sig}",
            bin.display()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Err(CniError::internal(format!(
            "netplugin failed: {:?}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        Ok(v) => Err(CniError::from_json(&v).unwrap_or_else(|| {
            CniError::internal(format!(
                "netplugin failed but error parsing its diagnostic message {:?}: no error code",
                text.trim()
            ))
        })),
        Err(e) => Err(CniError::internal(format!(
            "netplugin failed but error parsing its diagnostic message {:?}: {e}",
            text.trim()
        ))),
    }
}

/// Delegated ADD: returns the child's result in the internal model (a
/// missing `cniVersion` in it means the config's, as libcni does).
pub fn add(plugin_type: &str, a: &CmdArgs) -> Result<CniResult> {
    let out = exec(plugin_type, Command::Add, a)?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        CniError::new(
            codes::DECODE,
            format!("failed to decode result of plugin {plugin_type:?}: {e}"),
        )
    })?;
    CniResult::from_json_any(&v, &a.conf.cni_version)
        .map_err(|e| e.context(format!("result of plugin {plugin_type:?}")))
}

/// Delegated DEL.
pub fn del(plugin_type: &str, a: &CmdArgs) -> Result<()> {
    exec(plugin_type, Command::Del, a).map(drop)
}

/// Delegated CHECK.
pub fn check(plugin_type: &str, a: &CmdArgs) -> Result<()> {
    exec(plugin_type, Command::Check, a).map(drop)
}

/// Delegated GC.
pub fn gc(plugin_type: &str, a: &CmdArgs) -> Result<()> {
    exec(plugin_type, Command::Gc, a).map(drop)
}

/// Delegated STATUS.
pub fn status(plugin_type: &str, a: &CmdArgs) -> Result<()> {
    exec(plugin_type, Command::Status, a).map(drop)
}
