//! Observability of the daemon: the Prometheus registry, the health and metrics HTTP
//! endpoints, Kubernetes Events and Grafana links. Nothing here decides anything: the
//! runtime reports what happened and these modules publish it.

pub mod events;
pub mod exposition;
pub mod grafana;
pub mod grafana_annotations;
pub mod http;
mod label_sets;
pub mod labels;
pub mod metrics;
mod policy_families;
mod policy_series;
pub mod process;
mod registrar;
