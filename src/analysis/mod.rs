//! Verdicts from metric results: threshold gates and comparisons against stable. Pure.

pub mod comparison;
pub mod judge;
pub mod mann_whitney;
pub mod mann_whitney_run;
pub mod sample;
pub mod sequential;
pub mod verdict;

pub use judge::{evaluate, judge, Evaluation, MetricJudgement};
pub use verdict::{InconclusiveReason, Verdict};
