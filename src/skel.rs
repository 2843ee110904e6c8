//! The plugin skeleton (Go `pkg/skel`): reads the CNI environment and
//! stdin, validates them, calls the plugin, and prints exactly one JSON
//! document on stdout: the result (ADD), the version reply (VERSION), an
//! error object (exit 1), or nothing.
//!
//! [`dispatch`] does the work with injectable env/stdin/stdout/stderr so it
//! is unit-testable; [`run`] wires it to the real process.

use crate::args::CniArgs;
use crate::error::{codes, CniError, Result};
use crate::spec::{
    casefold_from_value, check_version, version_at_least, version_reply, CniResult, NetConf,
    CURRENT_VERSION, SUPPORTED_VERSIONS,
};
use serde::Deserialize;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;

/// Largest stdin accepted: generous for big prevResults, small enough that
/// a runaway writer cannot exhaust memory.
pub const MAX_STDIN: u64 = 16 * 1024 * 1024;

/// Linux IFNAMSIZ minus the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

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

/// A CNI plugin: one method per verb. Return a [`CniError`] with the spec
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
}

/// One still-valid attachment sent with GC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID", default)]
    pub container_id: String,
    #[serde(default)]
    pub ifname: String,
}

/// The GC key (spec, after cni#1101) and the older name libcni also sends.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The pre-rename GC key, still sent by libcni.
pub const LEGACY_ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// The GC attachment list: `cni.dev/valid-attachments`, else the legacy
/// `cni.dev/attachments`. `Ok(None)` when neither key is present (or both
/// are null): the runtime passed no list, so a plugin must not treat that
/// as "nothing is valid". A value that is not a list of
/// `{"containerID","ifname"}` objects is code 6.
pub fn valid_attachments(conf: &NetConf) -> Result<Option<Vec<Attachment>>> {
    let found = [VALID_ATTACHMENTS_KEY, LEGACY_ATTACHMENTS_KEY]
        .into_iter()
        .find_map(|k| conf.raw.get(k).filter(|v| !v.is_null()).map(|v| (k, v)));
    let Some((key, v)) = found else {
        return Ok(None);
    };
    casefold_from_value::<Vec<Attachment>>(v.clone())
        .map(Some)
        .map_err(|e| CniError::new(codes::DECODE, format!("invalid {key:?}: {e}")))
}

/// Validates `CNI_CONTAINERID` (Go `ValidateContainerID`): code 3 when
/// empty, code 4 for characters outside `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`
/// (so it can never contain `/` or be `..`).
pub fn validate_container_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(CniError::new(
            codes::UNKNOWN_CONTAINER,
            "missing containerID",
        ));
    }
    if !crate::spec::is_valid_id(id) {
        return Err(
            CniError::new(codes::INVALID_ENV, "invalid characters in containerID").with_details(id),
        );
    }
    Ok(())
}

