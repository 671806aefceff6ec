//! `shiftgate pause POLICY`: Stop moving traffic at the current weight in a running local rollout.

use crate::cli::promote::{send, RevisionArg};
use crate::cli::status::LocalPolicyArgs;
use crate::engine::Command;

#[derive(clap::Args, Debug)]
pub struct PauseArgs {
    #[command(flatten)]
    pub target: LocalPolicyArgs,
    #[command(flatten)]
    pub revision: RevisionArg,
}

pub fn run(args: PauseArgs) -> i32 {
    send(&args.target, &args.revision, Command::Pause)
}
