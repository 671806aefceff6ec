//! The policy format: types, parsing with locations, and validation.

pub mod duration;
pub mod hooks;
pub mod judge;
pub mod notify;
pub mod status;
pub mod step;
pub mod types;

pub use duration::Duration;
pub use hooks::{HookHeader, HookPhase, HookResult, HookSpec, JsonExpectation};
pub use judge::{CountsSpec, JudgeSpec, SequentialSpec};
pub use notify::{GrafanaAnnotations, NotifyEvent, NotifyFormat, NotifySpec, WebhookSpec};
pub use status::{Phase, RolloutStatus, Timestamp};
pub use step::StepSpec;
pub use types::*;
mod analysis_rules;
pub mod colours;
pub mod constant;
mod cron_message;
pub mod diagnostic;
mod hook_rules;
mod judge_rules;
pub mod limits;
mod metric_label_rules;
mod names;
pub mod parse;
mod partial;
mod prometheus_rules;
pub mod report;
#[cfg(test)]
mod round_trip_tests;
pub mod schema;
pub mod structure;
pub mod templates;
pub mod validate;
pub mod window;
pub mod workloads;
pub mod yaml;
mod yaml_brackets;
