//! A real Envoy in front of two demo app instances (stable `v1`, canary `v2`), started
//! through the demo's process supervisor; everything dies with the returned value.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use shiftgate::demo::app::Faults;
use shiftgate::demo::processes::{self, EnvoyHandle, Supervisor, INSTALL_HINT};

/// Fails the test loudly when `binary` is not on PATH, with the install hint.
pub fn require_binary(binary: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false);
    if !found {
        let where_ = if std::env::var_os("CI").is_some() {
            "in CI"
        } else {
            "on this machine"
        };
        panic!("`{binary}` is required by this test but is not on PATH {where_}; {INSTALL_HINT}");
    }
}

/// The shiftgate binary built for the tests (it serves `demo-app`).
pub fn shiftgate_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shiftgate"))
}

pub struct LocalEnvoy {
    pub envoy: EnvoyHandle,
    pub stable_app: SocketAddr,
    pub canary_app: SocketAddr,
    // Last: drops (kills everything, removes the temp dir) after the fields above.
    pub supervisor: Supervisor,
}

/// Starts the apps (no faults, no latency) and Envoy routing between them.
pub async fn start() -> LocalEnvoy {
    require_binary("envoy");
    let mut supervisor = Supervisor::new().unwrap();
    let healthy = Faults {
        error_rate: 0.0,
        latency_ms: 0,
    };
    let app = shiftgate_binary();
    let stable_app = processes::start_app(&mut supervisor, app, "stable-app", "v1", healthy, 1)
        .await
        .unwrap();
    let canary_app = processes::start_app(&mut supervisor, app, "canary-app", "v2", healthy, 2)
        .await
        .unwrap();
    let envoy = processes::start_envoy(&mut supervisor, stable_app, canary_app)
        .await
        .unwrap();
    LocalEnvoy {
        envoy,
        stable_app,
        canary_app,
        supervisor,
    }
}

/// Envoy's own count of requests sent upstream to `cluster` (admin `/stats`).
pub async fn upstream_requests(admin: SocketAddr, cluster: &str) -> u64 {
    let stat = format!("cluster.{cluster}.upstream_rq_total");
    let url = format!("http://{admin}/stats");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let text = http
        .get(&url)
        .query(&[("filter", format!("^{}$", stat.replace('.', r"\.")))])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{stat}: ")))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0)
}
