//! Running one plugin binary the way libcni's `invoke` package does: the
//! runtime's own environment plus the `CNI_*` variables, the request config on
//! stdin, the result (or a CNI error object) on stdout, retries on
//! "text file busy" while a binary is being replaced (cni#763, cni#1183).

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::error::{Result, RuntimeError};

/// libcni retries an exec this often on ETXTBSY, sleeping 1 s between tries.
const TEXT_BUSY_RETRIES: usize = 5;

/// The `CNI_*` environment of one invocation (libcni `invoke.Args`).
#[derive(Clone, Debug, Default)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_ARGS`, already joined as `K=V;K=V`.
    pub args: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// Finds `name` in the directories of `path` (Go `invoke.FindInPath`).
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf> {
    let not_found = || RuntimeError::PluginNotFound {
        plugin: name.to_string(),
        path: path.to_vec(),
    };
    if name.is_empty() || name.contains('/') {
        return Err(not_found());
    }
    path.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(not_found)
}

/// Executes plugins found on `cni_path`, optionally inside another network
/// namespace (the harness runs them inside a node netns, as a kubelet on
/// that node would).
#[derive(Clone, Debug)]
pub struct PluginExec {
    /// Directories searched for plugins; also passed as `CNI_PATH`.
    pub cni_path: Vec<PathBuf>,
    /// Network namespace to run plugins in (`None`: the caller's thread netns).
    pub netns: Option<PathBuf>,
}

impl PluginExec {
    /// Runs `plugin_type` with `stdin`; returns stdout on success.
    pub fn run(&self, plugin_type: &str, stdin: &[u8], env: &CniEnv) -> Result<Vec<u8>> {
        let binary = find_plugin(plugin_type, &self.cni_path)?;
        let output = self.spawn_with_retry(&binary, stdin, env)?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            if !stderr.trim().is_empty() {
                eprint!("{stderr}");
            }
            return Ok(output.stdout);
        }
        Err(plugin_error(plugin_type, &env.command, &output, stderr))
    }

    fn command(&self, binary: &Path, env: &CniEnv) -> Result<Command> {
        let mut cmd = Command::new(binary);
        let path = std::env::join_paths(&self.cni_path).map_err(|e| RuntimeError::Exec {
            binary: binary.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        cmd.env("CNI_COMMAND", &env.command)
            .env("CNI_CONTAINERID", &env.container_id)
            .env("CNI_NETNS", &env.netns)
            .env("CNI_ARGS", &env.args)
            .env("CNI_IFNAME", &env.ifname)
            .env("CNI_PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = &self.netns {
            let fd = File::open(ns).map_err(|source| RuntimeError::Exec {
                binary: ns.clone(),
                source,
            })?;
            // SAFETY: only setns(2) runs between fork and exec; it is
            // async-signal-safe and touches no allocator or lock.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)
                });
            }
        }
        Ok(cmd)
    }

    fn spawn_with_retry(
        &self,
        binary: &Path,
        stdin: &[u8],
        env: &CniEnv,
    ) -> Result<std::process::Output> {
        let exec_err = |source| RuntimeError::Exec {
            binary: binary.to_path_buf(),
            source,
        };
        let mut attempt = 0;
        let mut child = loop {
            match self.command(binary, env)?.spawn() {
                Ok(child) => break child,
                Err(e)
                    if e.raw_os_error() == Some(nix::libc::ETXTBSY)
                        && attempt + 1 < TEXT_BUSY_RETRIES =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(exec_err(e)),
            }
        };
        let mut pipe = child.stdin.take();
        let input = stdin.to_vec();
        // Feed stdin from a thread so a plugin that writes before reading
        // cannot deadlock against us.
        let writer = std::thread::spawn(move || {
            if let Some(p) = pipe.as_mut() {
                let _ = p.write_all(&input);
            }
        });
        let output = child.wait_with_output().map_err(exec_err)?;
        let _ = writer.join();
        Ok(output)
    }
}

/// Turns a failed run into a typed error, as libcni's `pluginErr` does.
fn plugin_error(
    plugin: &str,
    command: &str,
    output: &std::process::Output,
    stderr: String,
) -> RuntimeError {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&output.stdout) {
        if let Some(code) = obj.get("code").and_then(Value::as_u64) {
            let text = |k: &str| {
                obj.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            return RuntimeError::Plugin {
                plugin: plugin.to_string(),
                command: command.to_string(),
                code: u32::try_from(code).unwrap_or(u32::MAX),
                msg: text("msg"),
                details: text("details"),
            };
        }
    }
    RuntimeError::PluginFailed {
        plugin: plugin.to_string(),
        command: command.to_string(),
        status: output.status.to_string(),
        stdout,
        stderr,
    }
}
