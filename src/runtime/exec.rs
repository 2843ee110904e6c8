//! Running one plugin binary as libcni does, through the shared invoker
//! ([`crate::invoke`]): the runtime's own environment plus all six `CNI_*`
//! variables, the request config on stdin, the result (or a CNI error
//! object) on stdout.

use std::path::PathBuf;

pub use crate::invoke::CniEnv;
use crate::invoke::{find_in_path, Answer, ExecError, Invocation};

use super::error::{Result, RuntimeError};

/// Finds `name` in the directories of `path` (Go `invoke.FindInPath`).
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf> {
    find_in_path(name, path).map_err(|_| RuntimeError::PluginNotFound {
        plugin: name.to_string(),
        path: path.to_vec(),
    })
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
        let vars = env.vars(&self.cni_path);
        let output = Invocation {
            binary: &binary,
            env: &vars,
            stdin,
            netns: self.netns.as_deref(),
        }
        .run()
        .map_err(|e| match e {
            ExecError::Netns { path, source } => RuntimeError::Exec {
                binary: path,
                source,
            },
            ExecError::Spawn { binary, source } | ExecError::Wait { binary, source } => {
                RuntimeError::Exec { binary, source }
            }
        })?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            if !stderr.trim().is_empty() {
                eprint!("{stderr}");
            }
            return Ok(output.stdout);
        }
        Err(plugin_error(plugin_type, &env.command, &output, stderr))
    }
}

/// Turns a failed run into a typed error, as libcni's `pluginErr` does.
fn plugin_error(
    plugin: &str,
    command: &str,
    output: &std::process::Output,
    stderr: String,
) -> RuntimeError {
    if let Answer::Refused(e) = Answer::of(output) {
        return RuntimeError::Plugin {
            plugin: plugin.to_string(),
            command: command.to_string(),
            code: e.code(),
            msg: e.msg().to_string(),
            details: e.details().to_string(),
        };
    }
    RuntimeError::PluginFailed {
        plugin: plugin.to_string(),
        command: command.to_string(),
        status: output.status.to_string(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    }
}
