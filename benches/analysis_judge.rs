//! One evaluation of three metrics with the sequential judges (two error rates, one
//! latency histogram: the rank test over its 12 buckets and the edges nearest stable's
//! p90/p99), with evidence from 20 earlier intervals at 2000 requests/s.
//! Recorded in docs/benchmarks.md `## Sequential judge`.
// A benchmark's fixed input is an invariant: failing loudly on it is right.
#![allow(clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use shiftgate::analysis::sequential::{ErrorRateJudge, LatencyEvidence, LatencyJudge};
use shiftgate::sim::traffic::{Behaviour, Traffic, TrafficModel};

fn bench_sequential(c: &mut Criterion) {
    let model = TrafficModel::benchmark(2000.0, Behaviour::BENCHMARK_BASELINE);
    let errors = ErrorRateJudge {
        alpha: 0.01 / 3.0,
        tolerance: 0.0,
    };
    let latency = LatencyJudge::with_default_quantiles(0.01 / 3.0, 0.0);
    let mut traffic = Traffic::new(model, 1);
    let mut error_state = errors.start();
    let mut other_state = errors.start();
    let mut latency_state = LatencyEvidence::default();
    for _ in 0..20 {
        let s = traffic.next_scrape(10);
        let (canary, stable) = (s.canary.to_sample(), s.stable.to_sample());
        error_state = errors.judge("errors", &error_state, &canary, &stable).state;
        other_state = errors.judge("5xx", &other_state, &canary, &stable).state;
        latency_state = latency
            .judge("latency", &latency_state, &canary, &stable)
            .state;
    }
    assert!(
        !latency_state.edges.is_empty(),
        "the latency judge chose its edges from the 20 intervals"
    );
    let s = traffic.next_scrape(10);
    let (canary, stable) = (s.canary.to_sample(), s.stable.to_sample());
    c.bench_function("sequential_judge_three_metrics", |b| {
        b.iter(|| {
            let e = errors.judge("errors", black_box(&error_state), &canary, &stable);
            let o = errors.judge("5xx", black_box(&other_state), &canary, &stable);
            let l = latency.judge("latency", black_box(&latency_state), &canary, &stable);
            black_box((e, o, l))
        })
    });
}

criterion_group!(benches, bench_sequential);
criterion_main!(benches);