/// Validates `CNI_IFNAME` (Go `ValidateInterfaceName`): non-empty, at most
/// 15 bytes, not `.`/`..`, no `/`, `:` or whitespace; code 4 otherwise.
pub fn validate_ifname(name: &str) -> Result<()> {
    let err = |msg: &str| Err(CniError::new(codes::INVALID_ENV, msg).with_details(name));
    if name.is_empty() {
        return err("interface name is empty");
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(
            CniError::new(codes::INVALID_ENV, "interface name is too long").with_details(format!(
                "interface name should be less than {} characters",
                MAX_IFNAME_LEN + 1
            )),
        );
    }
    if name == "." || name == ".." {
        return err("interface name is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return err("interface name contains / or : or whitespace characters");
    }
    Ok(())
}

/// `--version` text: `<name> <crate version> (cni-rs)` and the versions.
pub fn version_text(name: &str) -> String {
    format!(
        "{name} {} (cni-rs)\nCNI protocol versions supported: {}\n",
        env!("CARGO_PKG_VERSION"),
        SUPPORTED_VERSIONS.join(", ")
    )
}

/// What Go's skel prints on stderr when `CNI_COMMAND` is unset.
pub fn about_text(name: &str) -> String {
    format!(
        "CNI {name} plugin v{} (cni-rs)\nCNI protocol versions supported: {}\n",
        env!("CARGO_PKG_VERSION"),
        SUPPORTED_VERSIONS.join(", ")
    )
}

/// `--help` text: how a runtime calls the plugin.
pub fn help_text(name: &str) -> String {
    format!(
        "{name} {ver} (cni-rs): a CNI plugin, normally run by a container runtime.\n\
         \n\
         Usage: {name} [--version | --help]\n\
         \n\
         A runtime sets these environment variables and writes the network\n\
         configuration (JSON) on stdin; the result or error (JSON) is printed on stdout:\n\
         \x20 CNI_COMMAND      ADD, DEL, CHECK, GC, STATUS or VERSION\n\
         \x20 CNI_CONTAINERID  container id (ADD, DEL, CHECK)\n\
         \x20 CNI_NETNS        path of the container network namespace (ADD, CHECK; optional for DEL)\n\
         \x20 CNI_IFNAME       interface name in the container (ADD, DEL, CHECK)\n\
         \x20 CNI_ARGS         optional K=V;K=V arguments\n\
         \x20 CNI_PATH         ':'-separated directories holding CNI plugins\n\
         \x20 CNI_RS_LOG       optional debug log file (appended to)\n\
         \n\
         CNI protocol versions supported: {versions}\n",
        ver = env!("CARGO_PKG_VERSION"),
        versions = SUPPORTED_VERSIONS.join(", ")
    )
}

/// The config version of the command in flight, for the panic hook.
static ERROR_VERSION: Mutex<Option<String>> = Mutex::new(None);

fn set_error_version(v: &str) {
    if let Ok(mut g) = ERROR_VERSION.lock() {
        *g = Some(v.to_string());
    }
}

/// Pretty-prints a JSON value like Go's `prettyPrint` (4-space indent).
fn pretty(v: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a Value into a Vec cannot fail.
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads stdin up to [`MAX_STDIN`]: code 5 on read failure or overflow.
fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    stdin
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(codes::IO, format!("error reading from stdin: {e}")))?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(CniError::new(
            codes::IO,
            format!("network config on stdin exceeds {MAX_STDIN} bytes"),
        ));
    }
    Ok(buf)
}

/// Fails with code 8 when `netns` is the namespace this process runs in
/// (configuring it would change the host). Unreadable paths are left to
/// the plugin, which reports its own "failed to open netns" error.
fn check_not_own_netns(netns: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(target), Ok(own)) = (
        std::fs::metadata(netns),
        std::fs::metadata("/proc/thread-self/ns/net"),
    ) else {
        return Ok(());
    };
    if target.dev() == own.dev() && target.ino() == own.ino() {
        return Err(CniError::new(
            codes::INVALID_NETNS,
            format!(
                "CNI_NETNS {:?} is the plugin's own network namespace",
                netns
            ),
        )
        .with_details("set CNI_NETNS_OVERRIDE=1 only in tests"));
    }
    Ok(())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// The successful output of one command: text for stdout, if any.
type Output = Option<String>;

