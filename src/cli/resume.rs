//! `shiftgate resume POLICY`: Continue a paused, held or drifted local rollout (run it again if it exited).

use crate::cli::promote::{send, RevisionArg};
use crate::cli::status::LocalPolicyArgs;
use crate::engine::Command;

#[derive(clap::Args, Debug)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub target: LocalPolicyArgs,
    #[command(flatten)]
    pub revision: RevisionArg,
}

pub fn run(args: ResumeArgs) -> i32 {
    send(&args.target, &args.revision, Command::Resume)
}
