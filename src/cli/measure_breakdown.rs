//! Where one measured rollback's time went (a child of `measure`): from the fault to the
//! first scrape that shows a canary failure (read back from Prometheus, which stamps
//! each sample with its scrape's start), to the evaluation that failed (the state
//! file's `lastAnalysis.at`), to the route write (the routes file's mtime), to the
//! poll that saw Envoy serve it. Read after the run, so nothing here slows it down.

use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

/// The instants of one rollback, as offsets from the fault's answer (seconds); `None`
/// when a source could not tell.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Breakdown {
    /// The first scrape (its start) whose sample of the canary's 5xx counter is higher
    /// than the one before it.
    pub first_failing_scrape: Option<f64>,
    /// The evaluation that failed.
    pub evaluation: Option<f64>,
    /// The routes file written with the canary at 0%.
    pub route_written: Option<f64>,
    /// The scrapes (starts) from the first failing one up to the evaluation: 1 when the
    /// first scrape that showed failures was enough.
    pub scrapes_needed: Option<u32>,
}

impl Breakdown {
    pub(super) fn describe(&self, envoy_confirmed: f64) -> String {
        let at = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.2}"));
        format!(
            "fault → failing scrape {} s → evaluation {} s (scrapes needed {}) → route written {} s → envoy {envoy_confirmed:.2} s",
            at(self.first_failing_scrape),
            at(self.evaluation),
            self.scrapes_needed.map_or("?".to_owned(), |n| n.to_string()),
            at(self.route_written),
        )
    }
}

/// Reads the breakdown of a rollback whose fault was answered at `fault`.
pub(super) async fn read(
    http: &reqwest::Client,
    prometheus: std::net::SocketAddr,
    canary_cluster: &str,
    state_file: &Path,
    routes_file: &Path,
    fault: DateTime<Utc>,
) -> Breakdown {
    let offset = |t: DateTime<Utc>| (t - fault).num_milliseconds() as f64 / 1000.0;
    let scrapes = failing_scrapes(http, prometheus, canary_cluster, fault).await;
    let evaluation = evaluation_at(state_file);
    let scrapes_needed = match (&scrapes, evaluation) {
        (Some(list), Some(eval)) if !list.is_empty() => {
            Some(list.iter().filter(|s| **s <= eval).count() as u32)
        }
        _ => None,
    };
    let route_written = std::fs::metadata(routes_file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .and_then(|d| DateTime::from_timestamp_millis(i64::try_from(d.as_millis()).ok()?));
    Breakdown {
        first_failing_scrape: scrapes
            .as_ref()
            .and_then(|l| l.first().copied().map(offset)),
        evaluation: evaluation.map(offset),
        route_written: route_written.map(offset),
        scrapes_needed,
    }
}

/// The starts of the scrapes after `fault` (less 50 ms: the app may fail a request
/// before its answer to the fault arrives), from the first one whose 5xx sample rose.
async fn failing_scrapes(
    http: &reqwest::Client,
    prometheus: std::net::SocketAddr,
    canary_cluster: &str,
    fault: DateTime<Utc>,
) -> Option<Vec<DateTime<Utc>>> {
    let query = format!(
        r#"envoy_cluster_upstream_rq_xx{{envoy_cluster_name="{canary_cluster}",envoy_response_code_class="5"}}[60s]"#
    );
    let url = reqwest::Url::parse_with_params(
        &format!("http://{prometheus}/api/v1/query"),
        &[("query", query.as_str())],
    )
    .ok()?;
    let body: serde_json::Value = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let values = body["data"]["result"].get(0)?["values"].as_array()?;
    let samples: Vec<(DateTime<Utc>, f64)> = values
        .iter()
        .filter_map(|v| {
            let at =
                DateTime::from_timestamp_millis((v.get(0)?.as_f64()? * 1000.0).round() as i64)?;
            let value: f64 = v.get(1)?.as_str()?.parse().ok()?;
            Some((at, value))
        })
        .collect();
    let since = fault - chrono::Duration::milliseconds(50);
    // Run 1 of a stack: the 5xx series is born with the first failure.
    let first_rise = match samples.first() {
        Some((first, _)) if *first >= since => *first,
        _ => {
            samples
                .windows(2)
                .find(|w| w[1].0 >= since && w[1].1 > w[0].1)?[1]
                .0
        }
    };
    Some(
        samples
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| *at >= first_rise)
            .collect(),
    )
}

/// `status.lastAnalysis.at` of the state file: the evaluation that failed.
fn evaluation_at(state_file: &Path) -> Option<DateTime<Utc>> {
    let bytes = std::fs::read(state_file).ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let at = doc["status"]["lastAnalysis"]["at"].as_str()?;
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
