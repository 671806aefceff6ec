use clap::Parser;

use shiftgate::cli::{Cli, LogFormat};

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    std::process::exit(shiftgate::cli::dispatch(cli));
}

fn init_tracing(format: LogFormat) {
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
