//! One CNI command, from environment and stdin to the one document on
//! stdout: parse and validate, call the plugin's verb, print its answer or
//! its error.

use super::env::{check_not_own_netns, read_stdin, validate_container_id, validate_ifname};
use super::help::about_text;
use super::process::{panic_message, pretty, set_error_version, DocGate};
use super::race;
use super::{CmdArgs, Command, Plugin};
use crate::args::CniArgs;
use crate::error::{codes, CniError, Result};
use crate::spec::{
    check_version, version_at_least, version_reply, NetConf, CURRENT_VERSION, SUPPORTED_VERSIONS,
};
use std::io::{Read, Write};
use std::path::PathBuf;

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
pub(super) fn dispatch_to<P: Plugin>(
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
    let plan = race::before_claim(env);
    if !gate.claim() {
        gate.wait_done();
        return Err(std::io::Error::other(
            "stdout already taken by the panic hook",
        ));
    }
    let written = race::write(&plan, stdout, text);
    gate.finish();
    written
}
