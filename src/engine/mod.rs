//! The pure rollout state machine. `step(plan, state, observation) -> decision`: no
//! clock, no I/O, no async. The shell (`runtime::reconcile`) gathers observations, runs
//! the step, and executes the actions.

pub mod cadence;
pub mod colours;
mod commands;
mod drift_analysis;
mod evidence;
pub mod hooks;
mod live_colour;
pub mod plan;
pub mod previous_release;
mod progress;
pub mod reasons;
mod record;
pub mod step;
pub mod types;
mod undo;
pub mod workloads;

#[cfg(test)]
mod evidence_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod undo_tests;
#[cfg(test)]
mod workloads_colour_tests;
#[cfg(test)]
mod workloads_tests;

pub use commands::retry_refusal;
pub use evidence::counts_since;
pub use live_colour::refused_live_canary;
pub use plan::{Plan, PlanError};
pub use record::set_condition;
pub use step::step;
pub use types::{
    Action, ChecksOutcome, Command, Decision, Observation, OperatorCommand, Transition,
    TransitionKind, UnknownCommand,
};
