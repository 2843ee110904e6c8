//! Optional debug logging to the file named by `CNI_RS_LOG`.
//!
//! Off by default. Never writes to stdout (which carries the CNI result);
//! failures to log are ignored so logging can never break a command.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable naming the debug log file (appended to).
pub const LOG_ENV: &str = "CNI_RS_LOG";

fn target() -> Option<&'static str> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var(LOG_ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// True when `CNI_RS_LOG` is set, so callers can skip building costly messages.
pub fn enabled() -> bool {
    target().is_some()
}

/// Formats one log line: `<unix seconds>.<millis> pid=<pid> <msg>`.
fn line(msg: std::fmt::Arguments<'_>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:03} pid={} {}\n",
        now.as_secs(),
        now.subsec_millis(),
        std::process::id(),
        msg
    )
}

/// Appends one line to the log file if logging is enabled. The line is
/// written with a single `write` on an `O_APPEND` file, so concurrent plugin
/// processes do not interleave within a line.
pub fn debug(msg: std::fmt::Arguments<'_>) {
    if let Some(path) = target() {
        write_to(path, msg);
    }
}

fn write_to(path: &str, msg: std::fmt::Arguments<'_>) {
    let text = line(msg);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(text.as_bytes());
    }
}

/// `cni_debug!("fmt", args..)`: [`debug`] with `format!` syntax.
#[macro_export]
macro_rules! cni_debug {
    ($($arg:tt)*) => {
        $crate::log::debug(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let l = line(format_args!("hello {}", 5));
        assert!(l.ends_with(" hello 5\n"), "{l}");
        assert!(l.contains(&format!("pid={}", std::process::id())), "{l}");
    }

    #[test]
    fn appends_to_file() {
        let dir = std::env::temp_dir().join(format!("cni-rs-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let p = path.to_str().unwrap();
        write_to(p, format_args!("one"));
        write_to(p, format_args!("two"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("one") && lines[1].ends_with("two"));
        std::fs::remove_dir_all(&dir).unwrap();
        // An unwritable target is silently ignored.
        write_to("/nonexistent-dir/x/log", format_args!("x"));
    }
}
