//! The daemon's scheduling at 10,000 due rollouts, without an API server: the cost of
//! the `DueQueue` (schedule 10k, start and finish each), and a virtual-time simulation
//! of 10k rollouts at a 10 s interval (16 slots) whose lateness figures are printed
//! once. Recorded in docs/benchmarks.md `## Scheduling at 10,000 rollouts`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use shiftgate::runtime::scheduler::DueQueue;
use shiftgate::runtime::scheduler_sim::{simulate, SimConfig, Start};

const ROLLOUTS: usize = 10_000;

fn config(service_ms: u64, start: Start) -> SimConfig {
    SimConfig {
        rollouts: ROLLOUTS,
        interval_ms: 10_000,
        service_ms,
        jitter_ms: service_ms / 2,
        concurrency: 16,
        duration_ms: 120_000,
        start,
        seed: 1,
    }
}

fn report_lateness() {
    // 10 ms per evaluation: 1.6x the capacity asked for; 20 ms: 0.8x (overloaded).
    // Together: a daemon starting with every rollout due at once (a burst of 10k);
    // Spread: due times spread over the interval (the steady state).
    for (service_ms, start) in [
        (10, Start::Spread),
        (10, Start::Together),
        (20, Start::Spread),
    ] {
        let config = config(service_ms, start);
        let report = simulate(&config);
        println!(
            "scheduler: {ROLLOUTS} rollouts, 10 s interval, 16 slots, {service_ms} ms per evaluation \
             (capacity {:.1}x), {start:?}: lateness p50 {} ms, p99 {} ms, max {} ms; longest gap p50 {} ms, \
             p99 {} ms; never evaluated {}",
            config.capacity_ratio(),
            report.lateness_quantile_ms(0.5),
            report.lateness_quantile_ms(0.99),
            report.lateness_quantile_ms(1.0),
            report.gap_quantile_ms(0.5),
            report.gap_quantile_ms(0.99),
            report.never_evaluated(),
        );
    }
}

fn bench_due_queue(c: &mut Criterion) {
    report_lateness();
    c.bench_function("due_queue_10k_schedule_start_finish", |b| {
        b.iter(|| {
            let mut queue: DueQueue<usize, u64> = DueQueue::new(16);
            for rollout in 0..ROLLOUTS {
                queue.schedule(rollout, (rollout as u64 * 7919) % 10_000);
            }
            let mut started = 0;
            while let Some((rollout, due)) = queue.pop_due(u64::MAX / 2) {
                queue.finish(&rollout, Some(due + 10_000));
                started += 1;
                if started == ROLLOUTS {
                    break;
                }
            }
            black_box(started)
        })
    });
}

criterion_group!(benches, bench_due_queue);
criterion_main!(benches);
