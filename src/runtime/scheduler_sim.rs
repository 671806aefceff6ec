//! A deterministic simulation of the daemon's scheduling: N rollouts on one interval,
//! a service time per evaluation (seeded jitter), bounded concurrency, virtual time in
//! milliseconds. It runs the real [`DueQueue`] and reports how late evaluations
//! started and how long each rollout waited between evaluations, so the fairness and
//! on-time properties are checked without a clock, an API server or tokio.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scheduler::DueQueue;

/// When the rollouts are first due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// All at time 0 (a daemon starting with every rollout in progress).
    Together,
    /// Spread uniformly over the first interval.
    Spread,
}

#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    pub rollouts: usize,
    pub interval_ms: u64,
    /// Mean service time of one evaluation; each one is drawn in `±jitter_ms`.
    pub service_ms: u64,
    pub jitter_ms: u64,
    pub concurrency: usize,
    pub duration_ms: u64,
    pub start: Start,
    pub seed: u64,
}

impl SimConfig {
    /// Evaluations per second the slots can serve over those the rollouts ask for.
    pub fn capacity_ratio(&self) -> f64 {
        let capacity = self.concurrency as f64 * 1000.0 / self.service_ms.max(1) as f64;
        let demand = self.rollouts as f64 * 1000.0 / self.interval_ms.max(1) as f64;
        capacity / demand
    }
}

/// What a simulation measured. Lateness: start of an evaluation minus its due time.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Every evaluation's lateness, sorted.
    pub lateness_ms: Vec<u64>,
    /// Per rollout: evaluations started.
    pub evaluations: Vec<u32>,
    /// Per rollout: the longest time between two starts (or from 0 to the first, or
    /// from the last to the end of the run).
    pub longest_gap_ms: Vec<u64>,
}

impl SimReport {
    /// The `q` quantile (0 to 1) of lateness.
    pub fn lateness_quantile_ms(&self, q: f64) -> u64 {
        quantile(&self.lateness_ms, q)
    }

    pub fn never_evaluated(&self) -> usize {
        self.evaluations.iter().filter(|&&e| e == 0).count()
    }

    /// The `q` quantile of the per-rollout longest gap.
    pub fn gap_quantile_ms(&self, q: f64) -> u64 {
        let mut gaps = self.longest_gap_ms.clone();
        gaps.sort_unstable();
        quantile(&gaps, q)
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs one simulation. After an evaluation that started at `s` and ended at `e`, the
/// rollout is due at `max(s + interval, e + MIN_REQUEUE)`, as the engine's wake time
/// (`last evaluation + interval`) and [`super::scheduler::requeue_after`] make it.
pub fn simulate(config: &SimConfig) -> SimReport {
    let min_requeue = super::scheduler::MIN_REQUEUE.as_millis() as u64;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut queue: DueQueue<usize, u64> = DueQueue::new(config.concurrency);
    for rollout in 0..config.rollouts {
        let due = match config.start {
            Start::Together => 0,
            Start::Spread => rng.random_range(0..config.interval_ms.max(1)),
        };
        queue.schedule(rollout, due);
    }
    let mut report = SimReport {
        lateness_ms: Vec::new(),
        evaluations: vec![0; config.rollouts],
        longest_gap_ms: vec![0; config.rollouts],
    };
    let mut last_start = vec![0u64; config.rollouts];
    // Running evaluations by end time: (end, rollout, start).
    let mut running: BinaryHeap<Reverse<(u64, usize, u64)>> = BinaryHeap::new();
    let mut now = 0u64;
    while now <= config.duration_ms {
        while let Some((rollout, due)) = queue.pop_due(now) {
            report.lateness_ms.push(now - due.min(now));
            let gap = now - last_start[rollout];
            report.longest_gap_ms[rollout] = report.longest_gap_ms[rollout].max(gap);
            last_start[rollout] = now;
            report.evaluations[rollout] += 1;
            let low = config.service_ms.saturating_sub(config.jitter_ms).max(1);
            let service = rng.random_range(low..=config.service_ms + config.jitter_ms);
            running.push(Reverse((now + service, rollout, now)));
        }
        let next_end = running.peek().map(|Reverse((end, _, _))| *end);
        let next = match (next_end, queue.next_due()) {
            (Some(a), Some(b)) => a.min(b.max(now)),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => break,
            },
        };
        now = next.max(now);
        while let Some(&Reverse((end, rollout, start))) = running.peek() {
            if end > now {
                break;
            }
            running.pop();
            let due = (start + config.interval_ms).max(end + min_requeue);
            queue.finish(&rollout, Some(due));
        }
    }
    for (rollout, last) in last_start.iter().enumerate() {
        let tail = config.duration_ms.saturating_sub(*last);
        report.longest_gap_ms[rollout] = report.longest_gap_ms[rollout].max(tail);
    }
    report.lateness_ms.sort_unstable();
    report
}
