#![forbid(unsafe_code)]

use shiftgate::cli::{command, logging::init_tracing, parse_args};

/// mimalloc rather than glibc's malloc: at 10,000 rollouts the daemon spent ~45 % of its
/// CPU in glibc's allocator (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = parse_args(command());
    init_tracing(cli.log_format);
    std::process::exit(shiftgate::cli::dispatch(cli));
}
