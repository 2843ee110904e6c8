//! Results: metrics with targets, the Markdown table printed at the end,
//! and the JSON file used to compare commits.

use crate::cli::Plan;
use crate::error::{BenchError, Result};
use crate::stats::Summary;
use crate::util::Machine;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Ms,
    Kib,
    Bytes,
    Count,
    /// A dimensionless ratio of two of our own medians (e.g. density growth).
    Ratio,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Kib => "KiB",
            Unit::Bytes => "B",
            Unit::Count => "#",
            Unit::Ratio => "×",
        }
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Unit::Ms => format!("{v:.2}"),
            Unit::Ratio => format!("{v:.3}"),
            _ => format!("{v:.0}"),
        }
    }
}

/// A goal from issues 7 and 16. Ratios are ours/reference of the medians.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// ratio <= max
    Ratio { max: f64 },
    /// ratio <= max_ratio and our median <= max_abs
    RatioAndAbs { max_ratio: f64, max_abs: f64 },
    /// our median < max (strict, as in "< 50 ms")
    Below { max: f64 },
    /// our median <= max (as in "≤ 5 ms" or "≤ 1.15×")
    AtMost { max: f64 },
    /// every one of our samples is 0 (e.g. duplicate IPs)
    Zero,
}

impl Target {
    fn label(&self, unit: Unit) -> String {
        let frac = |r: f64| format!("≤ 1/{}", fmt_inverse(r));
        match self {
            Target::Ratio { max } => frac(*max),
            Target::RatioAndAbs { max_ratio, max_abs } => {
                format!("{} & ≤ {} {}", frac(*max_ratio), max_abs, unit.label())
            }
            Target::Below { max } => format!("< {} {}", max, unit.label()),
            Target::AtMost { max } => format!("≤ {} {}", max, unit.label()),
            Target::Zero => "= 0".to_string(),
        }
    }

    fn evaluate(&self, ours: Option<&Summary>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::Ratio { max } => ratio.map(|r| r <= *max),
            Target::RatioAndAbs { max_ratio, max_abs } => {
                Some(ratio? <= *max_ratio && ours?.median <= *max_abs)
            }
            Target::Below { max } => ours.map(|o| o.median < *max),
            Target::AtMost { max } => ours.map(|o| o.median <= *max),
            Target::Zero => ours.map(|o| o.max == 0.0),
        }
    }
}

