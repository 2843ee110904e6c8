//! Hook points that take the answer-vs-panic race every time, for the
//! tests only (`tests/unprivileged/protocol.rs`): with the crash hook
//! ([`crate::test_hooks`]) set to `helper-panic-before-write`, a helper
//! thread panics and the answer waits until the panic hook has claimed
//! stdout; with `helper-panic-mid-write`, the helper panics after half the
//! answer is out and the second half follows once the hook runs.
//!
//! Without the `test-hooks` feature (release builds) the same calls only
//! write the answer: no variable is read and no name is compiled in.

#[cfg(feature = "test-hooks")]
pub(super) use hooked::{before_claim, hook_claimed, hook_entered, write};
#[cfg(not(feature = "test-hooks"))]
pub(super) use plain::{before_claim, hook_claimed, hook_entered, write};

#[cfg(not(feature = "test-hooks"))]
mod plain {
    use std::io::Write;

    /// Nothing to do at write time.
    pub(in crate::skel) struct Plan;

    pub(in crate::skel) fn before_claim(_env: &dyn Fn(&str) -> Option<String>) -> Plan {
        Plan
    }

    pub(in crate::skel) fn write(_: &Plan, out: &mut dyn Write, text: &str) -> std::io::Result<()> {
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    }

    pub(in crate::skel) fn hook_entered() {}

    pub(in crate::skel) fn hook_claimed() {}
}

#[cfg(feature = "test-hooks")]
mod hooked {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// Set first thing by the panic hook.
    static HOOK_ENTERED: AtomicBool = AtomicBool::new(false);
    /// Set by the panic hook once it holds the right to write.
    static HOOK_CLAIMED: AtomicBool = AtomicBool::new(false);

    /// The hook point this process was asked to take, if any.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(in crate::skel) enum Plan {
        None,
        BeforeWrite,
        MidWrite,
    }

    /// Reads the hook point; for `helper-panic-before-write`, panics a
    /// helper and waits until the panic hook has claimed stdout.
    pub(in crate::skel) fn before_claim(env: &dyn Fn(&str) -> Option<String>) -> Plan {
        let plan = match env(crate::test_hooks::CRASH_ENV).as_deref() {
            Some("helper-panic-before-write") => Plan::BeforeWrite,
            Some("helper-panic-mid-write") => Plan::MidWrite,
            _ => Plan::None,
        };
        if plan == Plan::BeforeWrite {
            helper_panic();
            wait_for(&HOOK_CLAIMED);
        }
        plan
    }

    /// Writes `text`; for `helper-panic-mid-write`: half of it, a helper's
    /// panic, a pause in which the hook runs, then the other half.
    pub(in crate::skel) fn write(
        plan: &Plan,
        out: &mut dyn Write,
        text: &str,
    ) -> std::io::Result<()> {
        if *plan != Plan::MidWrite {
            return out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
        let (first, second) = text.as_bytes().split_at(text.len() / 2);
        out.write_all(first)?;
        out.flush()?;
        helper_panic();
        wait_for(&HOOK_ENTERED);
        std::thread::sleep(Duration::from_millis(20));
        out.write_all(second)?;
        out.flush()
    }

    /// Called first thing by the panic hook.
    pub(in crate::skel) fn hook_entered() {
        HOOK_ENTERED.store(true, Ordering::SeqCst);
    }

    /// Called by the panic hook once it holds the right to write.
    pub(in crate::skel) fn hook_claimed() {
        HOOK_CLAIMED.store(true, Ordering::SeqCst);
    }

    fn helper_panic() {
        let _ = std::thread::Builder::new()
            .spawn(|| panic!("test: a helper thread panicked while the answer was written"));
    }

    /// Waits (at most 2 s) until `flag` is set.
    fn wait_for(flag: &AtomicBool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
}
