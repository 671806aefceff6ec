//! Regression tests: see tests/regression.rs. Issue "scale" §6: time to rollback,
//! evaluations on new data while a canary fails, and the scrape phase learned per group
//! of rollouts rather than per rollout.

use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeZone;

use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::engine::types::{Action, Observation};
use shiftgate::engine::Plan;
use shiftgate::metrics::freshness::{learn, ScrapePhase};
use shiftgate::metrics::prometheus::PrometheusSource;
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::status::{Phase, RolloutStatus};
use shiftgate::policy::{RolloutPolicy, RolloutSpec, Timestamp};
use shiftgate::router::ManagedRoute;
use shiftgate::runtime::clock::{Clock, SystemClock};
use shiftgate::runtime::fresh_data::FreshData;

use super::support::exporter::Exporter;
use super::support::prometheus::{Prometheus, ScrapeTarget};

const START_MS: i64 = 1_767_607_200_000;

/// Scrapes land at `…300 ms` of every second; the canary starts failing half its
/// requests at `fault_ms`.
struct FailsAt {
    fault_ms: i64,
}

#[async_trait]
impl MetricSource for FailsAt {
    async fn observe(
        &self,
        _policy: &PolicyRef,
        _spec: &RolloutSpec,
        at: Timestamp,
        _counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        let error_rate = if at.timestamp_millis() >= self.fault_ms {
            0.5
        } else {
            0.0
        };
        AnalysisInput {
            at,
            canary_requests: Sample::value(1000.0),
            metrics: vec![MetricObservation {
                name: "error-rate".to_owned(),
                canary: Sample::value(error_rate),
                stable: None,
            }],
        }
    }

    async fn scrape_phase(
        &self,
        _policy: &PolicyRef,
        _spec: &RolloutSpec,
        at: Timestamp,
    ) -> Option<ScrapePhase> {
        let millis = at.timestamp_millis();
        let latest = millis - (millis - 300).rem_euclid(1000);
        learn(&[vec![latest - 2000, latest - 1000, latest]])
    }
}

const POLICY: &str = "apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: checkout, namespace: shop }
spec:
  revision: \"2\"
  router:
    istio:
      virtualService: checkout
      stable: { host: checkout.prod.svc.cluster.local }
      canary: { host: checkout.stage.svc.cluster.local }
  steps: [0, { weight: 50, hold: 10m }, 100]
  analysis:
    interval: 10s
    window: 30s
    prometheus: { address: \"http://prometheus:9090\" }
    metrics:
      - { name: error-rate, template: istio-error-rate, max: 0.05 }
    failureLimit: 3
";

/// With a 10 s interval and a 1 s scrape, a canary that started failing was looked at
/// again only one whole interval after each failed evaluation: `failureLimit: 3` took
/// 4 intervals (~40 s) to roll back although every scrape showed the failures. During a
/// failing trend the next evaluation must come at the next scrape; a healthy rollout
/// still costs one evaluation per interval.
#[tokio::test]
async fn a_failing_trend_waits_a_whole_interval_for_the_next_evaluation() {
    let policy: RolloutPolicy = serde_yaml_ng::from_str(POLICY).unwrap();
    let spec = policy.spec;
    let plan = Plan::new(&spec).unwrap();
    let policy_ref = PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    };
    let start = chrono::Utc.timestamp_millis_opt(START_MS).unwrap();
    let fault_ms = START_MS + 35_000;
    let source = FailsAt { fault_ms };
    let fresh = FreshData::default();
    let mut state = RolloutStatus {
        revision: Some("2".to_owned()),
        phase: Phase::Progressing,
        step: 1,
        canary_weight: 50,
        started_at: Some(start),
        step_started_at: Some(start),
        last_evaluation_at: Some(start),
        checks_passed: true,
        ..RolloutStatus::default()
    };
    let live = Ok(ManagedRoute {
        canary_weight: 50,
        test_route: false,
    });
    // Each tick reads the clock 10 ms after the wake time it asked for.
    let latency = chrono::Duration::milliseconds(10);
    let mut now = start + latency;
    let mut evaluations = Vec::new();
    let mut rolled_back_at = None;
    while now < start + chrono::Duration::seconds(120) {
        let mut observation = Observation::at(now, live.clone());
        let mut decision = shiftgate::engine::step(&plan, &state, &observation);
        if decision.actions.contains(&Action::QueryMetrics) {
            observation.analysis = Some(source.observe(&policy_ref, &spec, now, None).await);
            decision = shiftgate::engine::step(&plan, &state, &observation);
            evaluations.push(now.timestamp_millis() - START_MS);
        }
        if decision.route_write().is_some_and(|r| r.canary_weight == 0) {
            rolled_back_at = Some(now.timestamp_millis() - START_MS);
            break;
        }
        state = decision.state;
        let wake = fresh
            .wake_at(&source, &policy_ref, &spec, &state, decision.wake_at, now)
            .await
            .expect("an analysing rollout wakes");
        now = wake.max(now) + latency;
    }
    let healthy: Vec<i64> = evaluations
        .iter()
        .copied()
        .filter(|at| *at < fault_ms - START_MS)
        .collect();
    assert!(
        healthy.windows(2).all(|w| w[1] - w[0] >= 9_900),
        "a healthy rollout is evaluated once per interval: {evaluations:?}"
    );
    let first_failure = evaluations
        .iter()
        .copied()
        .find(|at| *at >= fault_ms - START_MS)
        .expect("an evaluation after the fault");
    let rolled_back_at = rolled_back_at.unwrap_or_else(|| {
        panic!("no rollback within 120 s; evaluations (ms from start): {evaluations:?}")
    });
    // Four failed evaluations in a row (failureLimit 3), one per scrape.
    assert!(
        rolled_back_at - first_failure <= 3_200,
        "rolled back {} ms after the first failed evaluation; evaluations (ms from start): {evaluations:?}",
        rolled_back_at - first_failure
    );
}

