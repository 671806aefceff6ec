//! Deterministic simulation: the real engine and reconciler against an in-memory world
//! scripted by a scenario, on virtual time. `shiftgate simulate` and the property tests
//! run through here.

pub mod hook_failures;
pub mod judge_bench;
pub mod noisy_source;
pub mod render;
pub mod run;
pub mod scenario;
pub mod traffic;
pub mod traffic_spec;

pub use run::{outcome_of, SimReport, Simulation, TimelineEntry};
pub use scenario::{Outcome, Scenario, ScenarioError};
