//! Tracing for every binary (`shiftgate`, `kubectl-shiftgate`): logs on stderr, filtered
//! by `SHIFTGATE_LOG` (an `EnvFilter`, default `warn`), as text or JSON.
//!
//! Text logs are coloured only when stderr is a terminal (and `NO_COLOR` is unset):
//! escape codes in a pipe, a file or `kubectl logs` are noise. With JSON, stderr is a
//! stream of JSON records, one per line: the human lines of `run`, `simulate`, `demo`
//! (progress, warnings, errors) become records of the same shape as the logs, so a log
//! pipeline never meets a line it cannot parse. Every record has exactly one `message`
//! (the event: `rollout transition`, `policy refused`, or the human line); details are
//! other fields (`detail`, `reason`, …).

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use super::LogFormat;
use crate::runtime::clock::{Clock as _, SystemClock};

/// Set once by [`init_tracing`] when the logs are JSON.
static JSON_STDERR: AtomicBool = AtomicBool::new(false);

/// The target of the records [`as_json_record`] makes from the human lines.
pub const CONSOLE_TARGET: &str = "shiftgate::console";

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHIFTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        // Its report of a failed write is an `eprintln!`, which panics when stderr is
        // a closed pipe (`shiftgate run … 2>&1 | head -1`): a log line nobody reads is
        // no error.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            JSON_STDERR.store(true, Ordering::Relaxed);
            builder.json().init();
        }
    }
}

/// With JSON logs, a human stderr line as a JSON record shaped as tracing-subscriber's
/// (`timestamp`, `level`, `fields.message`, `target`); `None` with text logs.
pub fn as_json_record(line: std::fmt::Arguments<'_>) -> Option<String> {
    if !JSON_STDERR.load(Ordering::Relaxed) {
        return None;
    }
    Some(json_record(
        &SystemClock
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        &line.to_string(),
    ))
}

fn json_record(timestamp: &str, message: &str) -> String {
    serde_json::json!({
        "timestamp": timestamp,
        "level": "INFO",
        "fields": { "message": message },
        "target": CONSOLE_TARGET,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_line_is_one_json_record_on_one_line() {
        let record = json_record("2026-01-01T00:00:00.000000Z", "a \"line\"\nand more");
        assert!(!record.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&record).unwrap_or_default();
        assert_eq!(value["fields"]["message"], "a \"line\"\nand more");
        assert_eq!(value["target"], CONSOLE_TARGET);
    }
}
