//! The e-process keeps its promise: at the null boundary (the canary exactly `1 +
//! tolerance` times worse than stable), over many seeded rollouts that look at every
//! interval, the share that ever crosses `1/α` stays at or below α.
//!
//! The same holds for the latency judge (rank test and edges together) on simulated
//! histograms with canary and stable drawn alike.
//!
//! The bound allows three binomial standard errors above α, so the test is not flaky;
//! it still fails when the mixture is not normalised (every weight 1 instead of 1/10
//! multiplies the evidence by 10, and the crossing rate goes well past the bound).

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::analysis::sequential::evidence::{IntervalCounts, RatioEvidence, Standing};
use crate::analysis::sequential::{LatencyEvidence, LatencyJudge};
use crate::analysis::Verdict;
use crate::sim::traffic::{poisson, Behaviour, SlowTail, Traffic, TrafficModel};

const SEEDS: u64 = 2000;
const ALPHA: f64 = 0.05;
/// 5/10/25/50 % for 20 intervals each: a rollout of 15 s scrapes.
const WEIGHTS: [f64; 4] = [0.05, 0.10, 0.25, 0.50];
const INTERVALS_PER_STEP: usize = 20;

/// Draws a rollout with `requests` per interval, stable's event share `p_stable` and
/// the canary's `ratio × p_stable`; returns whether the evidence ever crossed 1/α.
fn crosses(seed: u64, requests: f64, p_stable: f64, tolerance: f64, ratio: f64) -> bool {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut evidence = RatioEvidence::new(1.0 + tolerance);
    let p_canary = (p_stable * ratio).min(1.0);
    for weight in WEIGHTS {
        for _ in 0..INTERVALS_PER_STEP {
            // Poisson thinning: events and non-events independent Poisson, so given
            // the requests the events are binomial, as with real requests.
            let side = |rng: &mut StdRng, share: f64, p: f64| {
                let events = poisson(rng, requests * share * p) as f64;
                let others = poisson(rng, requests * share * (1.0 - p)) as f64;
                (events + others, events)
            };
            let (canary_trials, canary_events) = side(&mut rng, weight, p_canary);
            let (stable_trials, stable_events) = side(&mut rng, 1.0 - weight, p_stable);
            let counts = IntervalCounts {
                canary_trials,
                canary_events,
                stable_trials,
                stable_events,
            };
            if evidence.update(counts, ALPHA) == Standing::Worse {
                return true;
            }
        }
    }
    false
}

/// The largest crossing count that still agrees with a rate of at most α.
fn bound() -> f64 {
    let n = SEEDS as f64;
    n * ALPHA + 3.0 * (n * ALPHA * (1.0 - ALPHA)).sqrt()
}

fn crossing_count(requests: f64, p_stable: f64, tolerance: f64, ratio: f64) -> f64 {
    (0..SEEDS)
        .filter(|seed| crosses(*seed, requests, p_stable, tolerance, ratio))
        .count() as f64
}

#[test]
fn error_rates_at_the_null_boundary_cross_at_most_alpha() {
    // 0.5 % errors, 20 % tolerance, 30,000 requests per interval (2000/s, 15 s).
    let crossings = crossing_count(30_000.0, 0.005, 0.2, 1.2);
    assert!(
        crossings <= bound(),
        "{crossings} of {SEEDS} crossed, bound {}",
        bound()
    );
}

#[test]
fn slow_shares_at_the_null_boundary_cross_at_most_alpha() {
    // Half of the requests slower than the edge (the p50 edge): far from Poisson,
    // the binomial case the conditioning argument has to cover.
    let crossings = crossing_count(750.0, 0.5, 0.1, 1.1);
    assert!(
        crossings <= bound(),
        "{crossings} of {SEEDS} crossed, bound {}",
        bound()
    );
}

#[test]
fn a_real_regression_does_cross() {
    // The same test has power: a canary 2× worse than stable at 2000/s crosses in
    // nearly every run, so the bound above is not met by an e-process that never moves.
    let crossings = crossing_count(30_000.0, 0.005, 0.2, 2.0);
    assert!(crossings >= 0.99 * SEEDS as f64, "{crossings} of {SEEDS}");
}

/// A rollout of the latency judge (tolerance 0: rank test and edges) on traffic from
/// `sim::traffic` at `rps`, the canary behaving as `canary`; whether it ever failed.
fn latency_fails(seed: u64, rps: f64, canary: Behaviour) -> bool {
    let model = TrafficModel::benchmark(rps, canary);
    let judge = LatencyJudge::with_default_quantiles(ALPHA, 0.0);
    let mut traffic = Traffic::new(model, seed);
    let mut state = LatencyEvidence::default();
    for weight in WEIGHTS {
        for _ in 0..INTERVALS_PER_STEP {
            let s = traffic.next_scrape((weight * 100.0) as u8);
            let j = judge.judge(
                "latency",
                &state,
                &s.canary.to_sample(),
                &s.stable.to_sample(),
            );
            if matches!(j.verdict, Verdict::Fail { .. }) {
                return true;
            }
            state = j.state;
        }
    }
    false
}

fn latency_failures(rps: f64, canary: Behaviour) -> f64 {
    (0..SEEDS)
        .filter(|seed| latency_fails(*seed, rps, canary))
        .count() as f64
}

fn lognormal(median_ms: f64, slow_tail: Option<SlowTail>) -> Behaviour {
    Behaviour {
        error_rate: 0.005,
        median_ms,
        sigma: 0.5,
        slow_tail,
    }
}

#[test]
fn latency_like_for_like_fails_at_most_alpha() {
    // The null boundary of tolerance 0: the canary's latencies drawn like stable's.
    // 50 requests/s: 37 canary requests per interval at 5 %, coarse ranks and ties.
    let failures = latency_failures(50.0, lognormal(100.0, None));
    assert!(
        failures <= bound(),
        "{failures} of {SEEDS} failed, bound {}",
        bound()
    );
}

#[test]
fn latency_regressions_do_fail() {
    // Power of the same judge: 25 % slower at 50 requests/s and a 3 % slow tail at
    // 2000 requests/s fail in nearly every run.
    let slower = latency_failures(50.0, lognormal(125.0, None));
    assert!(slower >= 0.99 * SEEDS as f64, "{slower} of {SEEDS}");
    let tail = SlowTail {
        fraction: 0.03,
        factor: 3.0,
    };
    let tail = latency_failures(2000.0, lognormal(100.0, Some(tail)));
    assert!(tail >= 0.99 * SEEDS as f64, "{tail} of {SEEDS}");
}
