//! Process exit codes, documented in docs/cli.md. CI pipelines branch on them.

/// Success: the policy is valid, or the rollout was promoted.
pub const OK: i32 = 0;
/// The rollout was rolled back (or aborted): the canary was judged bad.
pub const ROLLED_BACK: i32 = 1;
/// Invalid input: a policy, scenario or flag is wrong. Nothing was changed.
pub const INVALID_INPUT: i32 = 2;
/// shiftgate could not run: a router, Prometheus or the state store failed.
pub const COULD_NOT_RUN: i32 = 3;
/// The rollout is held after a failure, or paused, and needs an operator.
pub const HELD: i32 = 4;
/// `simulate`: the scenario's `expect` was not met.
pub const EXPECTATION_NOT_MET: i32 = 5;
/// Interrupted by Ctrl-C or SIGTERM; the state is consistent and a new run resumes.
pub const INTERRUPTED: i32 = 130;