fn fmt_inverse(r: f64) -> String {
    let inv = 1.0 / r;
    if (inv - inv.round()).abs() < 1e-9 {
        format!("{}", inv.round())
    } else {
        format!("{inv:.1}")
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Stable key for comparing JSON files, e.g. `bridge.masq_false.add`.
    pub key: String,
    pub label: String,
    pub unit: Unit,
    pub ours: Option<Summary>,
    pub reference: Option<Summary>,
    /// ours.median / reference.median
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    pub target_label: Option<String>,
    pub pass: Option<bool>,
    /// Key of the kernel-floor metric this one is compared with (the
    /// table's "ours/floor" column: our median / the floor's median).
    pub floor: Option<String>,
}

impl Metric {
    pub fn new(
        key: &str,
        label: &str,
        unit: Unit,
        ours: &[f64],
        reference: &[f64],
        target: Option<Target>,
    ) -> Metric {
        let ours = Summary::of(ours);
        let reference = Summary::of(reference);
        let ratio = match (&ours, &reference) {
            (Some(o), Some(r)) if r.median > 0.0 => Some(o.median / r.median),
            _ => None,
        };
        let pass = target
            .as_ref()
            .and_then(|t| t.evaluate(ours.as_ref(), ratio));
        Metric {
            key: key.into(),
            label: label.into(),
            unit,
            target_label: target.as_ref().map(|t| t.label(unit)),
            ours,
            reference,
            ratio,
            target,
            pass,
            floor: None,
        }
    }

    /// Compares this metric with the kernel floor `key` in the table.
    pub fn with_floor(mut self, key: &str) -> Metric {
        self.floor = Some(key.into());
        self
    }
}

/// Everything one scenario produced.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub metrics: Vec<Metric>,
    /// Leak checks and other observations.
    pub notes: Vec<String>,
    /// Why the scenario stopped early, if it did.
    pub error: Option<String>,
    pub seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub machine: Machine,
    pub ours_dir: PathBuf,
    /// `git rev-parse --short HEAD` around the ours dir (`-dirty` if modified).
    pub ours_commit: Option<String>,
    pub reference_dir: PathBuf,
    /// Debian package and version owning the reference, if any.
    pub reference_package: Option<String>,
    pub iterations: usize,
    pub plan: Plan,
    pub scenarios: Vec<ScenarioReport>,
    pub loadavg_end: String,
    pub total_seconds: f64,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| BenchError::Other(format!("serialize report: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|e| BenchError::io(path, e))
    }

    /// Our median of metric `key` in any scenario.
    fn ours_median(&self, key: &str) -> Option<f64> {
        self.scenarios
            .iter()
            .flat_map(|s| &s.metrics)
            .find(|m| m.key == key)
            .and_then(|m| m.ours.as_ref())
            .map(|s| s.median)
    }

    /// The Markdown table (also readable in a terminal) plus notes.
    pub fn table(&self) -> String {
        let header = [
            "metric",
            "unit",
            "ours med",
            "ours p95",
            "ref med",
            "ref p95",
            "ratio",
            "ours/floor",
            "target",
            "result",
        ];
        let mut rows: Vec<[String; 10]> = Vec::new();
        for s in &self.scenarios {
            for m in &s.metrics {
                let f = |s: &Option<Summary>, p95: bool| {
                    s.as_ref()
                        .map(|s| m.unit.fmt(if p95 { s.p95 } else { s.median }))
                        .unwrap_or_else(|| "-".into())
                };
                rows.push([
                    m.label.clone(),
                    m.unit.label().into(),
                    f(&m.ours, false),
                    f(&m.ours, true),
                    f(&m.reference, false),
                    f(&m.reference, true),
                    m.ratio
                        .map(|r| format!("{r:.3}"))
                        .unwrap_or_else(|| "-".into()),
                    match (
                        m.ours.as_ref(),
                        m.floor.as_deref().and_then(|k| self.ours_median(k)),
                    ) {
                        (Some(o), Some(f)) if f > 0.0 => format!("{:.2}", o.median / f),
                        _ => String::new(),
                    },
                    m.target_label.clone().unwrap_or_default(),
                    match m.pass {
                        Some(true) => "PASS".into(),
                        Some(false) => "MISS".into(),
                        None if m.target.is_some() => "n/a".into(),
                        None => String::new(),
                    },
                ]);
            }
            if s.error.is_some() {
                let mut r: [String; 10] = Default::default();
                r[0] = format!("{}: see ERROR below", s.name);
                r[9] = "ERROR".into();
                rows.push(r);
            }
        }
        let mut width = header.map(|h| h.chars().count());
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                let pad = width[i] - c.chars().count();
                if i == 0 || i >= 8 {
                    s += &format!(" {c}{} |", " ".repeat(pad));
                } else {
                    s += &format!(" {}{c} |", " ".repeat(pad));
                }
            }
            s + "\n"
        };
        let mut out = line(&header.map(String::from));
        let sep: Vec<String> = width
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == 0 || i >= 8 {
                    "-".repeat(*w)
                } else {
                    format!("{}:", "-".repeat(w - 1))
                }
            })
            .collect();
        out += &line(&sep);
        for r in &rows {
            out += &line(r);
        }
        out += &format!(
            "\nmachine: {} CPUs, {}, kernel {}; load {} → {}; {}; {:.0} s\nours: {} ({})  reference: {} ({})  base iterations: {}\n",
            self.machine.nproc,
            self.machine.cpu_model,
            self.machine.kernel,
            self.machine.loadavg_start,
            self.loadavg_end,
            self.machine.date_utc,
            self.total_seconds,
            self.ours_dir.display(),
            self.ours_commit.as_deref().unwrap_or("commit unknown"),
            self.reference_dir.display(),
            self.reference_package.as_deref().unwrap_or("version unknown"),
            self.iterations
        );
        for s in &self.scenarios {
            for n in &s.notes {
                out += &format!("note [{}]: {n}\n", s.name);
            }
            if let Some(e) = &s.error {
                out += &format!("ERROR [{}]: {e}\n", s.name);
            }
        }
        out
    }

    pub fn had_errors(&self) -> bool {
        self.scenarios.iter().any(|s| s.error.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_targets() {
        let m = Metric::new(
            "k",
            "l",
            Unit::Ms,
            &[1.0, 1.0],
            &[4.0],
            Some(Target::Ratio { max: 1.0 / 3.0 }),
        );
        assert_eq!(m.ratio, Some(0.25));
        assert_eq!(m.pass, Some(true));
        assert_eq!(m.target_label.as_deref(), Some("≤ 1/3"));

        let m = Metric::new(
            "k",
            "l",
            Unit::Ms,
            &[6.0],
            &[1000.0],
            Some(Target::RatioAndAbs {
                max_ratio: 0.05,
                max_abs: 5.0,
            }),
        );
        assert_eq!(m.pass, Some(false), "absolute bound missed");
        assert_eq!(m.target_label.as_deref(), Some("≤ 1/20 & ≤ 5 ms"));

        let m = Metric::new(
            "k",
            "l",
            Unit::Ms,
            &[49.0],
            &[],
            Some(Target::Below { max: 50.0 }),
        );
        assert_eq!((m.ratio, m.pass), (None, Some(true)));

        let m = Metric::new(
            "k",
            "l",
            Unit::Count,
            &[0.0, 1.0],
            &[0.0],
            Some(Target::Zero),
        );
        assert_eq!(m.pass, Some(false));

        let m = Metric::new(
            "k",
            "l",
            Unit::Ms,
            &[],
            &[1.0],
            Some(Target::Ratio { max: 0.5 }),
        );
        assert_eq!(m.pass, None);

        let m = Metric::new(
            "k",
            "l",
            Unit::Ms,
            &[5.0],
            &[],
            Some(Target::AtMost { max: 5.0 }),
        );
        assert_eq!(m.pass, Some(true), "≤ includes the bound");
        assert_eq!(m.target_label.as_deref(), Some("≤ 5 ms"));
        let m = Metric::new(
            "k",
            "l",
            Unit::Ratio,
            &[1.2],
            &[],
            Some(Target::AtMost { max: 1.15 }),
        );
        assert_eq!(m.pass, Some(false));
        assert_eq!(m.target_label.as_deref(), Some("≤ 1.15 ×"));
    }

    #[test]
    fn floor_column_divides_by_the_floor_metric_of_any_scenario() {
        let floor = Metric::new("floor.x", "floor", Unit::Ms, &[2.0], &[], None);
        let ours =
            Metric::new("b.y", "ours", Unit::Ms, &[5.0], &[10.0], None).with_floor("floor.x");
        let orphan =
            Metric::new("b.z", "no floor", Unit::Ms, &[5.0], &[10.0], None).with_floor("nope");
        let scenario = |name: &str, metrics: Vec<Metric>| ScenarioReport {
            name: name.into(),
            metrics,
            notes: Vec::new(),
            error: None,
            seconds: 0.0,
        };
        let report = Report {
            tool: "cni-bench",
            machine: Machine::probe(),
            ours_dir: PathBuf::from("/o"),
            ours_commit: None,
            reference_dir: PathBuf::from("/r"),
            reference_package: None,
            iterations: 1,
            plan: Plan::from_base(1),
            scenarios: vec![
                scenario("b", vec![ours, orphan]),
                scenario("floor", vec![floor]),
            ],
            loadavg_end: String::new(),
            total_seconds: 0.0,
        };
        let table = report.table();
        let row = |label: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("| {label} ")))
                .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
                .unwrap_or_else(|| panic!("no row {label}:\n{table}"))
        };
        assert_eq!(row("ours")[8], "2.50", "{table}");
        assert_eq!(row("no floor")[8], "", "{table}");
    }
}
