//! `kubesim demo`: a 2-node cluster and the whole story of issue 5, each
//! claim a check, printed as tables; everything is torn down at the end.

use super::cluster::UpOptions;
use super::error::{HarnessError, Result};
use super::{cluster, story, teardown, Harness};

/// One verified claim.
#[derive(Clone, Debug)]
pub struct Check {
    /// What is claimed.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Evidence.
    pub detail: String,
}

/// The demo's outcome.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    /// All checks, in story order.
    pub checks: Vec<Check>,
    /// Rendered nodes table.
    pub nodes: String,
    /// Rendered pods table.
    pub pods: String,
}

impl DemoReport {
    /// True if every check passed.
    pub fn all_ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Records (and prints) one check.
    pub fn check(&mut self, name: &str, ok: bool, detail: String) {
        eprintln!("  [{}] {name}: {detail}", if ok { "PASS" } else { "FAIL" });
        self.checks.push(Check {
            name: name.to_string(),
            ok,
            detail,
        });
    }

    /// The checks, one line each with the evidence indented below.
    pub fn checks_table(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.checks.iter().enumerate() {
            let result = if c.ok { "PASS" } else { "FAIL" };
            out.push_str(&format!(
                "{:>2}. [{result}] {}\n        {}\n",
                i + 1,
                c.name,
                c.detail
            ));
        }
        out
    }
}

/// Runs the story on a fresh cluster in `h`'s state dir and tears it down.
pub fn run(h: &Harness, opts: &UpOptions) -> Result<DemoReport> {
    if h.dir.load()?.is_some() {
        h.say("cleaning up a previous run in the same state dir");
        teardown::down(h)?;
        std::fs::create_dir_all(h.dir.logs()).map_err(HarnessError::io("recreate state dir"))?;
    }
    h.say(&format!("== creating a {}-node cluster", opts.nodes));
    cluster::up(h, opts)?;
    let mut report = DemoReport::default();
    let outcome = story::story(h, &mut report);
    h.say("== tearing down");
    let down = teardown::down(h);
    outcome?;
    let down = down?;
    report.check(
        "teardown removes every process and netns",
        down.warnings.is_empty(),
        format!(
            "{} helper processes stopped; state dir removed",
            down.processes_killed
        ),
    );
    Ok(report)
}
