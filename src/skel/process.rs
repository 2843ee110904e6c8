//! What a plugin process needs beyond one dispatch: the once-only right
//! to write stdout's one document ([`DocGate`]), the panic hook that turns
//! any thread's panic into a code-999 error (or waits for the answer
//! already being written), and ignoring `SIGPIPE`.

use super::race;
use crate::error::CniError;
use crate::spec::CURRENT_VERSION;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The config version of the command in flight, for the panic hook.
static ERROR_VERSION: Mutex<Option<String>> = Mutex::new(None);

/// The right to write the process's one stdout document, shared by
/// [`run_with_arg`]'s dispatch and the panic hook.
pub(super) static STDOUT_DOC: DocGate = DocGate::new();

/// A once-only right to write one document. Whoever claims it first (before
/// writing a byte) writes; the other never does, and waits until the
/// winner's write is finished. Why: a flag set around the write left a
/// window where the answer and a helper thread's panic error were both
/// printed (two documents), or the hook's `exit` cut the answer short.
pub(super) struct DocGate {
    /// `FREE`, `WRITING` or `DONE`.
    pub(super) state: AtomicU8,
    /// Kernel thread id of the claimer: the hook must not wait for its own
    /// thread's write.
    writer: AtomicI32,
}

pub(super) const FREE: u8 = 0;
pub(super) const WRITING: u8 = 1;
pub(super) const DONE: u8 = 2;

/// Set first thing by the panic hook: a process in which any thread
/// panicked exits 1, even when dispatch's answer was written first.
pub(super) static PANICKED: AtomicBool = AtomicBool::new(false);

/// How long a loser waits for the winner's write (a few KB to a pipe).
const WRITE_WAIT: Duration = Duration::from_secs(5);

impl DocGate {
    pub(super) const fn new() -> DocGate {
        DocGate {
            state: AtomicU8::new(FREE),
            writer: AtomicI32::new(0),
        }
    }

    /// True if the caller got the right to write (exactly one caller does).
    pub(super) fn claim(&self) -> bool {
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
    pub(super) fn finish(&self) {
        self.state.store(DONE, Ordering::SeqCst);
    }

    /// Waits until the winner's write is complete, at most [`WRITE_WAIT`];
    /// returns at once if the winner is the calling thread (it panicked
    /// mid-write and will never finish).
    pub(super) fn wait_done(&self) {
        let deadline = Instant::now() + WRITE_WAIT;
        while self.state.load(Ordering::SeqCst) != DONE && Instant::now() < deadline {
            if self.writer.load(Ordering::SeqCst) == nix::unistd::gettid().as_raw() {
                return;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

pub(super) fn set_error_version(v: &str) {
    if let Ok(mut g) = ERROR_VERSION.lock() {
        *g = Some(v.to_string());
    }
}

/// Pretty-prints a JSON value like Go's `prettyPrint` (4-space indent).
pub(super) fn pretty(v: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a Value into a Vec cannot fail.
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Makes any panic, on any thread, end the process with exit status 1 and
/// a code-999 error JSON on stdout — unless dispatch already claimed stdout
/// ([`STDOUT_DOC`]): then its document is the only one, and the hook waits
/// for it to be complete before exiting. Done in the hook because the release profile
/// uses `panic = "abort"`, where `catch_unwind` never gets control (and a
/// library cannot reliably tell which strategy the final binary uses).
/// The default hook still prints the panic message on stderr.
pub(super) fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        race::hook_entered();
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
        race::hook_claimed();
        let e = CniError::internal(format!("plugin panicked: {msg}"));
        let doc = format!("{}\n", pretty(&e.to_json(&version)));
        let _ = super::entry::RawStdout.write_all(doc.as_bytes());
        STDOUT_DOC.finish();
        std::process::exit(1);
    }));
}

/// A closed pipe must be an `EPIPE` error, not death by signal: a runtime
/// that stopped reading our stdout, or a delegate that exits without
/// reading its stdin. Rust's own `main` set-up does this; the plugins skip
/// that set-up (see [`plugin_main!`](crate::plugin_main)), so it is done here.
pub(super) fn ignore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code; nothing can race with it
    // this early in a single-threaded process.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
