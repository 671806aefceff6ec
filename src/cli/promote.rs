//! `shiftgate promote [--full] POLICY`: skip the rest of the current step's analysis
//! (or, with `--full`, go straight to 100%) in a running local rollout.

use crate::cli::status::LocalPolicyArgs;
use crate::engine::Command;

#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub target: LocalPolicyArgs,
    /// Go straight to 100% and Promoted instead of to the next step.
    #[arg(long)]
    pub full: bool,
}

pub fn run(args: PromoteArgs) -> i32 {
    let command = if args.full {
        Command::PromoteFull
    } else {
        Command::Promote
    };
    send(&args.target, command)
}

/// Queues `command` for the local rollout named by `target`; the running (or next)
/// `shiftgate run` applies it.
pub fn send(target: &LocalPolicyArgs, command: Command) -> i32 {
    if let Some(cluster) = crate::cli::kube_target::cluster_target(target) {
        return crate::cli::kube_target::cluster_command(&cluster, command);
    }
    let target = match target.target() {
        Ok(target) => target,
        Err(code) => return code,
    };
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(target.commands().submit(&target.policy, command)) {
        Ok(path) => {
            eprintln!(
                "shiftgate: `{command}` queued for {}/{} ({}); the running `shiftgate run` \
                 applies it within a second",
                target.policy.namespace,
                target.policy.name,
                path.display()
            );
            crate::cli::exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            crate::cli::exit::COULD_NOT_RUN
        }
    }
}
