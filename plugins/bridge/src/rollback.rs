//! Undo steps for a failed ADD (docs/architecture.md, "Principles"): each side effect registers
//! how to revert it; on drop, unless committed, they run newest first.
//! The reference leaves the veth behind on failure; we remove it too.

/// One undo action.
type UndoStep<'a> = Box<dyn FnOnce() -> cni::error::Result<()> + 'a>;

/// A stack of undo closures.
#[derive(Default)]
pub struct Rollback<'a> {
    steps: Vec<(&'static str, UndoStep<'a>)>,
}

impl<'a> Rollback<'a> {
    /// Registers how to undo the step just taken.
    pub fn push(&mut self, what: &'static str, undo: impl FnOnce() -> cni::error::Result<()> + 'a) {
        self.steps.push((what, Box::new(undo)));
    }

    /// Success: keep everything.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo() {
                eprintln!("bridge: rollback ({what}) failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn runs_newest_first_unless_committed() {
        let log = RefCell::new(Vec::new());
        {
            let mut rb = Rollback::default();
            rb.push("a", || {
                log.borrow_mut().push("a");
                Ok(())
            });
            rb.push("b", || {
                log.borrow_mut().push("b");
                Err(cni::error::CniError::internal("ignored"))
            });
        }
        assert_eq!(*log.borrow(), vec!["b", "a"]);
        let mut rb = Rollback::default();
        rb.push("c", || {
            log.borrow_mut().push("c");
            Ok(())
        });
        rb.commit();
        assert_eq!(log.borrow().len(), 2);
    }
}
