//! `kubectl shiftgate …`: the shiftgate CLI as a kubectl plugin (kubectl runs any
//! `kubectl-shiftgate` on PATH). Same subcommands; a policy argument always names a
//! RolloutPolicy in the cluster: `kubectl shiftgate status checkout -n shop`.

use shiftgate::cli::{
    command, kube_target::CLUSTER_ENV, logging::init_tracing, parse_args, plugin::plugin_command,
};

fn main() {
    // Before any thread starts: every status/promote/pause/resume/abort targets the cluster.
    std::env::set_var(CLUSTER_ENV, "1");
    let cli = parse_args(plugin_command(command()));
    init_tracing(cli.log_format);
    std::process::exit(shiftgate::cli::dispatch(cli));
}
