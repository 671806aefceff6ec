//! Verdicts from metric results: threshold gates and comparisons against stable. Pure.

pub mod sample;
