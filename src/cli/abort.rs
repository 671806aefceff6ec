//! `shiftgate abort POLICY`: Put every request back on stable now; the rollout ends as Aborted.

use crate::cli::promote::{send, RevisionArg};
use crate::cli::status::LocalPolicyArgs;
use crate::engine::Command;

#[derive(clap::Args, Debug)]
pub struct AbortArgs {
    #[command(flatten)]
    pub target: LocalPolicyArgs,
    #[command(flatten)]
    pub revision: RevisionArg,
}

pub fn run(args: AbortArgs) -> i32 {
    send(&args.target, &args.revision, Command::Abort)
}
