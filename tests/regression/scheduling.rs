//! Regression tests: see tests/regression.rs. Issue "scale" §4 and §6: evaluations in
//! order of their due time, fairly, and timed to the data.

use async_trait::async_trait;
use chrono::TimeZone;

use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::engine::types::{Action, Observation};
use shiftgate::engine::Plan;
use shiftgate::metrics::freshness::ScrapePhase;
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::status::{Phase, RolloutStatus};
use shiftgate::policy::{RolloutPolicy, RolloutSpec, Timestamp};
use shiftgate::router::ManagedRoute;
use shiftgate::runtime::fresh_data::FreshData;
use shiftgate::runtime::scheduler::AFTER_SCRAPE;
use shiftgate::runtime::scheduler_sim::{simulate, SimConfig, Start};

/// With every slot busy (half the capacity the rollouts ask for), kube's queue took
/// overdue rollouts in hash order: the same ones were evaluated again and again, the
/// others waited for minutes (p99 gap 39–57 s at a 10 s interval). Every rollout must
/// be evaluated, and all about equally often.
#[test]
fn rollouts_that_start_first_starve_the_rest() {
    for seed in 0..4 {
        let config = SimConfig {
            rollouts: 3_000,
            interval_ms: 10_000,
            service_ms: 80,
            jitter_ms: 40,
            concurrency: 16,
            duration_ms: 180_000,
            start: Start::Together,
            seed,
        };
        assert!(config.capacity_ratio() < 0.7, "overloaded on purpose");
        let report = simulate(&config);
        assert_eq!(report.never_evaluated(), 0, "seed {seed}");
        let fewest = report.evaluations.iter().min().copied().unwrap_or(0);
        let most = report.evaluations.iter().max().copied().unwrap_or(0);
        assert!(
            most - fewest <= 1,
            "seed {seed}: a rollout was evaluated {most} times, another {fewest}"
        );
        // The wait is spread: nobody waits much more than the typical rollout.
        let (median, p99) = (report.gap_quantile_ms(0.5), report.gap_quantile_ms(0.99));
        assert!(
            p99 * 10 <= median * 12,
            "seed {seed}: p99 gap {p99} ms, median {median} ms"
        );
    }
}

/// A metric source whose data lands at `…300 ms` of every second (a 1 s scrape).
struct ScrapesAtThreeHundred;

#[async_trait]
impl MetricSource for ScrapesAtThreeHundred {
    async fn observe(
        &self,
        _policy: &PolicyRef,
        _spec: &RolloutSpec,
        at: Timestamp,
        _counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        healthy(at)
    }

    async fn scrape_phase(
        &self,
        _policy: &PolicyRef,
        _spec: &RolloutSpec,
        at: Timestamp,
    ) -> Option<ScrapePhase> {
        let millis = at.timestamp_millis();
        let latest = millis - (millis - 300).rem_euclid(1000);
        Some(ScrapePhase {
            latest: chrono::Utc.timestamp_millis_opt(latest).single()?,
            period: chrono::Duration::seconds(1),
            ingest: chrono::Duration::from_std(AFTER_SCRAPE).ok()?,
        })
    }
}

fn healthy(at: Timestamp) -> AnalysisInput {
    AnalysisInput {
        at,
        canary_requests: Sample::value(1000.0),
        metrics: vec![MetricObservation {
            name: "error-rate".to_owned(),
            canary: Sample::value(0.0),
            stable: None,
        }],
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
    interval: 1s
    window: 5s
    prometheus: { address: \"http://prometheus:9090\" }
    metrics:
      - { name: error-rate, template: istio-error-rate, max: 0.05 }
";

/// With a 1 s scrape and a 1 s interval, an evaluation fell anywhere between two
/// scrapes (0.34 s after the one that showed the failures, on average), and each tick's
/// latency pushed the next one later still. Every evaluation must start just after a
/// scrape (`AFTER_SCRAPE` plus that tick's latency), one per second, tick after tick.
#[tokio::test]
async fn evaluation_ignores_the_scrape_phase() {
    let policy: RolloutPolicy = serde_yaml_ng::from_str(POLICY).unwrap();
    let spec = policy.spec;
    let plan = Plan::new(&spec).unwrap();
    let policy_ref = PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    };
    let source = ScrapesAtThreeHundred;
    let fresh = FreshData::default();
    let start = chrono::Utc.timestamp_millis_opt(1_767_607_200_000).unwrap();
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
    // Each tick reads the clock 5 to 15 ms after the wake time it asked for.
    let mut ticks = 0i64;
    let mut latency = || {
        ticks += 1;
        chrono::Duration::milliseconds(5 + (ticks * 7) % 11)
    };
    let mut now = start + latency();
    let mut evaluations = Vec::new();
    while now < start + chrono::Duration::seconds(30) {
        let mut observation = Observation::at(now, live.clone());
        let mut decision = shiftgate::engine::step(&plan, &state, &observation);
        if decision.actions.contains(&Action::QueryMetrics) {
            observation.analysis = Some(source.observe(&policy_ref, &spec, now, None).await);
            decision = shiftgate::engine::step(&plan, &state, &observation);
            evaluations.push(now);
        }
        state = decision.state;
        let wake = fresh
            .wake_at(&source, &policy_ref, &spec, &state, decision.wake_at, now)
            .await
            .expect("an analysing rollout wakes");
        now = wake.max(now) + latency();
    }
    let after = chrono::Duration::from_std(AFTER_SCRAPE).unwrap();
    // The first evaluation comes when the step's interval first ends; from the second
    // on, each is just after a scrape (and the tick's latency, not a sum of them).
    for at in evaluations.iter().skip(1) {
        let since_scrape = (at.timestamp_millis() - 300).rem_euclid(1000);
        assert!(
            since_scrape >= after.num_milliseconds() && since_scrape <= after.num_milliseconds() + 20,
            "an evaluation at {at} is {since_scrape} ms after the last scrape; evaluations: {evaluations:?}"
        );
    }
    assert!(
        evaluations.len() >= 28,
        "one evaluation per second: {} in 30 s",
        evaluations.len()
    );
}
