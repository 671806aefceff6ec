//! Tracing for every binary (`shiftgate`, `kubectl-shiftgate`): logs on stderr, filtered
//! by `SHIFTGATE_LOG` (an `EnvFilter`, default `warn`), as text or JSON.

use super::LogFormat;

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHIFTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
