//! Issue "judges" §2 and §5: what the judges decide on traffic with real sampling
//! noise (`sim::traffic`, the detection benchmark's model), over seeded rollouts of the
//! benchmark's steps (5/10/25/50 %, 5 minutes each, 15 s scrapes). Small cells of the
//! benchmark: the full table is in docs/benchmarks.md.

use shiftgate::analysis::sequential::{ErrorRateJudge, RatioEvidence};
use shiftgate::analysis::Verdict;
use shiftgate::policy::RolloutSpec;
use shiftgate::sim::judge_bench::{
    run_sequential, run_threshold, threshold_spec, Ending, RolloutResult, SequentialSet, HOLD_SECS,
    STEPS,
};
use shiftgate::sim::traffic::{Behaviour, Traffic, TrafficModel};

fn stable() -> Behaviour {
    Behaviour::BENCHMARK_BASELINE
}

fn model(rps: f64, canary: Behaviour) -> TrafficModel {
    TrafficModel::benchmark(rps, canary)
}

/// The default sequential judges of the benchmark: α 0.01 split errors/latency,
/// tolerance 0.
fn default_judges() -> SequentialSet {
    SequentialSet::new(0.01, 0.0, 0.0)
}

fn median(mut values: Vec<u64>) -> Option<u64> {
    values.sort_unstable();
    let rank = values.len().div_ceil(2);
    values.get(rank.checked_sub(1)?).copied()
}

#[test]
fn healthy_canaries_at_50_per_second_are_not_rolled_back_like_the_threshold_judge_does() {
    // The issue: with a 1-minute window at 50 requests/s the example policy's threshold
    // judge rolls back about 75 % of healthy canaries (2 errors in 150 requests is
    // 1.3 %, over its 1 % limit). The sequential judge decides from counts with a known
    // false-rollback rate: α = 1 % for the rollout, so over 400 rollouts at most
    // n·α + 3 binomial standard errors (10).
    let runs = 400;
    let spec: RolloutSpec = serde_json::from_str(&threshold_spec(Some("1m"))).unwrap();
    let healthy = model(50.0, stable());
    let threshold_rollbacks = (1..=runs)
        .filter(|seed| {
            run_threshold(&spec, healthy, *seed, 0).unwrap().ending == Ending::RolledBack
        })
        .count();
    let sequential_rollbacks = (1..=runs)
        .filter(|seed| {
            run_sequential(&default_judges(), healthy, *seed, 0)
                .unwrap()
                .ending
                == Ending::RolledBack
        })
        .count();
    assert!(
        threshold_rollbacks >= 200,
        "threshold: {threshold_rollbacks} of {runs}"
    );
    assert!(
        sequential_rollbacks <= 10,
        "sequential: {sequential_rollbacks} of {runs}"
    );
}

#[test]
fn latency_ten_percent_slower_at_50_per_second_is_caught_within_a_median_of_five_minutes() {
    // Must-hold: +10 % latency at 50 requests/s caught in ≥ 99 % within a median of 5
    // minutes. Watching two or three bucket edges took a median of 9.5 minutes: the
    // share above one edge carries a third of what the whole histogram says.
    let runs = 200;
    let slower = Behaviour {
        median_ms: 110.0,
        ..stable()
    };
    let results: Vec<RolloutResult> = (1..=runs)
        .map(|seed| run_sequential(&default_judges(), model(50.0, slower), seed, 0).unwrap())
        .collect();
    let times: Vec<u64> = results.iter().filter_map(|r| r.rollback_at).collect();
    assert!(
        times.len() as u64 >= runs * 99 / 100,
        "{} of {runs} caught",
        times.len()
    );
    let median = median(times).unwrap();
    assert!(median <= 300, "median {median} s");
}

#[test]
fn errors_one_and_a_half_times_stable_at_50_per_second_are_caught_more_often() {
    // Must-hold: ×1.5 errors at 50 requests/s caught in ≥ 50 %. An equal-weight grid of
    // ten alternatives from 1.1× to 10× and half the prior on "from the start" caught
    // 29.5 %. See docs/benchmarks.md for what remains: a valid test cannot reach 50 %
    // at α 0.005 per metric with the 13,500 canary requests of the whole rollout.
    let runs: u64 = 1000;
    let judge = default_judges().errors;
    let worse = Behaviour {
        error_rate: 0.0075,
        ..stable()
    };
    let caught = (1..=runs)
        .filter(|seed| errors_fail(judge, model(50.0, worse), *seed))
        .count();
    assert!(caught >= 330, "{caught} of {runs} caught");
}

/// One rollout of the benchmark's steps judged by the error-rate judge alone.
fn errors_fail(judge: ErrorRateJudge, model: TrafficModel, seed: u64) -> bool {
    let mut traffic = Traffic::new(model, seed);
    let mut state: RatioEvidence = judge.start();
    for weight in STEPS {
        for _ in 0..HOLD_SECS / model.scrape_interval_secs {
            let s = traffic.next_scrape(weight);
            let j = judge.judge(
                "errors",
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
