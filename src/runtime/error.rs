//! Errors of the runtime side of CNI (what libcni reports to containerd/CRI-O).

use std::path::PathBuf;

/// Everything that can go wrong while loading configs or driving plugins.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The config dir holds no loadable network configuration.
    #[error("no valid CNI network configuration in {dir}{}", describe_rejects(.rejected))]
    NoConfig {
        /// The directory that was searched.
        dir: PathBuf,
        /// Files that were considered and why each was rejected.
        rejected: Vec<(PathBuf, String)>,
    },
    /// A single config file could not be read or parsed.
    #[error("invalid CNI config {}: {reason}", .path.display())]
    InvalidConfig {
        /// The offending file (or `<bytes>` for in-memory input).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin binary is not on `CNI_PATH`.
    #[error("failed to find plugin {plugin:?} in path {path:?}")]
    PluginNotFound {
        /// Plugin `type`.
        plugin: String,
        /// The searched directories.
        path: Vec<PathBuf>,
    },
    /// The plugin ran and returned a CNI error object.
    #[error("plugin type={plugin:?} failed ({command}): [code {code}] {msg}{}", details_suffix(.details))]
    Plugin {
        /// Plugin `type`.
        plugin: String,
        /// CNI verb.
        command: String,
        /// CNI error code from the plugin.
        code: u32,
        /// Error message from the plugin.
        msg: String,
        /// Error details from the plugin (may be empty).
        details: String,
    },
    /// The plugin failed without a parseable CNI error on stdout.
    #[error("plugin type={plugin:?} failed ({command}): netplugin failed: {stderr:?} (stdout {stdout:?}, {status})")]
    PluginFailed {
        /// Plugin `type`.
        plugin: String,
        /// CNI verb.
        command: String,
        /// Exit status text.
        status: String,
        /// Whatever the plugin wrote to stdout.
        stdout: String,
        /// Whatever the plugin wrote to stderr.
        stderr: String,
    },
    /// The plugin succeeded but its output is not a usable result.
    #[error("plugin type={plugin:?} ({command}) printed an unusable result: {reason}")]
    BadResult {
        /// Plugin `type`.
        plugin: String,
        /// CNI verb.
        command: String,
        /// Why the output was rejected.
        reason: String,
    },
    /// Spawning or talking to the plugin failed.
    #[error("exec plugin {}: {source}", .binary.display())]
    Exec {
        /// The binary being run.
        binary: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A runtime argument (container id, ifname, network name) is invalid.
    #[error("invalid runtime argument: {0}")]
    InvalidArgument(String),
    /// The verb is not supported by the config's `cniVersion`.
    #[error("configuration version {version:?} does not support the {command} command")]
    Unsupported {
        /// The config's `cniVersion`.
        version: String,
        /// The verb.
        command: String,
    },
    /// A plugin does not speak the network's cniVersion.
    #[error(
        "plugin {plugin:?} does not support config version {version:?} (it supports {supported:?})"
    )]
    VersionMismatch {
        /// Plugin `type`.
        plugin: String,
        /// The network's cniVersion.
        version: String,
        /// What the plugin's VERSION reported.
        supported: Vec<String>,
    },
    /// Reading or writing the result cache failed.
    #[error("result cache {}: {reason}", .path.display())]
    Cache {
        /// Cache file or dir.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Several independent steps failed (GC keeps going and reports all).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Multiple(Vec<RuntimeError>),
}

impl RuntimeError {
    /// The CNI error code when a plugin reported one.
    pub fn plugin_code(&self) -> Option<u32> {
        match self {
            RuntimeError::Plugin { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn describe_rejects(rejected: &[(PathBuf, String)]) -> String {
    if rejected.is_empty() {
        return " (no *.conf, *.conflist or *.json files)".into();
    }
    let parts: Vec<String> = rejected
        .iter()
        .map(|(p, why)| format!("{}: {why}", p.display()))
        .collect();
    format!(" (rejected: {})", parts.join("; "))
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

/// Result alias for the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
