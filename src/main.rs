use clap::Parser;

use shiftgate::cli::{logging::init_tracing, Cli};

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    std::process::exit(shiftgate::cli::dispatch(cli));
}
