//! Running one plugin binary the way Go's `pkg/invoke` does, for both of
//! its callers: a plugin delegating to its IPAM plugin ([`crate::delegate`])
//! and the runtime ([`crate::runtime::exec`]). Find the binary on the CNI
//! path, run it with the caller's environment plus `CNI_*` overrides (in
//! another netns if asked), feed the config on stdin, retry while the
//! binary is being replaced ("text file busy", cni#763, cni#1183), and
//! tell its answer, its CNI error and its death apart. What a failure
//! means is left to the caller.

use crate::error::CniError;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How often a spawn failing with "text file busy" is tried (libcni).
const ETXTBSY_ATTEMPTS: usize = 5;
/// Pause between those attempts (libcni sleeps 1 s).
const ETXTBSY_PAUSE: Duration = Duration::from_secs(1);

/// Why [`find_in_path`] found nothing (Go `FindInPath`'s messages).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FindError {
    #[error("no plugin name provided")]
    NoName,
    #[error("invalid plugin name: {0}")]
    InvalidName(String),
    #[error("no paths provided")]
    NoPaths,
    #[error("failed to find plugin {name:?} in path [{dirs}]")]
    NotFound {
        name: String,
        /// The directories searched, space-separated as Go prints a slice.
        dirs: String,
    },
}

/// Finds plugin `name` in the `dirs`, in order (Go `FindInPath`). Only
/// regular files with an execute bit count; a name with `/` is refused.
pub fn find_in_path(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, FindError> {
    if name.is_empty() {
        return Err(FindError::NoName);
    }
    if name.contains('/') {
        return Err(FindError::InvalidName(name.to_string()));
    }
    if dirs.is_empty() {
        return Err(FindError::NoPaths);
    }
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| FindError::NotFound {
            name: name.to_string(),
            dirs: dirs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
        })
}

/// Why a plugin could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The network namespace to run it in could not be opened: it never ran.
    #[error("failed to open netns {path:?}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It could not be started: it never ran.
    #[error("failed to execute plugin {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It ran, but waiting for it failed: its outcome is unknown.
    #[error("failed to wait for plugin {}: {source}", binary.display())]
    Wait {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

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

impl CniEnv {
    /// All six variables, `CNI_PATH` from `cni_path` (Go `Args.AsEnv`:
    /// empty ones are set too, hiding the runtime's own).
    pub fn vars(&self, cni_path: &[PathBuf]) -> Vec<(&'static str, String)> {
        let path = std::env::join_paths(cni_path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        vec![
            ("CNI_COMMAND", self.command.clone()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_ARGS", self.args.clone()),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_PATH", path),
        ]
    }
}

/// One run of a plugin binary.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub binary: &'a Path,
    /// Set on top of the caller's own environment (`CNI_COMMAND`, ...).
    pub env: &'a [(&'a str, String)],
    /// The request config.
    pub stdin: &'a [u8],
    /// A network namespace the child enters before `exec` (`None`: the
    /// calling thread's).
    pub netns: Option<&'a Path>,
}

impl Invocation<'_> {
    /// Runs the plugin to its end and returns everything it printed.
    pub fn run(&self) -> Result<Output, ExecError> {
        let mut child = self.spawn()?;
        // Feed stdin from a thread so a child that writes a lot before
        // reading cannot deadlock us on full pipes.
        let mut pipe = child.stdin.take();
        let input = self.stdin.to_vec();
        let writer = std::thread::spawn(move || {
            // A child that exits without reading stdin causes EPIPE: harmless.
            if let Some(p) = pipe.as_mut() {
                let _ = p.write_all(&input);
            }
        });
        let out = child.wait_with_output().map_err(|source| ExecError::Wait {
            binary: self.binary.to_path_buf(),
            source,
        })?;
        let _ = writer.join();
        Ok(out)
    }

    /// Spawns the child, retrying while the binary is still being written.
    fn spawn(&self) -> Result<std::process::Child, ExecError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cmd = Command::new(self.binary);
            cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(path) = self.netns {
                let ns = File::open(path).map_err(|source| ExecError::Netns {
                    path: path.to_path_buf(),
                    source,
                })?;
                crate::netns::enter_on_exec(&mut cmd, ns);
            }
            match cmd.spawn() {
                Ok(child) => return Ok(child),
                Err(e)
                    if e.raw_os_error() == Some(nix::libc::ETXTBSY)
                        && attempt < ETXTBSY_ATTEMPTS =>
                {
                    std::thread::sleep(ETXTBSY_PAUSE);
                }
                Err(source) => {
                    return Err(ExecError::Spawn {
                        binary: self.binary.to_path_buf(),
                        source,
                    })
                }
            }
        }
    }
}

