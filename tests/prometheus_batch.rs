//! Batched Prometheus queries against a real Prometheus: several rollouts' series (one
//! rollout's canary has none), every rollout counting its sequential judges over its own
//! range (some share one), one canary never failed (no 5xx series). The daemon's batched
//! answers (the same query of several targets grouped into one) equal each rollout's
//! queries asked alone, exactly, and cost a bounded number of queries.

mod support;

use std::time::Duration;

use shiftgate::analysis::sample::{AnalysisInput, Sample};
use shiftgate::metrics::prometheus::PrometheusSource;
use shiftgate::metrics::providers::PrometheusAccess;
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{RolloutSpec, Timestamp};
use support::exporter::Exporter;
use support::prometheus::{Prometheus, ScrapeTarget};

const DATA_TIMEOUT: Duration = Duration::from_secs(40);
const ROLLOUTS: u64 = 8;
/// This rollout's canary serves nothing: no series at all.
const SILENT: u64 = 5;
/// This rollout's canary never failed: it has no 5xx series at all, which its error
/// rate and error count must read as 0 (`or vector(0)` alone, `or 0 * …` grouped).
const NEVER_FAILED: u64 = 6;

/// The test stands in for the runtime's clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    chrono::Utc::now()
}

/// Per scrape, for rollout i: 100 requests per release, i (canary) and 1 (stable) of
/// them 5xx; a latency histogram per release.
fn exposition(n: u64) -> String {
    let n = n as f64;
    let mut out = String::from("# TYPE istio_requests_total counter\n");
    let mut histograms = String::from("# TYPE istio_request_duration_milliseconds histogram\n");
    for i in 0..ROLLOUTS {
        for (release, version, errors) in [("stage", "v2", i as f64), ("prod", "v1", 1.0)] {
            if release == "stage" && i == SILENT {
                continue;
            }
            let labels = format!(
                r#"reporter="destination",destination_service="app-{i}.{release}.svc.cluster.local",destination_version="{version}""#
            );
            out += &format!(
                "istio_requests_total{{{labels},response_code=\"200\"}} {}\n",
                (100.0 - errors) * n
            );
            if !(release == "stage" && i == NEVER_FAILED) {
                out += &format!(
                    "istio_requests_total{{{labels},response_code=\"503\"}} {}\n",
                    errors * n
                );
            }
            let name = "istio_request_duration_milliseconds";
            let fast = (50.0 + i as f64) * n;
            histograms += &format!(
                "{name}_bucket{{{labels},le=\"50\"}} {fast}\n{name}_bucket{{{labels},le=\"100\"}} {}\n{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}\n",
                90.0 * n,
                100.0 * n,
                6000.0 * n,
                100.0 * n
            );
        }
    }
    out + &histograms
}

fn rollout(i: u64, address: &str) -> (PolicyRef, RolloutSpec) {
    let yaml = format!(
        "revision: v2\nrouter: {{ istio: {{ virtualService: app-{i}, stable: {{ host: app-{i}.prod.svc.cluster.local, subset: v1 }}, canary: {{ host: app-{i}.stage.svc.cluster.local, subset: v2 }} }} }}\nsteps: [0, 100]\nanalysis:\n  interval: 5s\n  prometheus: {{ address: \"{address}\", timeout: 5s }}\n  metrics:\n    - {{ name: errors, template: istio-error-rate, compare: {{}} }}\n    - {{ name: latency, template: istio-latency-p99, compare: {{}} }}\n    - {{ name: rate, template: istio-request-rate, min: 1 }}\n"
    );
    let spec = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let policy = PolicyRef {
        namespace: "shop".to_owned(),
        name: format!("app-{i}"),
    };
    (policy, spec)
}

/// Queries Prometheus has answered on /api/v1/query (from its own /metrics).
async fn queries_answered(prometheus: &Prometheus) -> f64 {
    let text = reqwest::get(format!("{}/metrics", prometheus.url()))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && l.contains(r#"handler="/api/v1/query""#)
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_answers_equal_each_rollouts_own_answers() {
    let exporter = Exporter::start(exposition).await;
    let prometheus = Prometheus::start_scraping(vec![ScrapeTarget::new(
        "exporter",
        &exporter.address(),
        "/metrics",
    )])
    .await;
    // 15 s of scrapes, so every rollout's range (at most 12 s) is covered.
    prometheus
        .wait_for(
            r#"count_over_time(istio_requests_total{destination_service="app-0.stage.svc.cluster.local",response_code="200"}[1m])"#,
            DATA_TIMEOUT,
            |r| r[0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) >= Some(15.0),
        )
        .await;
    let rollouts: Vec<_> = (0..ROLLOUTS)
        .map(|i| rollout(i, &prometheus.url()))
        .collect();
    let batched = PrometheusSource::for_daemon(PrometheusAccess::open(), None);
    let alone =
        PrometheusSource::for_daemon(PrometheusAccess::open(), None).with_batch_window(None);
    // A second in the past, so every scrape it needs has landed; each rollout counts its
    // sequential judges over its own range.
    let called = now() - chrono::Duration::seconds(1);
    // Rollouts 2k and 2k+1 share a range, so their counts can be asked together.
    let since = |i: u64| Some(called - chrono::Duration::seconds(5 + (i / 2) as i64));
    let before = queries_answered(&prometheus).await;
    let together: Vec<AnalysisInput> = futures::future::join_all(
        rollouts
            .iter()
            .zip(0..)
            .map(|((policy, spec), i)| batched.observe(policy, spec, called, since(i))),
    )
    .await;
    let sent = queries_answered(&prometheus).await - before;
    // Alone, each rollout asks 10 distinct queries (80 in all).
    assert!(sent <= 2.0, "{ROLLOUTS} rollouts sent {sent} queries");
    for (((policy, spec), i), input) in rollouts.iter().zip(0..).zip(&together) {
        assert!(input.at >= called, "the batch's instant is never earlier");
        let single = alone.observe(policy, spec, input.at, since(i)).await;
        assert_eq!(input, &single, "{}", policy.name);
        let errors = &input.metrics[0];
        if i == SILENT {
            assert_eq!(
                errors.canary,
                Sample::NoData,
                "no series is no data, never 0"
            );
        } else {
            let canary = errors
                .canary
                .measured()
                .unwrap_or_else(|| panic!("{errors:?}"));
            let failed = if i == NEVER_FAILED { 0 } else { i };
            assert!(
                (canary.value - failed as f64 / 100.0).abs() < 1e-9,
                "{}: its own error rate, {}",
                policy.name,
                canary.value
            );
        }
    }
}
