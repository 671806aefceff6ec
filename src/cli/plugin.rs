//! The command line as `kubectl shiftgate`: the same subcommands, with help texts that
//! speak of RolloutPolicies in the cluster (every rollout argument names one there),
//! the usage line `kubectl shiftgate …`, and the local-only commands hidden.

/// What the rollout commands do in plugin mode (their `shiftgate` texts also speak of
/// local rollouts and policy files).
const CLUSTER_ABOUT: &[(&str, &str)] = &[
    ("status", "Show where a RolloutPolicy's rollout is (`--watch`: follow it to its end)"),
    ("list", "List the RolloutPolicies and where their rollouts are (`-A`: every namespace)"),
    ("promote", "Skip the current step's remaining analysis of a RolloutPolicy's rollout (`--full`: straight to 100%)"),
    ("pause", "Stop moving traffic at the current weight of a RolloutPolicy's rollout"),
    ("resume", "Continue a paused or held rollout of a RolloutPolicy"),
    ("abort", "Put every request of a RolloutPolicy back on stable now and end its rollout"),
    ("undo", "After a promotion: every request of a RolloutPolicy back on the previous stable in one write"),
    ("retry", "Start a rolled-back or aborted rollout of a RolloutPolicy again from step 1 (same revision)"),
];

/// Commands that only make sense on this machine (they start local processes).
const LOCAL_ONLY: &[&str] = &["demo", "local"];

/// `command` (from [`crate::cli::command`]) as the `kubectl shiftgate` plugin.
pub fn plugin_command(command: clap::Command) -> clap::Command {
    command
        .name("kubectl-shiftgate")
        .bin_name("kubectl shiftgate")
        .display_name("kubectl shiftgate")
        .about(
            "kubectl shiftgate drives shiftgate's rollouts of RolloutPolicies in the cluster \
             (kubeconfig, -n, --context, as kubectl): status, list, promote, pause, resume, \
             abort, undo, retry.",
        )
        .mut_subcommands(|subcommand| {
            let name = subcommand.get_name().to_owned();
            if LOCAL_ONLY.contains(&name.as_str()) {
                return subcommand.hide(true);
            }
            let Some((_, about)) = CLUSTER_ABOUT.iter().find(|(n, _)| *n == name) else {
                return subcommand;
            };
            let has_policy = subcommand.get_arguments().any(|a| a.get_id() == "policy");
            let has_cluster = subcommand.get_arguments().any(|a| a.get_id() == "cluster");
            let has_state_dir = subcommand
                .get_arguments()
                .any(|a| a.get_id() == "state_dir");
            let mut subcommand = subcommand.about(*about);
            if has_policy {
                subcommand = subcommand.mut_arg("policy", |arg| {
                    arg.value_name("NAME").help(
                        "NAME or NAMESPACE/NAME of the RolloutPolicy (-n wins over the prefix)",
                    )
                });
            }
            // Every argument names a cluster object here: the local switches mean nothing.
            if has_cluster {
                subcommand = subcommand.mut_arg("cluster", |arg| arg.hide(true));
            }
            if has_state_dir {
                subcommand = subcommand.mut_arg("state_dir", |arg| arg.hide(true));
            }
            subcommand
        })
}