/// What a finished plugin's exit and stdout say.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Exit status 0: stdout is its answer.
    Success,
    /// It exited non-zero with a CNI error object on stdout: it ran to its
    /// end and refused.
    Refused(CniError),
    /// Killed by this signal: its state is unknown.
    Killed(i32),
    /// It exited non-zero without an error object; why, in Go's words.
    Unreadable(String),
}

impl Answer {
    /// Reads `out` as Go's `pluginErr` does.
    pub fn of(out: &Output) -> Answer {
        if out.status.success() {
            return Answer::Success;
        }
        if let Some(sig) = out.status.signal() {
            return Answer::Killed(sig);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Answer::Unreadable(format!(
                "netplugin failed: {:?}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
        }
        let why = match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            Ok(v) => match CniError::from_json(&v) {
                Some(e) => return Answer::Refused(e),
                None => "no error code".to_string(),
            },
            Err(e) => e.to_string(),
        };
        Answer::Unreadable(format!(
            "netplugin failed but error parsing its diagnostic message {:?}: {why}",
            text.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(raw_status: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            status: std::process::ExitStatus::from_raw(raw_status),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_are_told_apart() {
        assert_eq!(Answer::of(&output(0, "{}", "")), Answer::Success);
        // wait(2) status: exit code in the high byte, signal in the low bits.
        assert_eq!(Answer::of(&output(9, "", "")), Answer::Killed(9));
        assert_eq!(
            Answer::of(&output(1 << 8, r#"{"code":11,"msg":"busy"}"#, "")),
            Answer::Refused(CniError::new(11, "busy"))
        );
        assert_eq!(
            Answer::of(&output(2 << 8, " \n", "it broke\n")),
            Answer::Unreadable("netplugin failed: \"it broke\"".into())
        );
        let Answer::Unreadable(why) = Answer::of(&output(1 << 8, r#"{"msg":"x"}"#, "")) else {
            panic!("an object without a code is no CNI error");
        };
        assert!(why.ends_with(": no error code"), "{why}");
    }

    #[test]
    fn runs_with_env_and_stdin() {
        let env = [("CNI_COMMAND", "VERSION".to_string())];
        let out = Invocation {
            binary: Path::new("/bin/sh"),
            env: &env,
            stdin: b"printf '%s' \"$CNI_COMMAND\"",
            netns: None,
        }
        .run()
        .expect("run sh");
        assert_eq!(Answer::of(&out), Answer::Success);
        assert_eq!(out.stdout, b"VERSION");
        let missing = Invocation {
            binary: Path::new("/nonexistent/plugin"),
            env: &[],
            stdin: b"",
            netns: None,
        };
        assert!(matches!(missing.run(), Err(ExecError::Spawn { .. })));
    }

    #[test]
    fn cni_env_sets_all_six() {
        let env = CniEnv {
            command: "ADD".into(),
            ..CniEnv::default()
        };
        let vars = env.vars(&[PathBuf::from("/a"), PathBuf::from("/b")]);
        let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "CNI_COMMAND",
                "CNI_CONTAINERID",
                "CNI_NETNS",
                "CNI_ARGS",
                "CNI_IFNAME",
                "CNI_PATH"
            ]
        );
        assert_eq!(vars[0].1, "ADD");
        assert_eq!(vars[5].1, "/a:/b");
    }
}
