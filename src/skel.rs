//! The plugin skeleton (Go `pkg/skel`): reads the CNI environment and
//! stdin, validates them, calls the plugin, and prints exactly one JSON
//! document on stdout: the result (ADD), the version reply (VERSION), an
//! error object (exit 1), or nothing.
//!
//! [`dispatch`] does the work with injectable env/stdin/stdout/stderr so it
//! is unit-testable; [`run_with_arg`] wires it to the real process.

use crate::args::CniArgs;
use crate::error::{codes, CniError, Result};
use crate::spec::{
    casefold_from_value, check_version, version_at_least, version_reply, CniResult, NetConf,
    CURRENT_VERSION, SUPPORTED_VERSIONS,
};
use serde::Deserialize;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The right to write the process's one stdout document, shared by
/// [`run_with_arg`]'s dispatch and the panic hook.
static STDOUT_DOC: DocGate = DocGate::new();

/// A once-only right to write one document. Whoever claims it first (before
/// writing a byte) writes; the other never does, and waits until the
/// winner's write is finished. Why: a flag set around the write left a
/// window where the answer and a helper thread's panic error were both
/// printed (two documents), or the hook's `exit` cut the answer short.
struct DocGate {
    /// `FREE`, `WRITING` or `DONE`.
    state: AtomicU8,
    /// Kernel thread id of the claimer: the hook must not wait for its own
    /// thread's write.
    writer: AtomicI32,
}

const FREE: u8 = 0;
const WRITING: u8 = 1;
const DONE: u8 = 2;

/// Set first thing by the panic hook: a process in which any thread
/// panicked exits 1, even when dispatch's answer was written first.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// How long a loser waits for the winner's write (a few KB to a pipe).
const WRITE_WAIT: Duration = Duration::from_secs(5);

impl DocGate {
    const fn new() -> DocGate {
        DocGate {
            state: AtomicU8::new(FREE),
            writer: AtomicI32::new(0),
        }
    }

