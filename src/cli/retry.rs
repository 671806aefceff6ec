//! `shiftgate retry POLICY`: a rolled-back or aborted rollout starts again from step 1,
//! same revision (as `kubectl argo rollouts retry rollout`): the checks and every
//! step's analysis run again. Sent like `abort` and `promote` (a command file, or the
//! RolloutPolicy's annotations); the engine decides (`engine::retry_refusal`), and the
//! CLI refuses up front what the engine would refuse.

use crate::cli::promote::{send, RevisionArg};
use crate::cli::status::LocalPolicyArgs;
use crate::engine::Command;
use crate::policy::RolloutStatus;

#[derive(clap::Args, Debug)]
pub struct RetryArgs {
    #[command(flatten)]
    pub target: LocalPolicyArgs,
    #[command(flatten)]
    pub revision: RevisionArg,
}

pub fn run(args: RetryArgs) -> i32 {
    send(&args.target, &args.revision, Command::Retry)
}

/// Why `retry` of `revision` has nothing to act on, judged from the stored status
/// (`None` when it may be sent).
pub fn nothing_to_retry(status: Option<&RolloutStatus>, revision: &str) -> Option<String> {
    match status {
        None => Some(format!(
            "nothing to retry: no rollout of revision {revision} has run"
        )),
        Some(status) => crate::engine::retry_refusal(status, revision),
    }
}
