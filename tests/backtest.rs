//! `shiftgate backtest` against a real Prometheus 2.42: a simulated run's draws are
//! written as Istio metrics history (OpenMetrics, backfilled with promtool), and the
//! backtest of the same policy over that history must decide as `simulate` did on the
//! same draws: same outcome, at the same instant, with the same evaluations.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::fmt::Write as _;
use std::process::Command;

use serde_json::Value;
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::parse::parse_str;
use shiftgate::policy::Timestamp;
use shiftgate::sim::noisy_source::DrawnScrape;
use shiftgate::sim::traffic::{TargetCounts, BUCKETS_MS};
use shiftgate::sim::{Scenario, SimReport, Simulation};
use support::prometheus::{Prometheus, PrometheusConfig};

/// Whose standard metrics the history holds, as the built-in templates query them.
#[derive(Clone, Copy)]
enum Family {
    /// `istio_requests_total` and `istio_request_duration_milliseconds_bucket` of the
    /// hosts `shop.stage…` (canary) and `shop.prod…` (stable).
    Istio,
    /// Envoy's cluster statistics of the clusters `demo-canary` and `demo-stable`.
    Envoy,
}

const POLICY: &str = "apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: shop, namespace: prod }
spec:
  revision: v2
  router:
    istio:
      virtualService: prod/shop
      stable: { host: shop.prod.svc.cluster.local }
      canary: { host: shop.stage.svc.cluster.local }
  steps: [{ weight: 20, hold: 2m }, { weight: 50, hold: 2m }, 100]
  analysis:
    interval: 30s
    minRequests: 50
    metrics:
      - { name: error-rate, template: istio-error-rate, max: 0.03 }
      - { name: p99-latency, template: istio-latency-p99, max: 600 }
      - { name: errors-vs-stable, template: istio-error-rate, compare: { maxIncrease: 0.02 }, judge: threshold }
    failureLimit: 1
    inconclusiveLimit: 8
  onFailure: rollback
";

/// The same rollout on Envoy clusters, judged by the `envoy-*` templates.
const ENVOY_POLICY: &str = "apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: shop, namespace: prod }
spec:
  revision: v2
  router:
    envoy:
      routesFile: /nonexistent/routes.yaml
      adminAddress: 127.0.0.1:9
      stableCluster: demo-stable
      canaryCluster: demo-canary
  steps: [{ weight: 20, hold: 2m }, { weight: 50, hold: 2m }, 100]
  analysis:
    interval: 30s
    minRequests: 50
    metrics:
      - { name: error-rate, template: envoy-error-rate, max: 0.03 }
      - { name: p99-latency, template: envoy-latency-p99, max: 600 }
      - { name: errors-vs-stable, template: envoy-error-rate, compare: { maxIncrease: 0.02 }, judge: threshold }
    failureLimit: 1
    inconclusiveLimit: 8
  onFailure: rollback
";

