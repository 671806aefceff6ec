//! shiftgate: moves traffic to a canary in steps, judges each step from Prometheus,
//! and rolls back by itself.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod build_info;
pub mod cli;
pub mod demo;
pub mod engine;
pub mod metrics;
pub mod observe;
pub mod policy;
pub mod redact;
pub mod router;
pub mod runtime;
pub mod sim;
pub mod store;
#[doc(hidden)]
pub mod testkit;
pub mod web;
