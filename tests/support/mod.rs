//! Shared helpers of the integration tests (each test file picks what it uses).
// Each test file uses only some of the helpers.
#![allow(dead_code)]

pub mod batch_answer;
pub mod chromium;
pub mod command_world;
pub mod demo_process;
pub mod envoy;
pub mod exporter;
pub mod http;
pub mod kube_apiserver;
pub mod playground;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod prometheus_stand_in;
pub mod receiver;
pub mod rollout;
pub mod scrapes;
pub mod sharded;
pub mod workloads;