/// `istio_requests_total` of `services` canaries, growing by one request per scrape.
fn exposition(services: usize, scrape: u64) -> String {
    let mut text = String::from("# TYPE istio_requests_total counter\n");
    for i in 0..services {
        text.push_str(&format!(
            "istio_requests_total{{reporter=\"destination\",destination_service=\"svc-{i}.stage.svc.cluster.local\",response_code=\"200\"}} {scrape}\n"
        ));
    }
    text
}

fn istio_policy(i: usize, prometheus: &str) -> (PolicyRef, RolloutSpec) {
    let yaml = format!(
        "apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: svc-{i}, namespace: shop }}
spec:
  revision: \"2\"
  router:
    istio:
      virtualService: svc-{i}
      stable: {{ host: svc-{i}.prod.svc.cluster.local }}
      canary: {{ host: svc-{i}.stage.svc.cluster.local }}
  steps: [0, 50, 100]
  analysis:
    interval: 10s
    prometheus: {{ address: \"{prometheus}\" }}
    metrics:
      - {{ name: error-rate, template: istio-error-rate, max: 0.05 }}
"
    );
    let policy: RolloutPolicy = serde_yaml_ng::from_str(&yaml).unwrap();
    (
        PolicyRef {
            namespace: "shop".to_owned(),
            name: format!("svc-{i}"),
        },
        policy.spec,
    )
}

/// The instant queries Prometheus has answered (its own counter).
async fn queries_answered(prometheus: &Prometheus) -> f64 {
    let text = reqwest::get(format!("{}/metrics", prometheus.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && l.contains("handler=\"/api/v1/query\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Each rollout learned its scrape phase with its own range query, again every 5 min:
/// 10,000 rollouts were 10,000 queries per 5 min. Rollouts whose canaries one job
/// scrapes through one connection in one namespace must share: a bounded number of
/// queries for any number of them, and each still gets its own phase.
#[tokio::test]
async fn the_scrape_phase_is_learned_once_per_rollout() {
    const ROLLOUTS: usize = 24;
    let exporter = Exporter::start(|n| exposition(ROLLOUTS, n)).await;
    let prometheus = Prometheus::start_scraping(vec![ScrapeTarget::new(
        "mesh",
        &exporter.address(),
        "/metrics",
    )])
    .await;
    prometheus
        .wait_for(
            "count_over_time(istio_requests_total{destination_service=\"svc-0.stage.svc.cluster.local\"}[30s])",
            Duration::from_secs(30),
            |result| {
                result[0]["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 3.0)
            },
        )
        .await;
    let source = PrometheusSource::new(None);
    let policies: Vec<_> = (0..ROLLOUTS)
        .map(|i| istio_policy(i, &prometheus.url()))
        .collect();
    let before = queries_answered(&prometheus).await;
    let now = SystemClock.now();
    let mut first = 0;
    for (policy, spec) in &policies {
        first += usize::from(source.scrape_phase(policy, spec, now).await.is_some());
    }
    // The rollouts that joined after the group's first query: in its next one.
    let later = now + chrono::Duration::seconds(11);
    let mut phases = Vec::new();
    for (policy, spec) in &policies {
        phases.push(source.scrape_phase(policy, spec, later).await);
    }
    let queries = queries_answered(&prometheus).await - before;
    let asked = SystemClock.now();
    assert!(
        queries <= 4.0,
        "{queries} queries to learn the phase of {ROLLOUTS} rollouts on one job (first round: {first} known)"
    );
    for (i, phase) in phases.iter().enumerate() {
        let phase = phase.unwrap_or_else(|| panic!("svc-{i}: no phase"));
        assert_eq!(phase.period, chrono::Duration::seconds(1), "svc-{i}");
        let age = asked - phase.latest;
        assert!(
            age >= chrono::Duration::zero() && age <= chrono::Duration::seconds(3),
            "svc-{i}: newest sample {age} before the question"
        );
    }
}