fn execute<P: Plugin>(
    p: &P,
    command: &str,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    error_version: &mut String,
) -> Result<Output> {
    let get = |k: &str| env(k).unwrap_or_default();
    let cmd = Command::parse(command).ok_or_else(|| {
        CniError::new(
            codes::INVALID_ENV,
            format!("unknown CNI_COMMAND: {command}"),
        )
    })?;
    if cmd == Command::Version {
        // Ignores every other variable and stdin (podman sends dummies).
        return Ok(Some(format!("{}\n", version_reply())));
    }
    let missing: Vec<&str> = cmd
        .required_env()
        .iter()
        .copied()
        .filter(|k| get(k).is_empty())
        .collect();
    if !missing.is_empty() {
        return Err(CniError::new(
            codes::INVALID_ENV,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }
    let stdin = read_stdin(stdin)?;
    let conf = NetConf::parse(&stdin)?;
    if SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        *error_version = conf.cni_version.clone();
        set_error_version(&conf.cni_version);
    }
    let container_id = get("CNI_CONTAINERID");
    let ifname = get("CNI_IFNAME");
    if matches!(cmd, Command::Add | Command::Del | Command::Check) {
        validate_container_id(&container_id)?;
        validate_ifname(&ifname)?;
    }
    check_version(&conf.cni_version)?;
    if let Some(min) = cmd.min_version() {
        if !version_at_least(&conf.cni_version, min) {
            return Err(CniError::new(
                codes::INCOMPATIBLE_VERSION,
                format!("config version does not allow {cmd}"),
            )
            .with_details(format!(
                "config is {:?}, {cmd} needs {min:?} or later",
                conf.cni_version
            )));
        }
    }
    let netns = Some(get("CNI_NETNS"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let override_ns = matches!(
        get("CNI_NETNS_OVERRIDE").to_ascii_lowercase().as_str(),
        "1" | "true"
    );
    if let (Some(ns), false) = (&netns, override_ns) {
        if matches!(cmd, Command::Add | Command::Del | Command::Check) {
            check_not_own_netns(ns)?;
        }
    }
    let args = CniArgs::parse(&get("CNI_ARGS"))?;
    let path = get("CNI_PATH")
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    let a = CmdArgs {
        command: cmd,
        container_id,
        netns,
        ifname,
        args,
        path,
        stdin,
        conf,
    };
    crate::cni_debug!(
        "{} {cmd} container={} ifname={} netns={:?} version={}",
        p.name(),
        a.container_id,
        a.ifname,
        a.netns,
        a.conf.cni_version
    );
    let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Output> {
        match cmd {
            Command::Add => {
                let r = p.add(&a)?;
                Ok(Some(format!(
                    "{}\n",
                    r.to_string_version(&a.conf.cni_version)?
                )))
            }
            Command::Del => p.del(&a).map(|()| None),
            Command::Check => p.check(&a).map(|()| None),
            Command::Gc => p.gc(&a).map(|()| None),
            Command::Status => p.status(&a).map(|()| None),
            Command::Version => Ok(Some(format!("{}\n", version_reply()))),
        }
    }));
    match call {
        Ok(r) => r,
        Err(payload) => Err(CniError::internal(format!(
            "plugin panicked: {}",
            panic_message(payload.as_ref())
        ))),
    }
}

/// Runs one CNI command with the given environment and streams; returns
/// the process exit code (0 success, 1 CNI error). With `CNI_COMMAND`
/// unset or empty it prints the Go-style "about" text on stderr and
/// returns 0 without reading stdin. Panics inside the plugin become a
/// code-999 error (when built with `panic = "unwind"`).
pub fn dispatch<P: Plugin>(
    p: &P,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let command = env("CNI_COMMAND").unwrap_or_default();
    if command.is_empty() {
        let _ = stderr.write_all(about_text(p.name()).as_bytes());
        return 0;
    }
    let mut error_version = CURRENT_VERSION.to_string();
    match execute(p, &command, env, stdin, &mut error_version) {
        Ok(out) => {
            if let Some(text) = out {
                if let Err(e) = stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                {
                    let _ = writeln!(stderr, "{}: failed to write result: {e}", p.name());
                    return 1;
                }
            }
            0
        }
        Err(e) => {
            crate::cni_debug!("{} {command} failed: code {} {}", p.name(), e.code(), e);
            let text = format!("{}\n", pretty(&e.to_json(&error_version)));
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            1
        }
    }
}

/// With `panic = "abort"` unwinding is impossible, so the hook itself
/// prints the error JSON and exits 1; otherwise it only logs, and
/// [`dispatch`] turns the caught panic into the error JSON.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        crate::cni_debug!("panic: {info}");
        default(info);
        if cfg!(panic = "abort") {
            let version = ERROR_VERSION
                .try_lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_else(|| CURRENT_VERSION.to_string());
            let e = CniError::internal(format!("plugin panicked: {info}"));
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", pretty(&e.to_json(&version)));
            let _ = out.flush();
            std::process::exit(1);
        }
    }));
}

/// The plugin's `main`: handles `--version`/`--help`, refuses to block on
/// a terminal, then runs [`dispatch`] on the real process environment and
/// exits with its code.
pub fn run<P: Plugin>(p: &P) -> ! {
    install_panic_hook();
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command.is_empty() {
        let arg = std::env::args().nth(1).unwrap_or_default();
        match arg.as_str() {
            "--version" | "-V" => {
                print!("{}", version_text(p.name()));
                std::process::exit(0);
            }
            "--help" | "-h" => {
                print!("{}", help_text(p.name()));
                std::process::exit(0);
            }
            _ => {}
        }
        if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            eprint!("{}", help_text(p.name()));
            std::process::exit(0);
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    let code = dispatch(
        p,
        &env,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code)
}
