//! The plugin skeleton (Go `pkg/skel`): reads the CNI environment and
//! stdin, validates them, calls the plugin, and prints exactly one JSON
//! document on stdout: the result (ADD), the version reply (VERSION), an
//! error object (exit 1), or nothing.
//!
//! - this file: the verbs ([`Command`]), what a plugin gets ([`CmdArgs`])
//!   and implements ([`Plugin`]);
//! - [`dispatch`](dispatch()): one command with injectable env and streams
//!   (unit-testable);
//! - `env`: validation of the environment, stdin and the GC attachment list;
//! - `entry`: [`plugin_main!`](crate::plugin_main) and [`run_with_arg`],
//!   which wire dispatch to the real process;
//! - `process`: the one-document gate, the panic hook and `SIGPIPE`;
//! - `race`: the test-only hook points of the answer-vs-panic race
//!   (feature `test-hooks`);
//! - `help`: `--version`, `--help` and "about" texts.

mod dispatch;
mod entry;
mod env;
mod help;
mod process;
mod race;
#[cfg(test)]
mod tests;

use crate::args::CniArgs;
use crate::error::Result;
use crate::spec::{CniResult, NetConf};
use std::path::PathBuf;

pub use dispatch::dispatch;
pub use entry::{c_arg, run_with_arg};
pub use env::{
    valid_attachments, validate_container_id, validate_ifname, Attachment, LEGACY_ATTACHMENTS_KEY,
    MAX_STDIN, VALID_ATTACHMENTS_KEY,
};
pub use help::{about_text, help_text, version_text};

/// A CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND` (exact upper-case spelling, as Go does).
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// The `CNI_COMMAND` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// Env vars the Go skel requires for this verb (beyond `CNI_COMMAND`).
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc | Command::Status => &["CNI_PATH"],
            Command::Version => &[],
        }
    }

    /// The lowest config version that allows this verb.
    fn min_version(self) -> Option<&'static str> {
        match self {
            Command::Check => Some("0.4.0"),
            Command::Gc | Command::Status => Some("1.1.0"),
            _ => None,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a plugin gets for one invocation.
#[derive(Debug, Clone)]
pub struct CmdArgs {
    pub command: Command,
    /// `CNI_CONTAINERID` (validated for ADD/DEL/CHECK; may be empty for GC/STATUS).
    pub container_id: String,
    /// `CNI_NETNS`; `None` when unset or empty (DEL after the netns is gone).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (validated for ADD/DEL/CHECK; may be empty for GC/STATUS).
    pub ifname: String,
    /// Parsed `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH` split on `:` (empty entries dropped).
    pub path: Vec<PathBuf>,
    /// The raw stdin bytes (passed unchanged to delegates).
    pub stdin: Vec<u8>,
    /// The parsed config.
    pub conf: NetConf,
}

/// A CNI plugin: one method per verb. Return a [`CniError`](crate::error::CniError) with the spec
/// code; the skeleton prints it. VERSION is answered by the skeleton.
pub trait Plugin {
    /// Short plugin name, e.g. "bridge", used in `--version` and help.
    fn name(&self) -> &'static str;
    /// ADD: the result is printed in `a.conf.cni_version`.
    fn add(&self, a: &CmdArgs) -> Result<CniResult>;
    /// DEL: must succeed when the resources are already gone.
    fn del(&self, a: &CmdArgs) -> Result<()>;
    /// CHECK (config version ≥ 0.4.0, enforced by the skeleton).
    fn check(&self, a: &CmdArgs) -> Result<()>;
    /// GC (≥ 1.1.0): release everything not in [`valid_attachments`].
    fn gc(&self, a: &CmdArgs) -> Result<()>;
    /// STATUS (≥ 1.1.0): Ok when ADD could be serviced, else code 50/51.
    fn status(&self, a: &CmdArgs) -> Result<()>;
    /// ADD's stdout document: by default [`Plugin::add`]'s result printed
    /// in the config's version. Overridden only by a plugin whose reference
    /// prints something the result model cannot express (loopback keeps
    /// the 1.0.0 shape under older versions).
    fn add_document(&self, a: &CmdArgs) -> Result<String> {
        let r = self.add(a)?;
        Ok(format!("{}\n", r.to_string_version(&a.conf.cni_version)?))
    }
    /// Whether the plugin changes anything inside `CNI_NETNS`. Only then is
    /// a `CNI_NETNS` naming the plugin's own namespace refused (code 8);
    /// an IPAM plugin never enters the netns and skips the two `/proc`
    /// lookups of that check.
    fn configures_netns(&self) -> bool {
        true
    }
}
