//! `kubectl shiftgate …`: the shiftgate CLI as a kubectl plugin (kubectl runs any
//! `kubectl-shiftgate` on PATH). Same subcommands; a policy argument always names a
//! RolloutPolicy in the cluster: `kubectl shiftgate status checkout -n shop`.

use clap::{CommandFactory as _, FromArgMatches as _};

use shiftgate::cli::{kube_target::CLUSTER_ENV, logging::init_tracing, Cli};

fn main() {
    // Before any thread starts: every status/promote/pause/resume/abort targets the cluster.
    std::env::set_var(CLUSTER_ENV, "1");
    let matches = Cli::command().bin_name("kubectl shiftgate").get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_tracing(cli.log_format);
    std::process::exit(shiftgate::cli::dispatch(cli));
}
