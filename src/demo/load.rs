//! The demo load generator: a steady stream of requests to Envoy's listener, counting
//! the answers per version, so the demo shows the split users actually get.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::app::VERSION_HEADER;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many requests are in flight; ticks beyond it are skipped and counted.
const MAX_IN_FLIGHT: usize = 256;

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Envoy's listener; must be a loopback address.
    pub target: SocketAddr,
    pub requests_per_second: u32,
    /// The load stops after this long (or when cancelled).
    pub duration: Duration,
    /// Extra request headers, e.g. a test-route cookie.
    pub headers: Vec<(String, String)>,
}

/// Answers of one version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionCounts {
    pub ok: u64,
    pub server_errors: u64,
}

/// What the load saw so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Answers by the version header of the app that answered.
    pub per_version: BTreeMap<String, VersionCounts>,
    /// Answers without a version (e.g. Envoy's own 503).
    pub unversioned: u64,
    /// Requests that got no answer (connection refused, timeout).
    pub transport_errors: u64,
    /// Ticks skipped because too many requests were in flight.
    pub skipped: u64,
}

impl LoadReport {
    pub fn total_answered(&self) -> u64 {
        self.per_version
            .values()
            .map(|c| c.ok + c.server_errors)
            .sum::<u64>()
            + self.unversioned
    }

    /// Counts since `earlier` (an older snapshot of the same load).
    pub fn since(&self, earlier: &LoadReport) -> LoadReport {
        let per_version = self
            .per_version
            .iter()
            .map(|(version, now)| {
                let before = earlier
                    .per_version
                    .get(version)
                    .copied()
                    .unwrap_or_default();
                let delta = VersionCounts {
                    ok: now.ok.saturating_sub(before.ok),
                    server_errors: now.server_errors.saturating_sub(before.server_errors),
                };
                (version.clone(), delta)
            })
            .collect();
        LoadReport {
            per_version,
            unversioned: self.unversioned.saturating_sub(earlier.unversioned),
            transport_errors: self
                .transport_errors
                .saturating_sub(earlier.transport_errors),
            skipped: self.skipped.saturating_sub(earlier.skipped),
        }
    }
}

/// A running load; read its counts at any time.
#[derive(Clone, Default)]
pub struct LoadCounters(Arc<Mutex<LoadReport>>);

impl LoadCounters {
    pub fn snapshot(&self) -> LoadReport {
        match self.0.lock() {
            Ok(report) => report.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn record(&self, update: impl FnOnce(&mut LoadReport)) {
        match self.0.lock() {
            Ok(mut report) => update(&mut report),
            Err(poisoned) => update(&mut poisoned.into_inner()),
        }
    }
}

/// Sends `config.requests_per_second` requests per second to `config.target` until the
/// duration passes or `stop` is cancelled, recording answers in `counters`. Returns
/// once every request in flight has finished.
pub async fn run_load(
    config: &LoadConfig,
    counters: &LoadCounters,
    stop: &CancellationToken,
) -> Result<LoadReport, String> {
    if !config.target.ip().is_loopback() {
        return Err(format!(
            "the demo load only targets loopback addresses, not {}",
            config.target
        ));
    }
    if config.requests_per_second == 0 {
        return Err("the load needs at least one request per second".to_owned());
    }
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the load's HTTP client: {e}"))?;
    let url = format!("http://{}/", config.target);
    let period = Duration::from_secs_f64(1.0 / f64::from(config.requests_per_second));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(config.duration);
    tokio::pin!(deadline);
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = &mut deadline => break,
            _ = ticks.tick() => {}
        }
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT {
            counters.record(|r| r.skipped += 1);
            continue;
        }
        let mut request = http.get(&url);
        for (name, value) in &config.headers {
            request = request.header(name, value);
        }
        let counters = counters.clone();
        in_flight.spawn(async move { record_answer(&counters, request.send().await) });
    }
    while in_flight.join_next().await.is_some() {}
    Ok(counters.snapshot())
}

fn record_answer(counters: &LoadCounters, answer: reqwest::Result<reqwest::Response>) {
    let Ok(response) = answer else {
        counters.record(|r| r.transport_errors += 1);
        return;
    };
    let failed = response.status().is_server_error();
    let version = response
        .headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    counters.record(|report| match version {
        Some(version) => {
            let counts = report.per_version.entry(version).or_default();
            if failed {
                counts.server_errors += 1;
            } else {
                counts.ok += 1;
            }
        }
        None => report.unversioned += 1,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::demo::app::{router, Faults};

    #[tokio::test]
    async fn steady_load_counts_answers_per_version() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let faults = Faults {
            error_rate: 0.5,
            latency_ms: 0,
        };
        let server = tokio::spawn(async move {
            axum::serve(listener, router("v9", faults, 7))
                .await
                .unwrap();
        });
        let config = LoadConfig {
            target,
            requests_per_second: 100,
            duration: Duration::from_millis(500),
            headers: Vec::new(),
        };
        let report = run_load(&config, &LoadCounters::default(), &CancellationToken::new())
            .await
            .unwrap();
        let counts = report.per_version["v9"];
        // 100/s for 0.5s: at most 51 (the first tick fires at once); fewer when the
        // machine is busy, since late ticks are delayed, never bunched up.
        assert!(
            (10..=51).contains(&(counts.ok + counts.server_errors)),
            "{report:?}"
        );
        assert!(counts.ok > 0 && counts.server_errors > 0, "{report:?}");
        assert_eq!(report.transport_errors, 0);
        let later = LoadReport::default();
        assert_eq!(report.since(&later), report);
        server.abort();
    }

    #[tokio::test]
    async fn only_loopback_targets_are_accepted() {
        let config = LoadConfig {
            target: "192.0.2.1:80".parse().unwrap(),
            requests_per_second: 1,
            duration: Duration::from_millis(10),
            headers: Vec::new(),
        };
        let err = run_load(&config, &LoadCounters::default(), &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.contains("loopback"), "{err}");
    }
}
