//! Running the firewall tools (`iptables-save`, `iptables-restore`, `nft`).
//!
//! Every call goes through [`Cmd`], so failures always name the command line,
//! its exit status and its stderr. [`Cmd::spawn`] lets callers start several
//! read-only dumps at once and wait for them together: one exec costs ~2 ms,
//! and DEL needs three dumps (iptables, ip6tables, nft).

use std::io::Write;
use std::process::{Child, Command, Stdio};

use super::error::FirewallError;

/// One tool invocation: program, arguments and optional stdin.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    program: &'static str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
}

/// Successful output of a tool.
#[derive(Debug)]
pub(crate) struct Output {
    pub stdout: String,
}

impl Cmd {
    pub(crate) fn new(program: &'static str, args: &[&str]) -> Self {
        Cmd {
            program,
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: None,
        }
    }

    /// Feeds `input` on stdin (for `iptables-restore` and `nft -f -`).
    pub(crate) fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The command line, for error messages.
    pub(crate) fn display(&self) -> String {
        let mut s = self.program.to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Starts the command; stdin is written before returning (the inputs are
    /// small, far below a pipe buffer, so this cannot deadlock).
    pub(crate) fn spawn(self) -> Result<Running, FirewallError> {
        let mut command = Command::new(self.program);
        command
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| FirewallError::Spawn {
            cmd: self.display(),
            source,
        })?;
        if let (Some(input), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            // A write error (EPIPE) means the tool died early; its exit status
            // and stderr below explain why, so keep going to collect them.
            let _ = pipe.write_all(input);
        }
        Ok(Running { cmd: self, child })
    }

    /// Runs to completion; non-zero exit is an error.
    pub(crate) fn run(self) -> Result<Output, FirewallError> {
        self.spawn()?.wait()
    }
}

/// A started command.
pub(crate) struct Running {
    cmd: Cmd,
    child: Child,
}

impl Running {
    /// Waits for the command; non-zero exit becomes [`FirewallError::Command`].
    pub(crate) fn wait(self) -> Result<Output, FirewallError> {
        let cmd = self.cmd.display();
        let out = self
            .child
            .wait_with_output()
            .map_err(|source| FirewallError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(FirewallError::Command {
                cmd,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        })
    }
}

/// True for a tool error meaning "the table/chain/rule is not there".
pub(crate) fn is_not_found(err: &FirewallError) -> bool {
    match err {
        FirewallError::Command { stderr, .. } => {
            stderr.contains("No such file or directory")
                || stderr.contains("does not exist")
                || stderr.contains("No chain/target/match by that name")
        }
        _ => false,
    }
}
