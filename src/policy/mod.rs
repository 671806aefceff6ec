//! The policy format: types, parsing with locations, and validation.

pub mod duration;
pub mod status;
pub mod step;
pub mod types;

pub use duration::Duration;
pub use status::{Phase, RolloutStatus, Timestamp};
pub use step::StepSpec;
pub use types::*;
pub mod diagnostic;
pub mod yaml;
pub mod templates;
pub mod window;
pub mod schema;
pub mod structure;
pub mod parse;
pub mod report;
pub mod validate;