    /// True if the caller got the right to write (exactly one caller does).
    fn claim(&self) -> bool {
        let won = self
            .state
            .compare_exchange(FREE, WRITING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if won {
            self.writer
                .store(nix::unistd::gettid().as_raw(), Ordering::SeqCst);
        }
        won
    }

    /// Marks the claimed write as complete (flushed or failed).
    fn finish(&self) {
        self.state.store(DONE, Ordering::SeqCst);
    }

    /// Waits until the winner's write is complete, at most [`WRITE_WAIT`];
    /// returns at once if the winner is the calling thread (it panicked
    /// mid-write and will never finish).
    fn wait_done(&self) {
        let deadline = Instant::now() + WRITE_WAIT;
        while self.state.load(Ordering::SeqCst) != DONE && Instant::now() < deadline {
            if self.writer.load(Ordering::SeqCst) == nix::unistd::gettid().as_raw() {
                return;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

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
        if p.configures_netns() && matches!(cmd, Command::Add | Command::Del | Command::Check) {
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
            Command::Add => p.add_document(&a).map(Some),
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
/// returns 0 without reading stdin. A panic inside the plugin (on the
/// calling thread, with `panic = "unwind"`) becomes a code-999 error.
pub fn dispatch<P: Plugin>(
    p: &P,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    dispatch_to(p, env, stdin, stdout, stderr, &DocGate::new())
}

/// [`dispatch`], writing its document only if it wins `gate` (the process's
/// [`STDOUT_DOC`] when the panic hook may write too).
fn dispatch_to<P: Plugin>(
    p: &P,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    gate: &DocGate,
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
                if let Err(e) = write_document(gate, env, stdout, &text) {
                    let _ = writeln!(stderr, "{}: failed to write result: {e}", p.name());
                    return 1;
                }
            }
            0
        }
        Err(e) => {
            crate::cni_debug!("{} {command} failed: code {} {}", p.name(), e.code(), e);
            let text = format!("{}\n", pretty(&e.to_json(&error_version)));
            let _ = write_document(gate, env, stdout, &text);
            1
        }
    }
}

/// Writes `text` as the process's one document if `gate` lets us. If the
/// panic hook holds it, its error document is being written and it ends
/// the process: wait for that instead of returning (our `exit(0)` could
/// cut its document short), and report the lost claim if it does not.
fn write_document(
    gate: &DocGate,
    env: &dyn Fn(&str) -> Option<String>,
    stdout: &mut dyn Write,
    text: &str,
) -> std::io::Result<()> {
    let point = race::point(env);
    if point == Some(race::Point::BeforeWrite) {
        race::helper_panic();
        race::wait_for(&race::HOOK_CLAIMED);
    }
    if !gate.claim() {
        gate.wait_done();
        return Err(std::io::Error::other(
            "stdout already taken by the panic hook",
        ));
    }
    let written = if point == Some(race::Point::MidWrite) {
        race::write_in_halves(stdout, text)
    } else {
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
    };
    gate.finish();
    written
}

/// Test-only hook points that take the answer-vs-panic race every time:
/// with `CNI_RS_TEST_CRASH_POINT` (see [`crate::ipam::disk::CRASH_ENV`])
/// set to `helper-panic-before-write`, a helper thread panics and the
/// answer waits until the panic hook has claimed stdout; with
/// `helper-panic-mid-write`, the helper panics after half the answer is
/// out and the second half follows once the hook runs. Unset, nothing
/// happens. Only tests set it (`tests/protocol.rs`).
mod race {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// Set by the panic hook once it holds the right to write.
    pub(super) static HOOK_CLAIMED: AtomicBool = AtomicBool::new(false);

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Point {
        BeforeWrite,
        MidWrite,
    }

    pub(super) fn point(env: &dyn Fn(&str) -> Option<String>) -> Option<Point> {
        match env(crate::ipam::disk::CRASH_ENV)?.as_str() {
            "helper-panic-before-write" => Some(Point::BeforeWrite),
            "helper-panic-mid-write" => Some(Point::MidWrite),
            _ => None,
        }
    }

    pub(super) fn helper_panic() {
        let _ = std::thread::Builder::new()
            .spawn(|| panic!("test: a helper thread panicked while the answer was written"));
    }

    /// Waits (at most 2 s) until `flag` is set.
    pub(super) fn wait_for(flag: &AtomicBool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    /// Half of `text`, a helper's panic, a pause in which the hook runs,
    /// then the other half.
    pub(super) fn write_in_halves(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
        let (first, second) = text.as_bytes().split_at(text.len() / 2);
        out.write_all(first)?;
        out.flush()?;
        helper_panic();
        wait_for(&super::PANICKED);
        std::thread::sleep(Duration::from_millis(20));
        out.write_all(second)?;
        out.flush()
    }
}

/// Makes any panic, on any thread, end the process with exit status 1 and
/// a code-999 error JSON on stdout — unless dispatch already claimed stdout
/// ([`STDOUT_DOC`]): then its document is the only one, and the hook waits
/// for it to be complete before exiting. Done in the hook because the release profile
/// uses `panic = "abort"`, where `catch_unwind` never gets control (and a
/// library cannot reliably tell which strategy the final binary uses).
/// The default hook still prints the panic message on stderr.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        crate::cni_debug!("panic: {info}");
        default(info);
        let version = ERROR_VERSION
            .try_lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_else(|| CURRENT_VERSION.to_string());
        let msg = panic_message(info.payload());
        if !STDOUT_DOC.claim() {
            STDOUT_DOC.wait_done();
            std::process::exit(1);
        }
        race::HOOK_CLAIMED.store(true, Ordering::SeqCst);
        let e = CniError::internal(format!("plugin panicked: {msg}"));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", pretty(&e.to_json(&version)));
        let _ = out.flush();
        STDOUT_DOC.finish();
        std::process::exit(1);
    }));
}

/// A closed pipe must be an `EPIPE` error, not death by signal: a runtime
/// that stopped reading our stdout, or a delegate that exits without
/// reading its stdin. Rust's own `main` set-up does this; the plugins skip
/// that set-up (see [`plugin_main!`](crate::plugin_main)), so it is done here.
fn ignore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code; nothing can race with it
    // this early in a single-threaded process.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

