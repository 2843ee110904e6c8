//! `kubesim demo`: a 2-node cluster and the whole story of issue 5, each
//! claim a check, printed as tables; everything is torn down at the end.

use super::cluster::UpOptions;
use super::error::{HarnessError, Result};
use super::report::DemoReport;
use super::{cluster, story, teardown, Harness};

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
