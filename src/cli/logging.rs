//! Tracing for every binary (`shiftgate`, `kubectl-shiftgate`): logs on stderr, filtered
//! by `SHIFTGATE_LOG` (an `EnvFilter`, default `warn`), as text or JSON.

use super::LogFormat;

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHIFTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its report of a failed write is an `eprintln!`, which panics when stderr is
        // a closed pipe (`shiftgate run … 2>&1 | head -1`): a log line nobody reads is
        // no error.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