/// Defines the C `main` of a plugin executable, bypassing Rust's runtime
/// set-up. Why: that set-up reads and parses `/proc/self/maps` to locate
/// the main thread's stack guard, installs `SIGSEGV`/`SIGBUS` handlers with
/// an alternate signal stack and polls the standard descriptors — about
/// 5 % of a host-local call's CPU time, for a process that lives for two
/// milliseconds (issue 7). `argv[1]` is taken from C's `argv` (with musl,
/// `std::env::args` is empty without Rust's set-up) and [`run_with_arg`]
/// ignores `SIGPIPE` itself. A stack overflow is then a plain `SIGSEGV`
/// instead of a message.
///
/// Use it in a binary with `#![cfg_attr(not(test), no_main)]`:
/// `cni::plugin_main!(MyPlugin);`
#[macro_export]
macro_rules! plugin_main {
    ($plugin:expr) => {
        #[cfg(not(test))]
        #[no_mangle]
        extern "C" fn main(argc: i32, argv: *const *const ::std::ffi::c_char) -> i32 {
            // SAFETY: the C runtime passes `argc` valid entries in `argv`.
            let first = unsafe { $crate::skel::c_arg(argc, argv, 1) };
            $crate::skel::run_with_arg(&$plugin, first)
        }
        /// The unit-test build of the binary has the test harness's `main`;
        /// this keeps the plugin reachable there (no dead-code noise).
        #[cfg(test)]
        #[allow(dead_code)]
        fn plugin_entry() -> ! {
            $crate::skel::run_with_arg(&$plugin, None)
        }
    };
}

