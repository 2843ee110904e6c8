//! Hand-rolled argument parsing: positionals, `--flag value`, `--flag=value`,
//! value-less switches, and everything after `--` kept verbatim.

use crate::harness::HarnessError;

/// Command-line options after global ones were taken out.
pub struct Opts {
    /// Words that are not flags (the command first).
    pub positional: Vec<String>,
    /// `--flag value` / `--flag=value` / switches, in order.
    pub flags: Vec<(String, Option<String>)>,
    /// Everything after `--` (the command of `exec`).
    pub after_dashes: Vec<String>,
}

impl Opts {
    /// The last value of a flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
    /// Every value of a repeatable flag.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(k, _)| k == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }
    /// Whether a flag or switch was given.
    pub fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == name)
    }
}

/// Flags that take no value.
const SWITCHES: [&str; 4] = ["--json", "--quiet", "--none-valid", "--help"];

/// Splits arguments into positionals, flags and the part after `--`.
pub fn parse(args: Vec<String>) -> Result<Opts, HarnessError> {
    let mut opts = Opts {
        positional: Vec::new(),
        flags: Vec::new(),
        after_dashes: Vec::new(),
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--" {
            opts.after_dashes = it.by_ref().collect();
        } else if let Some(flag) = a.strip_prefix("--") {
            if SWITCHES.contains(&a.as_str()) {
                opts.flags.push((a, None));
            } else if let Some((k, v)) = flag.split_once('=') {
                opts.flags.push((format!("--{k}"), Some(v.to_string())));
            } else {
                let v = it
                    .next()
                    .ok_or_else(|| HarnessError::Usage(format!("{a} needs a value")))?;
                opts.flags.push((a, Some(v)));
            }
        } else {
            opts.positional.push(a);
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn splits_flags_switches_and_exec_command() {
        let o = parse(words(
            "exec web --state-dir /tmp/x --json -- ip --json addr",
        ))
        .expect("parse");
        assert_eq!(o.positional, ["exec", "web"]);
        assert_eq!(o.get("--state-dir"), Some("/tmp/x"));
        assert!(o.has("--json"));
        assert_eq!(o.after_dashes, ["ip", "--json", "addr"]);
        let o = parse(words("run-pod p --container a:1 --container=b:2")).expect("parse");
        assert_eq!(o.all("--container"), ["a:1", "b:2"]);
        assert!(
            parse(words("up --nodes")).is_err(),
            "a flag without its value"
        );
    }
}
