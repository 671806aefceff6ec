//! The command line: one file per subcommand. `main.rs` only parses, starts tracing
//! and dispatches here.

pub mod exit;

use clap::{Parser, Subcommand};

/// shiftgate moves traffic from a stable release to a canary in steps, judges every
/// step from Prometheus, and rolls back by itself when the canary is bad.
#[derive(Parser, Debug)]
#[command(name = "shiftgate", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SHIFTGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
}

/// Runs the parsed command and returns the process exit code.
pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
    }
}