/// `argv[index]` of a C `main`, lossily decoded; `None` past the end.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings, as the C
/// runtime passes them to `main`.
pub unsafe fn c_arg(
    argc: i32,
    argv: *const *const std::ffi::c_char,
    index: usize,
) -> Option<String> {
    if argv.is_null() || index >= usize::try_from(argc).unwrap_or(0) {
        return None;
    }
    // SAFETY: index < argc, and the caller guarantees argv's validity.
    let ptr = unsafe { *argv.add(index) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-null argv entry is a NUL-terminated string.
    Some(
        unsafe { std::ffi::CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Handles `--version`/`--help` (`first_arg` is `argv[1]`), refuses to
/// block on a terminal, then runs [`dispatch`] on the real process
/// environment and exits with its code.
pub fn run_with_arg<P: Plugin>(p: &P, first_arg: Option<String>) -> ! {
    ignore_sigpipe();
    install_panic_hook();
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command.is_empty() {
        let arg = first_arg.unwrap_or_default();
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
    // Unlocked handles: a panic hook on another thread must be able to
    // write to stdout while dispatch runs.
    let code = dispatch_to(
        p,
        &env,
        &mut std::io::stdin(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
        &STDOUT_DOC,
    );
    // The hook exits 1 itself; this only decides the race between its
    // `exit(1)` and ours when the answer was complete first.
    std::process::exit(if PANICKED.load(Ordering::SeqCst) {
        1
    } else {
        code
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Interface, IpConfig};
    use serde_json::{json, Value};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// What the test plugin does on each verb.
    #[derive(Clone)]
    enum Behaviour {
        Ok,
        Fail(CniError),
        Panic,
    }

    struct TestPlugin {
        behaviour: Behaviour,
        result: CniResult,
        calls: RefCell<Vec<CmdArgs>>,
    }

    impl TestPlugin {
        fn new(behaviour: Behaviour) -> Self {
            TestPlugin {
                behaviour,
                result: sample_result(),
                calls: RefCell::new(Vec::new()),
            }
        }
        fn act(&self, a: &CmdArgs) -> Result<()> {
            self.calls.borrow_mut().push(a.clone());
            match &self.behaviour {
                Behaviour::Ok => Ok(()),
                Behaviour::Fail(e) => Err(e.clone()),
                Behaviour::Panic => panic!("boom in {}", a.command),
            }
        }
    }

    impl Plugin for TestPlugin {
        fn name(&self) -> &'static str {
            "testplug"
        }
        fn add(&self, a: &CmdArgs) -> Result<CniResult> {
            self.act(a).map(|()| self.result.clone())
        }
        fn del(&self, a: &CmdArgs) -> Result<()> {
            self.act(a)
        }
        fn check(&self, a: &CmdArgs) -> Result<()> {
            self.act(a)
        }
        fn gc(&self, a: &CmdArgs) -> Result<()> {
            self.act(a)
        }
        fn status(&self, a: &CmdArgs) -> Result<()> {
            self.act(a)
        }
    }

    fn sample_result() -> CniResult {
        CniResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: Some("aa:bb:cc:dd:ee:ff".into()),
                sandbox: Some("/run/netns/t".into()),
                ..Interface::default()
            }],
            ips: vec![IpConfig {
                address: "10.22.0.5/24".parse().unwrap(),
                gateway: Some("10.22.0.1".parse().unwrap()),
                interface: Some(0),
            }],
            ..CniResult::default()
        }
    }

    struct Out {
        code: i32,
        stdout: String,
        stderr: String,
    }

    impl Out {
        fn json(&self) -> Value {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("stdout not one JSON document ({e}): {:?}", self.stdout))
        }
        fn err(&self, code: u32) -> Value {
            assert_eq!(self.code, 1, "stdout: {}", self.stdout);
            let v = self.json();
            assert_eq!(v["code"], code, "{v}");
            assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
            assert!(v["details"].is_string(), "{v}");
            assert!(v["cniVersion"].is_string(), "{v}");
            v
        }
    }

    fn env_for(cmd: &str) -> HashMap<String, String> {
        [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "ctr-1"),
            ("CNI_NETNS", "/run/netns/test-does-not-exist"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn conf(version: &str) -> Vec<u8> {
        format!(r#"{{"cniVersion":"{version}","name":"testnet","type":"testplug"}}"#).into_bytes()
    }

    fn call_with(p: &TestPlugin, env: &HashMap<String, String>, stdin: &mut dyn Read) -> Out {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let getenv = |k: &str| env.get(k).cloned();
        let code = dispatch(p, &getenv, stdin, &mut out, &mut err);
        Out {
            code,
            stdout: String::from_utf8(out).unwrap(),
            stderr: String::from_utf8(err).unwrap(),
        }
    }

    fn call(p: &TestPlugin, env: &HashMap<String, String>, stdin: &[u8]) -> Out {
        call_with(p, env, &mut &stdin[..])
    }

    /// A reader that fails the test if it is read at all.
    struct Untouchable;
    impl Read for Untouchable {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("stdin must not be read");
        }
    }

    struct FailingReader;
    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("broken pipe"))
        }
    }

    #[test]
    fn version_ignores_env_and_stdin() {
        let p = TestPlugin::new(Behaviour::Ok);
        // podman: dummy values and an empty container id.
        let mut env = env_for("VERSION");
        env.insert("CNI_NETNS".into(), "dummy".into());
        env.insert("CNI_PATH".into(), "dummy".into());
        env.insert("CNI_IFNAME".into(), "dummy".into());
        env.insert("CNI_CONTAINERID".into(), String::new());
        env.insert("CNI_ARGS".into(), "not a pair".into());
        let out = call_with(&p, &env, &mut Untouchable);
        assert_eq!(out.code, 0);
        assert_eq!(
            out.json(),
            json!({"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
        );
        let only_cmd: HashMap<String, String> =
            [("CNI_COMMAND".to_string(), "VERSION".to_string())].into();
        assert_eq!(call_with(&p, &only_cmd, &mut Untouchable).code, 0);
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn no_command_prints_about() {
        let p = TestPlugin::new(Behaviour::Ok);
        let out = call_with(&p, &HashMap::new(), &mut Untouchable);
        assert_eq!(out.code, 0);
        assert!(out.stdout.is_empty());
        assert!(
            out.stderr.starts_with("CNI testplug plugin v"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(
            "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        ));
    }

    #[test]
    fn unknown_command() {
        let p = TestPlugin::new(Behaviour::Ok);
        let out = call(&p, &env_for("add"), &conf("1.0.0"));
        let v = out.err(4);
        assert_eq!(v["msg"], "unknown CNI_COMMAND: add");
    }

    #[test]
    fn missing_env_per_verb() {
        let p = TestPlugin::new(Behaviour::Ok);
        let cases: [(&str, &[&str], &str); 6] = [
            ("ADD", &["CNI_NETNS", "CNI_PATH"], "[CNI_NETNS,CNI_PATH]"),
            ("ADD", &["CNI_CONTAINERID"], "[CNI_CONTAINERID]"),
            ("CHECK", &["CNI_IFNAME"], "[CNI_IFNAME]"),
            (
                "DEL",
                &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
                "[CNI_CONTAINERID,CNI_IFNAME,CNI_PATH]",
            ),
            ("GC", &["CNI_PATH"], "[CNI_PATH]"),
            ("STATUS", &["CNI_PATH"], "[CNI_PATH]"),
        ];
        for (cmd, remove, named) in cases {
            let mut env = env_for(cmd);
            for k in remove {
                env.remove(*k);
            }
            let out = call_with(&p, &env, &mut Untouchable);
            let v = out.err(4);
            assert_eq!(
                v["msg"],
                format!("required env variables {named} missing"),
                "{cmd}"
            );
        }
        // Empty counts as missing.
        let mut env = env_for("ADD");
        env.insert("CNI_IFNAME".into(), String::new());
        assert_eq!(
            call(&p, &env, &conf("1.0.0")).err(4)["msg"],
            "required env variables [CNI_IFNAME] missing"
        );
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn optional_env() {
        let p = TestPlugin::new(Behaviour::Ok);
        // DEL without netns.
        let mut env = env_for("DEL");
        env.remove("CNI_NETNS");
        assert_eq!(call(&p, &env, &conf("1.0.0")).code, 0);
        // GC and STATUS need only CNI_PATH.
        let env: HashMap<String, String> = [
            ("CNI_COMMAND".to_string(), "GC".to_string()),
            ("CNI_PATH".to_string(), "/opt/cni/bin".to_string()),
        ]
        .into();
        assert_eq!(call(&p, &env, &conf("1.1.0")).code, 0);
        let mut env = env;
        env.insert("CNI_COMMAND".into(), "STATUS".into());
        let out = call(&p, &env, &conf("1.1.0"));
        assert_eq!(out.code, 0);
        assert!(out.stdout.is_empty());
        let calls = p.calls.borrow();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].netns, None);
        assert_eq!(calls[1].command, Command::Gc);
        assert_eq!(calls[1].container_id, "");
        assert_eq!(calls[2].command, Command::Status);
    }

    #[test]
    fn cmd_args_are_filled() {
        let p = TestPlugin::new(Behaviour::Ok);
        let mut env = env_for("ADD");
        env.insert("CNI_ARGS".into(), "IgnoreUnknown=1;K8S_POD_NAME=web".into());
        env.insert("CNI_PATH".into(), "/a::/b".into());
        let stdin = br#"{"cniVersion":"1.0.0","name":"testnet","type":"testplug","x":1}"#;
        let out = call(&p, &env, stdin);
        assert_eq!(out.code, 0, "{}", out.stdout);
        let calls = p.calls.borrow();
        let a = &calls[0];
        assert_eq!(a.command, Command::Add);
        assert_eq!(a.container_id, "ctr-1");
        assert_eq!(
            a.netns,
            Some(PathBuf::from("/run/netns/test-does-not-exist"))
        );
        assert_eq!(a.ifname, "eth0");
        assert_eq!(a.args.get("K8S_POD_NAME"), Some("web"));
        assert_eq!(a.path, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(a.stdin, stdin.to_vec());
        assert_eq!(a.conf.name, "testnet");
        assert_eq!(a.conf.raw["x"], 1);
    }

    #[test]
    fn add_prints_result_in_config_version() {
        let p = TestPlugin::new(Behaviour::Ok);
        for v in SUPPORTED_VERSIONS {
            let out = call(&p, &env_for("ADD"), &conf(v));
            assert_eq!(out.code, 0, "{v}: {}", out.stdout);
            assert_eq!(out.json(), p.result.to_json_version(v).unwrap(), "{v}");
            assert!(out.stderr.is_empty());
        }
        let out = call(&p, &env_for("ADD"), &conf("0.2.0"));
        assert_eq!(out.json()["ip4"]["ip"], "10.22.0.5/24");
        let out = call(&p, &env_for("ADD"), &conf("0.3.1"));
        assert_eq!(out.json()["ips"][0]["version"], "4");
    }

    #[test]
    fn missing_config_version_means_0_1_0() {
        let p = TestPlugin::new(Behaviour::Ok);
        let out = call(&p, &env_for("ADD"), br#"{"name":"testnet","type":"t"}"#);
        assert_eq!(out.code, 0);
        assert_eq!(out.json()["cniVersion"], "0.1.0");
        assert!(out.json().get("ip4").is_some());
    }

    #[test]
    fn add_unconvertible_result() {
        let mut p = TestPlugin::new(Behaviour::Ok);
        p.result.ips.clear();
        let v = call(&p, &env_for("ADD"), &conf("0.2.0")).err(999);
        assert_eq!(v["msg"], "cannot convert: no valid IP addresses");
        assert_eq!(v["cniVersion"], "0.2.0");
    }

    #[test]
    fn bad_json_and_names() {
        let p = TestPlugin::new(Behaviour::Ok);
        for stdin in [
            &b""[..],
            b"{",
            b"[1]",
            b"null",
            b"{\"name\":1}",
            b"{\"name\":\"n\"}garbage",
        ] {
            call(&p, &env_for("ADD"), stdin).err(6);
        }
        for stdin in [
            &br#"{"cniVersion":"1.0.0"}"#[..],
            br#"{"name":"../x"}"#,
            br#"{"name":"a/b"}"#,
        ] {
            call(&p, &env_for("DEL"), stdin).err(7);
        }
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn unsupported_version() {
        let p = TestPlugin::new(Behaviour::Ok);
        for cmd in ["ADD", "DEL", "CHECK", "GC", "STATUS"] {
            let v = call(&p, &env_for(cmd), &conf("0.5.0")).err(1);
            assert_eq!(v["msg"], "incompatible CNI versions", "{cmd}");
            assert_eq!(
                v["details"],
                r#"config is "0.5.0", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
            );
            assert_eq!(v["cniVersion"], "1.1.0");
        }
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn version_gates() {
        let p = TestPlugin::new(Behaviour::Ok);
        for (cmd, v) in [
            ("CHECK", "0.1.0"),
            ("CHECK", "0.3.1"),
            ("GC", "1.0.0"),
            ("GC", "0.4.0"),
            ("STATUS", "1.0.0"),
        ] {
            let e = call(&p, &env_for(cmd), &conf(v)).err(1);
            assert_eq!(e["msg"], format!("config version does not allow {cmd}"));
            assert_eq!(e["cniVersion"], v);
        }
        assert!(p.calls.borrow().is_empty());
        for (cmd, v) in [
            ("CHECK", "0.4.0"),
            ("CHECK", "1.1.0"),
            ("GC", "1.1.0"),
            ("STATUS", "1.1.0"),
        ] {
            let out = call(&p, &env_for(cmd), &conf(v));
            assert_eq!(out.code, 0, "{cmd} {v}: {}", out.stdout);
            assert!(out.stdout.is_empty());
        }
    }

    #[test]
    fn container_id_validation() {
        let p = TestPlugin::new(Behaviour::Ok);
        for id in ["../x", "a/b", "-abc", "a b", ".", "x;y"] {
            let mut env = env_for("ADD");
            env.insert("CNI_CONTAINERID".into(), id.into());
            let v = call(&p, &env, &conf("1.0.0")).err(4);
            assert_eq!(v["msg"], "invalid characters in containerID", "{id}");
            assert_eq!(v["details"], id);
        }
        let mut env = env_for("DEL");
        env.insert("CNI_CONTAINERID".into(), "a".repeat(64) + "_x.y-z");
        assert_eq!(call(&p, &env, &conf("1.0.0")).code, 0);
        assert_eq!(validate_container_id("").unwrap_err().code(), 3);
    }

    #[test]
    fn ifname_validation() {
        let p = TestPlugin::new(Behaviour::Ok);
        for name in [
            "0123456789abcdef",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "ab\u{a0}",
        ] {
            let mut env = env_for("CHECK");
            env.insert("CNI_IFNAME".into(), name.into());
            call(&p, &env, &conf("1.0.0")).err(4);
        }
        validate_ifname("0123456789abcde").unwrap();
        assert_eq!(
            validate_ifname("0123456789abcdef").unwrap_err().msg(),
            "interface name is too long"
        );
        assert_eq!(validate_ifname("").unwrap_err().code(), 4);
        // 15 bytes, but multi-byte: the kernel counts bytes.
        assert!(validate_ifname("ééééééééé").is_err());
    }

    #[test]
    fn plugin_error_is_passed_through() {
        let e = CniError::new(11, "store busy").with_details("lock held");
        let p = TestPlugin::new(Behaviour::Fail(e));
        let out = call(&p, &env_for("ADD"), &conf("0.4.0"));
        assert_eq!(
            out.err(11),
            json!({"cniVersion":"0.4.0","code":11,"msg":"store busy","details":"lock held"})
        );
        let out = call(&p, &env_for("DEL"), &conf("1.1.0"));
        assert_eq!(out.err(11)["cniVersion"], "1.1.0");
    }

    #[test]
    fn panic_becomes_code_999() {
        let p = TestPlugin::new(Behaviour::Panic);
        let out = call(&p, &env_for("ADD"), &conf("1.0.0"));
        let v = out.err(999);
        assert_eq!(v["msg"], "plugin panicked: boom in ADD");
    }

    #[test]
    fn stdin_failures() {
        let p = TestPlugin::new(Behaviour::Ok);
        let v = call_with(&p, &env_for("ADD"), &mut FailingReader).err(5);
        assert!(v["msg"]
            .as_str()
            .unwrap()
            .contains("error reading from stdin"));
        let mut huge = std::io::repeat(b' ').take(MAX_STDIN + 10);
        let v = call_with(&p, &env_for("ADD"), &mut huge).err(5);
        assert!(v["msg"].as_str().unwrap().contains("exceeds"), "{v}");
    }

    #[test]
    fn ten_megabyte_config_works() {
        let p = TestPlugin::new(Behaviour::Ok);
        let pad = "x".repeat(10 * 1024 * 1024);
        let stdin =
            format!(r#"{{"cniVersion":"1.0.0","name":"testnet","type":"t","pad":"{pad}"}}"#);
        let out = call(&p, &env_for("ADD"), stdin.as_bytes());
        assert_eq!(out.code, 0);
        assert_eq!(p.calls.borrow()[0].stdin.len(), stdin.len());
    }

    #[test]
    fn bad_cni_args() {
        let p = TestPlugin::new(Behaviour::Ok);
        let mut env = env_for("ADD");
        env.insert("CNI_ARGS".into(), "a=b;".into());
        let v = call(&p, &env, &conf("1.0.0")).err(4);
        assert_eq!(v["msg"], "invalid CNI_ARGS");
    }

    #[test]
    fn own_netns_is_refused() {
        let p = TestPlugin::new(Behaviour::Ok);
        let mut env = env_for("ADD");
        env.insert("CNI_NETNS".into(), "/proc/thread-self/ns/net".into());
        let v = call(&p, &env, &conf("1.0.0")).err(8);
        assert!(v["msg"].as_str().unwrap().contains("own network namespace"));
        assert!(p.calls.borrow().is_empty());
        env.insert("CNI_NETNS_OVERRIDE".into(), "true".into());
        assert_eq!(call(&p, &env, &conf("1.0.0")).code, 0);
    }

    #[test]
    fn stdout_write_failure() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("closed"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let p = TestPlugin::new(Behaviour::Ok);
        let env = env_for("ADD");
        let getenv = |k: &str| env.get(k).cloned();
        let mut err = Vec::new();
        let code = dispatch(&p, &getenv, &mut &conf("1.0.0")[..], &mut Broken, &mut err);
        assert_eq!(code, 1);
        assert!(String::from_utf8_lossy(&err).contains("failed to write result"));
    }

    #[test]
    fn error_output_is_one_pretty_document() {
        let p = TestPlugin::new(Behaviour::Ok);
        let out = call(&p, &env_for("ADD"), b"{");
        assert!(out.stdout.starts_with("{\n    \""), "{}", out.stdout);
        assert!(out.stdout.ends_with("}\n"));
        let mut de = serde_json::Deserializer::from_str(&out.stdout).into_iter::<Value>();
        assert!(de.next().unwrap().is_ok());
        assert!(de.next().is_none());
    }

    #[test]
    fn texts() {
        let v = version_text("bridge");
        assert!(v.starts_with(&format!("bridge {} (cni-rs)\n", env!("CARGO_PKG_VERSION"))));
        assert!(v.contains(
            "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        ));
        let h = help_text("host-local");
        for var in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_ARGS",
            "CNI_PATH",
            "CNI_RS_LOG",
        ] {
            assert!(h.contains(var), "{var}");
        }
    }

    fn netconf(v: Value) -> NetConf {
        NetConf::from_value(v).unwrap()
    }

    #[test]
    fn attachments() {
        let base = json!({"cniVersion":"1.1.0","name":"n"});
        assert_eq!(valid_attachments(&netconf(base.clone())).unwrap(), None);
        let mut c = base.clone();
        c["cni.dev/valid-attachments"] = json!([{"containerID":"a","ifname":"eth0"}]);
        c["cni.dev/attachments"] = json!([{"containerID":"old","ifname":"eth0"}]);
        let list = valid_attachments(&netconf(c)).unwrap().unwrap();
        assert_eq!(
            list,
            vec![Attachment {
                container_id: "a".into(),
                ifname: "eth0".into()
            }]
        );
        let mut c = base.clone();
        c["cni.dev/attachments"] =
            json!([{"containerID":"old","ifname":"net1"}, {"containerId":"x"}]);
        let list = valid_attachments(&netconf(c)).unwrap().unwrap();
        assert_eq!(list[0].container_id, "old");
        assert_eq!(list[1].container_id, "x");
        assert_eq!(list[1].ifname, "");
        let mut c = base.clone();
        c["cni.dev/valid-attachments"] = json!([]);
        assert_eq!(valid_attachments(&netconf(c)).unwrap(), Some(vec![]));
        let mut c = base.clone();
        c["cni.dev/valid-attachments"] = json!(null);
        assert_eq!(valid_attachments(&netconf(c)).unwrap(), None);
        for bad in [
            json!({}),
            json!("x"),
            json!([1]),
            json!([{"containerID": 5}]),
        ] {
            let mut c = base.clone();
            c["cni.dev/valid-attachments"] = bad;
            assert_eq!(valid_attachments(&netconf(c)).unwrap_err().code(), 6);
        }
    }

    #[test]
    fn doc_gate_has_one_winner_and_losers_wait_for_it() {
        let gate = DocGate::new();
        let winners = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    if gate.claim() {
                        winners.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        gate.finish();
                    } else {
                        gate.wait_done();
                        assert_eq!(gate.state.load(Ordering::SeqCst), DONE);
                    }
                });
            }
        });
        assert_eq!(winners.load(Ordering::SeqCst), 1);
        // The winner itself never waits for its own (unfinished) write.
        let gate = DocGate::new();
        assert!(gate.claim());
        let t = Instant::now();
        gate.wait_done();
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn command_names() {
        for c in [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Gc,
            Command::Status,
            Command::Version,
        ] {
            assert_eq!(Command::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Command::parse("add"), None);
    }
}
