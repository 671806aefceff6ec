use shiftgate::cli::{command, logging::init_tracing, parse_args};

fn main() {
    let cli = parse_args(command());
    init_tracing(cli.log_format);
    std::process::exit(shiftgate::cli::dispatch(cli));
}
