//! One engine tick in the steady state: a progressing step whose evaluation is due, with
//! an analysis input of three metrics (max, max, compare). Recorded in
//! docs/benchmarks.md `## Engine tick`.
// A benchmark's fixed input is an invariant: failing loudly on it is right.
#![allow(clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use shiftgate::analysis::sample::{AnalysisInput, Measured, MetricObservation, Sample};
use shiftgate::engine::{step, Observation, Plan};
use shiftgate::policy::status::Phase;
use shiftgate::policy::{RolloutSpec, RolloutStatus};
use shiftgate::router::ManagedRoute;

const SPEC: &str = r#"{
  "revision": "v2",
  "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
  "steps": [0, {"weight": 30, "hold": "10m"}, 60, 100],
  "testRoute": { "cookie": "test=true" },
  "analysis": {
    "interval": "30s", "minRequests": 100, "failureLimit": 1,
    "metrics": [
      { "name": "error-rate", "template": "istio-error-rate", "max": 0.01 },
      { "name": "p99-latency", "template": "istio-latency-p99", "max": 500 },
      { "name": "errors-vs-stable", "template": "istio-error-rate", "compare": { "maxIncrease": 0.005 } }
    ]
  }
}"#;

fn sample(value: f64) -> Sample {
    Sample::Value(Measured {
        value,
        requests: Some(1234.0),
        ..Measured::default()
    })
}

fn bench_engine_step(c: &mut Criterion) {
    let spec: RolloutSpec = serde_json::from_str(SPEC).expect("bench spec parses");
    let plan = Plan::new(&spec).expect("bench spec is a valid plan");
    let t0 = chrono::DateTime::from_timestamp(1_767_607_200, 0).expect("valid instant");
    let state = RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Progressing,
        step: 1,
        canary_weight: 30,
        test_route: true,
        checks_passed: true,
        started_at: Some(t0),
        step_started_at: Some(t0),
        last_evaluation_at: Some(t0 + chrono::Duration::seconds(30)),
        ..RolloutStatus::default()
    };
    let now = t0 + chrono::Duration::seconds(90);
    let mut obs = Observation::at(
        now,
        Ok(ManagedRoute {
            canary_weight: 30,
            test_route: true,
        }),
    );
    obs.analysis = Some(AnalysisInput {
        at: now,
        canary_requests: sample(1234.0),
        metrics: vec![
            MetricObservation {
                name: "error-rate".into(),
                canary: sample(0.002),
                stable: None,
            },
            MetricObservation {
                name: "p99-latency".into(),
                canary: sample(180.0),
                stable: None,
            },
            MetricObservation {
                name: "errors-vs-stable".into(),
                canary: sample(0.002),
                stable: Some(sample(0.0019)),
            },
        ],
    });
    // The steady state: conditions, history and a last analysis already in place.
    let mut warm = obs.clone();
    warm.now = t0 + chrono::Duration::seconds(60);
    let state = step(&plan, &state, &warm).state;
    // Sanity: this is the steady path (an evaluation that passes, no write).
    let d = step(&plan, &state, &obs);
    assert!(d.state.last_analysis.is_some() && d.route_write().is_none());
    c.bench_function("engine_step_progressing_3_metrics", |b| {
        b.iter(|| step(black_box(&plan), black_box(&state), black_box(&obs)))
    });
    let idle = Observation::at(
        t0 + chrono::Duration::seconds(75),
        Ok(ManagedRoute {
            canary_weight: 30,
            test_route: true,
        }),
    );
    c.bench_function("engine_step_nothing_due", |b| {
        b.iter(|| step(black_box(&plan), black_box(&state), black_box(&idle)))
    });
}

criterion_group!(benches, bench_engine_step);
criterion_main!(benches);
