//! Running a delegated plugin (IPAM) the way Go's `pkg/invoke` does
//! ([`crate::invoke`]): find it on `CNI_PATH`, run it with our environment
//! but another `CNI_COMMAND`, feed it the same stdin, forward its stderr,
//! and parse its result or error.

use crate::error::{codes, CniError, Result};
use crate::invoke::{find_in_path, Answer, ExecError, Invocation};
use crate::skel::{CmdArgs, Command};
use crate::spec::CniResult;
use std::io::Write;
use std::path::PathBuf;

/// Finds plugin `name` in the `cni_path` directories, in order (Go
/// `FindInPath`). Only regular files with an execute bit count.
/// Errors (code 7): empty name, a name containing `/`, no directories,
/// or not found: `failed to find plugin "x" in path [/a /b]`.
pub fn find_plugin(name: &str, cni_path: &[PathBuf]) -> Result<PathBuf> {
    find_in_path(name, cni_path).map_err(|e| CniError::new(codes::INVALID_CONFIG, e.to_string()))
}

/// The environment overrides for the child: `CNI_COMMAND` plus the CNI
/// variables from `a` (identical to ours when called from [`crate::skel::run_with_arg`];
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

/// A failed delegated call, and whether the plugin may have kept state for
/// it (what a caller's rollback must release).
#[derive(Debug)]
pub struct Failure {
    pub error: CniError,
    /// False when the plugin never ran, or ran to its end and answered with
    /// a CNI error (a plugin that refuses an ADD allocates nothing: host-local
    /// undoes its own writes under its lock). True when it died, was killed
    /// or printed something that is no answer: its state is unknown.
    pub may_hold: bool,
}

impl From<Failure> for CniError {
    fn from(f: Failure) -> CniError {
        f.error
    }
}

/// Runs the delegate and maps a failure to the child's own CNI error.
fn exec(plugin_type: &str, command: Command, a: &CmdArgs) -> Result<Vec<u8>> {
    exec_tracked(plugin_type, command, a).map_err(CniError::from)
}

/// [`exec`], telling apart a plugin's own answer from a death. Returns the
/// child's stdout on success.
fn exec_tracked(plugin_type: &str, command: Command, a: &CmdArgs) -> Result<Vec<u8>, Failure> {
    let unknown = |error| Failure {
        error,
        may_hold: true,
    };
    let answered = |error| Failure {
        error,
        may_hold: false,
    };
    let bin = find_plugin(plugin_type, &a.path).map_err(answered)?;
    crate::cni_debug!("delegate {command} to {}", bin.display());
    let env = cni_env(command, a);
    let run = Invocation {
        binary: &bin,
        env: &env,
        stdin: &a.stdin,
        netns: None,
    }
    .run();
    let out = match run {
        Ok(out) => out,
        Err(e @ ExecError::Wait { .. }) => {
            return Err(unknown(CniError::new(codes::IO, e.to_string())))
        }
        Err(e) => return Err(answered(CniError::new(codes::IO, e.to_string()))),
    };
    // Forward the child's diagnostics to our stderr (never our stdout).
    if !out.stderr.is_empty() {
        let _ = std::io::stderr().write_all(&out.stderr);
    }
    match Answer::of(&out) {
        Answer::Success => Ok(out.stdout),
        Answer::Refused(e) => Err(answered(e)),
        Answer::Killed(sig) => Err(unknown(CniError::internal(format!(
            "plugin {} was killed by signal {sig}",
            bin.display()
        )))),
        Answer::Unreadable(why) => Err(unknown(CniError::internal(why))),
    }
}

/// Delegated ADD: returns the child's result in the internal model (a
/// missing `cniVersion` in it means the config's, as libcni does).
pub fn add(plugin_type: &str, a: &CmdArgs) -> Result<CniResult> {
    add_tracked(plugin_type, a).map_err(CniError::from)
}

