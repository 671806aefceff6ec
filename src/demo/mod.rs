//! The local demo and harness: a small HTTP app with injectable faults, a load
//! generator, and a supervisor for the real Prometheus, Envoy and app processes.

pub mod app;
pub mod envoy_bootstrap;
pub mod load;
pub mod playground;
pub mod playground_state;
pub mod processes;
pub mod scenario;
