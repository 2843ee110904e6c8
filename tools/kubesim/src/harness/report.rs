//! The demo's outcome: each claim of the story as a check with its
//! evidence. Below `demo` (which prints it) and `story` (which fills it).

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
    /// What the checks show, one sentence each.
    pub notes: Vec<String>,
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

    /// Records what a group of checks shows.
    pub fn note(&mut self, sentence: &str) {
        self.notes.push(sentence.to_string());
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