impl Family {
    fn policy(self) -> &'static str {
        match self {
            Family::Istio => POLICY,
            Family::Envoy => ENVOY_POLICY,
        }
    }

    /// The samples of one target's counters at one instant.
    fn samples(self, canary: bool, counts: &TargetCounts, at: i64) -> String {
        let mut out = String::new();
        let ok = counts.requests - counts.errors;
        let (total, failed, bucket, labels) = match self {
            Family::Istio => {
                let host = if canary { "shop.stage" } else { "shop.prod" };
                let labels = format!(
                    r#"reporter="destination",destination_service="{host}.svc.cluster.local""#
                );
                (
                    format!(r#"istio_requests_total{{{labels},response_code="200"}} {ok} {at}"#),
                    format!(
                        r#"istio_requests_total{{{labels},response_code="500"}} {} {at}"#,
                        counts.errors
                    ),
                    "istio_request_duration_milliseconds_bucket",
                    labels,
                )
            }
            Family::Envoy => {
                let cluster = if canary { "demo-canary" } else { "demo-stable" };
                let labels = format!(r#"envoy_cluster_name="{cluster}""#);
                (
                    format!(
                        r#"envoy_cluster_upstream_rq_total{{{labels}}} {} {at}"#,
                        counts.requests
                    ),
                    format!(
                        r#"envoy_cluster_upstream_rq_xx{{{labels},envoy_response_code_class="5"}} {} {at}"#,
                        counts.errors
                    ),
                    "envoy_cluster_upstream_rq_time_bucket",
                    labels,
                )
            }
        };
        let _ = writeln!(out, "{total}\n{failed}");
        for (le, count) in BUCKETS_MS.iter().zip(counts.buckets) {
            let _ = writeln!(out, r#"{bucket}{{{labels},le="{le}"}} {count} {at}"#);
        }
        let _ = writeln!(
            out,
            r#"{bucket}{{{labels},le="+Inf"}} {} {at}"#,
            counts.requests
        );
        out
    }
}

fn scenario(changes: &str) -> String {
    format!(
        "kind: Scenario\nmaxDuration: 10m\ntraffic:\n  requestsPerSecond: 30\n  scrapeInterval: 15s\n  stable: {{ errorRate: 0.005, latency: {{ medianMs: 100, sigma: 0.5 }} }}\n{changes}"
    )
}

fn simulate(
    family: Family,
    scenario_text: &str,
    seed: u64,
) -> (SimReport, Vec<DrawnScrape>, Timestamp) {
    let policy = parse_str("policy.yaml", family.policy())
        .unwrap()
        .remove(0)
        .policy;
    let reference = PolicyRef {
        namespace: "prod".into(),
        name: "shop".into(),
    };
    let scenario = Scenario::parse(scenario_text, "scenario.yaml").unwrap();
    let start = scenario.start;
    let mut sim = Simulation::new(reference, policy.spec, scenario, seed).unwrap();
    while sim.tick() {}
    (sim.report(), sim.scrapes(), start)
}

/// The draws as the proxies' counters, sampled at every scrape instant (and 0 at the
/// start, so the first window's `increase` is exact).
fn openmetrics(family: Family, scrapes: &[DrawnScrape], start: Timestamp) -> String {
    let mut out = String::new();
    let (mut canary, mut stable) = (TargetCounts::default(), TargetCounts::default());
    let mut write = |at: i64, canary: &TargetCounts, stable: &TargetCounts| {
        out.push_str(&family.samples(true, canary, at));
        out.push_str(&family.samples(false, stable, at));
    };
    write(start.timestamp(), &canary, &stable);
    for scrape in scrapes {
        canary.add(&scrape.canary);
        stable.add(&scrape.stable);
        let at = start.timestamp() + i64::try_from(scrape.end.std().as_secs()).unwrap();
        write(at, &canary, &stable);
    }
    out.push_str("# EOF\n");
    out
}

/// Runs `shiftgate backtest` and returns its exit code and JSON report.
fn backtest(family: Family, prometheus: &str, from: Timestamp, to: Timestamp) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, family.policy()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("backtest")
        .arg(&policy)
        .args(["--prometheus", prometheus])
        .args(["--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()])
        .args(["--output", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

/// (time, verdict, canary requests, metric values) of every evaluation.
fn evaluations(report: &Value) -> Vec<(String, String, f64, Vec<f64>)> {
    report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("analysis"))
        .map(|a| {
            (
                a["at"].as_str().unwrap().to_owned(),
                a["verdict"].as_str().unwrap().to_owned(),
                a["canaryRequests"].as_f64().unwrap_or(f64::NAN),
                a["metrics"]
                    .as_array()
                    .map(|ms| {
                        ms.iter()
                            .flat_map(|m| [m["canary"].as_f64(), m["stable"].as_f64()])
                            .flatten()
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect()
}

async fn decides_as_simulate(family: Family, scenario_text: &str, seed: u64, expected: &str) {
    let (simulated, scrapes, start) = simulate(family, scenario_text, seed);
    assert_eq!(simulated.outcome.as_str(), expected, "{simulated:#?}");
    let mut config = PrometheusConfig::new(Vec::new());
    config.history = Some(openmetrics(family, &scrapes, start));
    let prometheus = Prometheus::start_with(config).await;
    let to = start + chrono::Duration::minutes(10);
    let url = prometheus.url();
    let (code, replayed) = tokio::task::spawn_blocking(move || backtest(family, &url, start, to))
        .await
        .unwrap();
    let simulated = serde_json::to_value(&simulated).unwrap();
    let simulated_elapsed = simulated["elapsed"].clone();
    assert_eq!(replayed["outcome"], simulated["outcome"], "{replayed:#}");
    assert_eq!(replayed["elapsed"], simulated["elapsed"], "{replayed:#}");
    assert_eq!(code, if expected == "promoted" { 0 } else { 1 });
    let (replayed, simulated) = (evaluations(&replayed), evaluations(&simulated));
    assert!(simulated.len() >= 4, "{simulated:?}");
    assert_eq!(replayed.len(), simulated.len());
    for (r, s) in replayed.iter().zip(&simulated) {
        assert_eq!((&r.0, &r.1, r.2), (&s.0, &s.1, s.2), "{r:?} vs {s:?}");
        assert_eq!(r.3.len(), s.3.len(), "{r:?} vs {s:?}");
        for (a, b) in r.3.iter().zip(&s.3) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{r:?} vs {s:?}");
        }
    }
    // The text output names the decision and its instant.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, family.policy()).unwrap();
    let url = prometheus.url();
    let text = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_shiftgate"))
            .arg("backtest")
            .arg(&policy)
            .args(["--prometheus", &url])
            .args(["--from", &start.to_rfc3339(), "--to", &to.to_rfc3339()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let elapsed = simulated_elapsed.as_str().unwrap();
    let verb = if expected == "promoted" {
        "promoted"
    } else {
        "rolled back"
    };
    assert!(
        text.contains(&format!("decision: would have {verb} at "))
            && text.contains(&format!("({elapsed} after --from)")),
        "{text}"
    );
}

#[tokio::test]
async fn backtest_of_a_healthy_history_promotes_when_simulate_does() {
    decides_as_simulate(Family::Istio, &scenario(""), 3, "promoted").await;
}

#[tokio::test]
async fn backtest_on_envoy_statistics_rolls_back_on_a_latency_regression_as_simulate_does() {
    decides_as_simulate(
        Family::Envoy,
        &scenario("  changes: [{ from: 1m30s, latency: { medianMs: 300, sigma: 0.5 } }]\n"),
        2,
        "rolledBack",
    )
    .await;
}

#[tokio::test]
async fn backtest_of_an_error_regression_rolls_back_at_the_same_evaluation() {
    decides_as_simulate(
        Family::Istio,
        &scenario("  changes: [{ from: 2m30s, errorRate: 0.1 }]\n"),
        5,
        "rolledBack",
    )
    .await;
}

/// Runs `shiftgate backtest` with `args` after the policy and returns (exit code, stderr).
fn backtest_with(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("backtest")
        .arg(&policy)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn backtest_refuses_a_backwards_range_credentials_in_the_url_and_an_unreachable_prometheus() {
    let (code, stderr) = backtest_with(&[
        "--prometheus",
        "http://127.0.0.1:9",
        "--from",
        "2026-01-05T11:00:00Z",
        "--to",
        "2026-01-05T10:00:00Z",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--to must be after --from"), "{stderr}");

    let (code, stderr) = backtest_with(&[
        "--prometheus",
        "http://127.0.0.1:9",
        "--from",
        "yesterday",
        "--to",
        "2026-01-05T10:00:00Z",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not an RFC 3339 time"), "{stderr}");

    let (code, stderr) = backtest_with(&[
        "--prometheus",
        "http://admin:hunter2@127.0.0.1:9",
        "--from",
        "2026-01-05T10:00:00Z",
        "--to",
        "2026-01-05T11:00:00Z",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("carries credentials"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let closed = support::ports::free_port();
    let (code, stderr) = backtest_with(&[
        "--prometheus",
        &format!("http://127.0.0.1:{closed}"),
        "--from",
        "2026-01-05T10:00:00Z",
        "--to",
        "2026-01-05T11:00:00Z",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("could not be reached"), "{stderr}");
}

/// Over a range Prometheus holds no data for (past its retention), every evaluation is
/// Inconclusive and the policy's reaction (here a rollback) judged nothing: exit 3.
#[tokio::test]
async fn backtest_over_missing_history_is_not_a_decision() {
    let prometheus = Prometheus::start_with(PrometheusConfig::new(Vec::new())).await;
    let url = prometheus.url();
    let from: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
    let to = from + chrono::Duration::minutes(10);
    let (code, report) =
        tokio::task::spawn_blocking(move || backtest(Family::Istio, &url, from, to))
            .await
            .unwrap();
    assert_eq!(code, 3, "{report:#}");
    let evaluations = evaluations(&report);
    assert!(!evaluations.is_empty());
    assert!(
        evaluations.iter().all(|e| e.1 == "Inconclusive"),
        "{evaluations:?}"
    );
}