/// Delegated ADD that says, on failure, whether the plugin may hold an
/// allocation for it: a caller's rollback releases only what its own call
/// allocated, never a lease an earlier ADD of the same attachment holds.
pub fn add_tracked(plugin_type: &str, a: &CmdArgs) -> Result<CniResult, Failure> {
    let stdout = exec_tracked(plugin_type, Command::Add, a)?;
    // The plugin succeeded: whatever we make of its answer, it allocated.
    let held = |error| Failure {
        error,
        may_hold: true,
    };
    let v: serde_json::Value = serde_json::from_slice(&stdout).map_err(|e| {
        held(CniError::new(
            codes::DECODE,
            format!("failed to decode result of plugin {plugin_type:?}: {e}"),
        ))
    })?;
    CniResult::from_json_any(&v, &a.conf.cni_version)
        .map_err(|e| held(e.context(format!("result of plugin {plugin_type:?}"))))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::CniArgs;
    use crate::spec::NetConf;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Duration;

    /// A unique temp dir removed on drop.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let d = std::env::temp_dir().join(format!(
                "cni-rs-delegate-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Tmp(d)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn cmd_args(dir: &Path, stdin: &str) -> CmdArgs {
        CmdArgs {
            command: Command::Add,
            container_id: "ctr1".into(),
            netns: Some(PathBuf::from("/run/netns/x")),
            ifname: "eth0".into(),
            args: CniArgs::parse("IgnoreUnknown=1;IP=10.1.0.9").unwrap(),
            path: vec![PathBuf::from("/nonexistent-cni-dir"), dir.to_path_buf()],
            stdin: stdin.as_bytes().to_vec(),
            conf: NetConf::parse(stdin.as_bytes()).unwrap(),
        }
    }

    const CONF: &str =
        r#"{"cniVersion":"0.4.0","name":"n","type":"bridge","ipam":{"type":"fake"}}"#;

    #[test]
    fn find_plugin_rules() {
        let a = Tmp::new("find-a");
        let b = Tmp::new("find-b");
        let in_b = script(&b.0, "p", "exit 0");
        let dirs = vec![a.0.clone(), b.0.clone()];
        assert_eq!(find_plugin("p", &dirs).unwrap(), in_b);
        // First directory wins.
        let in_a = script(&a.0, "p", "exit 0");
        assert_eq!(find_plugin("p", &dirs).unwrap(), in_a);
        // Not executable, or a directory: skipped.
        std::fs::set_permissions(&in_a, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_plugin("p", &dirs).unwrap(), in_b);
        std::fs::create_dir(a.0.join("d")).unwrap();
        script(&b.0, "d", "exit 0");
        assert_eq!(find_plugin("d", &dirs).unwrap(), b.0.join("d"));

        let e = find_plugin("", &dirs).unwrap_err();
        assert_eq!((e.code(), e.msg()), (7, "no plugin name provided"));
        let e = find_plugin("../p", &dirs).unwrap_err();
        assert_eq!(e.msg(), "invalid plugin name: ../p");
        assert_eq!(
            find_plugin("p", &[]).unwrap_err().msg(),
            "no paths provided"
        );
        let e = find_plugin("nope", &dirs).unwrap_err();
        assert_eq!(
            e.msg(),
            format!(
                "failed to find plugin \"nope\" in path [{} {}]",
                a.0.display(),
                b.0.display()
            )
        );
    }

    #[test]
    fn add_runs_with_env_and_stdin() {
        let d = Tmp::new("add");
        let body = format!(
            "cat > {dir}/stdin\nenv > {dir}/env\necho 'note on stderr' >&2\n\
             printf '%s' '{{\"ips\":[{{\"version\":\"4\",\"address\":\"10.1.0.9/16\",\"gateway\":\"10.1.0.1\"}}],\"dns\":{{}}}}'",
            dir = d.0.display()
        );
        script(&d.0, "fake", &body);
        let mut a = cmd_args(&d.0, CONF);
        a.command = Command::Del; // the delegate verb must not follow ours
        let r = add("fake", &a).unwrap();
        assert_eq!(r.cni_version, "0.4.0", "missing version is the config's");
        assert_eq!(r.ips[0].address.to_string(), "10.1.0.9/16");
        assert_eq!(std::fs::read_to_string(d.0.join("stdin")).unwrap(), CONF);
        let env = std::fs::read_to_string(d.0.join("env")).unwrap();
        for line in [
            "CNI_COMMAND=ADD",
            "CNI_CONTAINERID=ctr1",
            "CNI_NETNS=/run/netns/x",
            "CNI_IFNAME=eth0",
            "CNI_ARGS=IgnoreUnknown=1;IP=10.1.0.9",
        ] {
            assert!(env.lines().any(|l| l == line), "{line} missing in:\n{env}");
        }
        let path_line = format!("CNI_PATH=/nonexistent-cni-dir:{}", d.0.display());
        assert!(env.lines().any(|l| l == path_line), "{env}");
        // Our own environment is inherited.
        if let Ok(home) = std::env::var("PATH") {
            assert!(env.lines().any(|l| l == format!("PATH={home}")));
        }
    }

    #[test]
    fn other_verbs_set_their_command() {
        let d = Tmp::new("verbs");
        script(
            &d.0,
            "fake",
            &format!("echo $CNI_COMMAND >> {}/log", d.0.display()),
        );
        let a = cmd_args(&d.0, CONF);
        del("fake", &a).unwrap();
        check("fake", &a).unwrap();
        gc("fake", &a).unwrap();
        status("fake", &a).unwrap();
        let log = std::fs::read_to_string(d.0.join("log")).unwrap();
        assert_eq!(log, "DEL\nCHECK\nGC\nSTATUS\n");
    }

    #[test]
    fn child_error_is_kept() {
        let d = Tmp::new("err");
        script(
            &d.0,
            "fake",
            r#"echo '{"cniVersion":"0.4.0","code":11,"msg":"busy","details":"try later"}'; exit 1"#,
        );
        let a = cmd_args(&d.0, CONF);
        let e = add("fake", &a).unwrap_err();
        assert_eq!(e, CniError::new(11, "busy").with_details("try later"));
        assert_eq!(del("fake", &a).unwrap_err().code(), 11);
    }

    #[test]
    fn child_failures_without_error_json() {
        let d = Tmp::new("fail");
        let a = cmd_args(&d.0, CONF);
        script(&d.0, "empty", "echo 'it broke' >&2; exit 2");
        let e = del("empty", &a).unwrap_err();
        assert_eq!((e.code(), e.msg()), (999, "netplugin failed: \"it broke\""));
        script(&d.0, "garbage", "echo 'not json'; exit 1");
        let e = del("garbage", &a).unwrap_err();
        assert_eq!(e.code(), 999);
        assert!(e
            .msg()
            .starts_with("netplugin failed but error parsing its diagnostic message"));
        script(&d.0, "nocode", "echo '{\"msg\":\"x\"}'; exit 1");
        assert_eq!(del("nocode", &a).unwrap_err().code(), 999);
        script(&d.0, "killed", "kill -9 $$");
        let e = del("killed", &a).unwrap_err();
        assert!(e.msg().contains("killed by signal 9"), "{e}");
    }

    #[test]
    fn bad_results() {
        let d = Tmp::new("badres");
        let a = cmd_args(&d.0, CONF);
        script(&d.0, "text", "echo hello");
        assert_eq!(add("text", &a).unwrap_err().code(), 6);
        script(&d.0, "ver", r#"echo '{"cniVersion":"7.0.0"}'"#);
        assert_eq!(add("ver", &a).unwrap_err().code(), 1);
        script(
            &d.0,
            "shape",
            r#"echo '{"cniVersion":"1.0.0","ips":[{"address":"bad"}]}'"#,
        );
        let e = add("shape", &a).unwrap_err();
        assert_eq!(e.code(), 6);
        assert!(e.msg().starts_with("result of plugin \"shape\""), "{e}");
        // Non-ADD verbs ignore stdout.
        del("text", &a).unwrap();
    }

    #[test]
    fn missing_plugin() {
        let d = Tmp::new("missing");
        let a = cmd_args(&d.0, CONF);
        assert_eq!(add("nope", &a).unwrap_err().code(), 7);
    }

    #[test]
    fn child_that_ignores_stdin() {
        let d = Tmp::new("nostdin");
        script(&d.0, "fake", "exec 0<&-; exit 0");
        let mut a = cmd_args(&d.0, CONF);
        a.stdin = vec![b' '; 4 << 20];
        del("fake", &a).unwrap();
    }

    #[test]
    fn text_file_busy_is_retried() {
        let d = Tmp::new("etxtbsy");
        let p = d.0.join("fake");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&p)
            .unwrap();
        f.write_all(b"#!/bin/sh\nexit 0\n").unwrap();
        // Keep the file open for writing (as an installer would) for a while.
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            drop(f);
        });
        let a = cmd_args(&d.0, CONF);
        del("fake", &a).unwrap();
        holder.join().unwrap();
    }

    use std::os::unix::fs::OpenOptionsExt;
}
