//! `shiftgate bench-judges` (hidden): the detection benchmark of docs/benchmarks.md.
//! Thousands of seeded rollouts per cell (rate × scenario) on traffic with real
//! sampling noise, judged by today's threshold judge through the real engine and by the
//! sequential judges through the same steps. Same seed, same table.

use std::time::Instant;

use anyhow::Context as _;
use statrs::distribution::{Beta, ContinuousCDF};

use crate::cli::exit;
use crate::policy::RolloutSpec;
use crate::sim::judge_bench::{
    run_sequential, run_threshold, threshold_spec, Ending, RolloutResult, SequentialSet,
};
use crate::sim::traffic::{Behaviour, Change, SlowTail, TrafficModel};

#[derive(clap::Args, Debug)]
pub struct BenchJudgesArgs {
    /// Rollouts per cell and judge.
    #[arg(long, default_value_t = 2000)]
    pub runs: u64,
    /// Seed of the first rollout; rollout i uses seed + i for every judge and scenario.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// False-rollback budget of the sequential judges, split between errors and latency.
    #[arg(long, default_value_t = 0.01)]
    pub alpha: f64,
    /// The canary's error rate may be up to 1 + this times stable's.
    #[arg(long, default_value_t = 0.0)]
    pub error_tolerance: f64,
    /// The canary's share of slow requests may be up to 1 + this times stable's.
    #[arg(long, default_value_t = 0.0)]
    pub latency_tolerance: f64,
    /// Requests per second of the service (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1.0, 50.0, 2000.0])]
    pub rates: Vec<f64>,
}

/// Onset of the "from minute 7" regressions.
const LATE_ONSET_SECS: u64 = 7 * 60;

struct Scenario {
    name: &'static str,
    canary: Behaviour,
    /// The regression's onset; `None` for A/A (every rollback is a false one).
    onset: Option<u64>,
}

fn base() -> Behaviour {
    Behaviour {
        error_rate: 0.005,
        median_ms: 100.0,
        sigma: 0.5,
        slow_tail: None,
    }
}

fn scenarios() -> Vec<Scenario> {
    let errors = |factor: f64| Behaviour {
        error_rate: 0.005 * factor,
        ..base()
    };
    let slower = |factor: f64| Behaviour {
        median_ms: 100.0 * factor,
        ..base()
    };
    let scenario = |name, canary, onset| Scenario {
        name,
        canary,
        onset,
    };
    vec![
        scenario("A/A", base(), None),
        scenario("errors ×1.5", errors(1.5), Some(0)),
        scenario("errors ×2", errors(2.0), Some(0)),
        scenario("errors ×5", errors(5.0), Some(0)),
        scenario("errors ×1.5 from 7m", errors(1.5), Some(LATE_ONSET_SECS)),
        scenario("errors ×2 from 7m", errors(2.0), Some(LATE_ONSET_SECS)),
        scenario("errors ×5 from 7m", errors(5.0), Some(LATE_ONSET_SECS)),
        scenario("latency ×1.1", slower(1.1), Some(0)),
        scenario("latency ×1.25", slower(1.25), Some(0)),
        scenario(
            "tail 3 % ×3",
            Behaviour {
                slow_tail: Some(SlowTail {
                    fraction: 0.03,
                    factor: 3.0,
                }),
                ..base()
            },
            Some(0),
        ),
    ]
}

fn model(rate: f64, scenario: &Scenario) -> TrafficModel {
    let late = scenario.onset.filter(|at| *at > 0);
    TrafficModel {
        requests_per_second: rate,
        stable: base(),
        canary: if late.is_some() {
            base()
        } else {
            scenario.canary
        },
        change: late.map(|from_secs| Change {
            from_secs,
            canary: scenario.canary,
        }),
        scrape_interval_secs: 15,
    }
}

/// One cell's figures for one judge.
struct Cell {
    runs: u64,
    /// Rollbacks before the onset (all of them for A/A).
    false_rollbacks: u64,
    detected: u64,
    stuck: u64,
    times: Vec<u64>,
    requests: Vec<u64>,
}

impl Cell {
    fn new(results: &[RolloutResult], onset: Option<u64>) -> Cell {
        let mut cell = Cell {
            runs: results.len() as u64,
            false_rollbacks: 0,
            detected: 0,
            stuck: 0,
            times: Vec::new(),
            requests: Vec::new(),
        };
        for r in results {
            match (r.ending, r.rollback_at, onset) {
                (Ending::RolledBack, Some(at), Some(onset)) if at >= onset => {
                    cell.detected += 1;
                    cell.times.push(at - onset);
                    cell.requests.push(r.canary_requests);
                }
                (Ending::RolledBack, _, _) => cell.false_rollbacks += 1,
                (Ending::Stuck, _, _) => cell.stuck += 1,
                (Ending::Promoted, _, _) => {}
            }
        }
        cell.times.sort_unstable();
        cell.requests.sort_unstable();
        cell
    }

    fn detected_share(&self) -> f64 {
        self.detected as f64 / self.runs.max(1) as f64
    }

    fn median_time(&self) -> Option<u64> {
        percentile(&self.times, 0.5)
    }
}

/// The value at `q` of sorted values (nearest rank).
fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// One-sided 95 % Clopper–Pearson upper bound of a rate seen `x` times in `n`.
fn clopper_pearson_upper(x: u64, n: u64) -> f64 {
    if n == 0 || x >= n {
        return 1.0;
    }
    Beta::new(x as f64 + 1.0, (n - x) as f64).map_or(1.0, |b| b.inverse_cdf(0.95))
}

fn pct(share: f64) -> String {
    format!("{:.1} %", 100.0 * share)
}

fn duration(secs: Option<u64>) -> String {
    secs.map_or("—".to_owned(), |s| {
        if s < 120 {
            format!("{s} s")
        } else {
            format!("{:.1} min", s as f64 / 60.0)
        }
    })
}

const JUDGES: [&str; 3] = ["threshold", "threshold, window 1m", "sequential"];

pub fn run(args: BenchJudgesArgs) -> i32 {
    match bench(&args) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::COULD_NOT_RUN
        }
    }
}

fn bench(args: &BenchJudgesArgs) -> anyhow::Result<()> {
    let started = stopwatch();
    let threshold: RolloutSpec =
        serde_json::from_str(&threshold_spec(None)).context("the threshold policy parses")?;
    let threshold_1m: RolloutSpec = serde_json::from_str(&threshold_spec(Some("1m")))
        .context("the threshold policy with a 1m window parses")?;
    let set = SequentialSet::new(args.alpha, args.error_tolerance, args.latency_tolerance);
    println!(
        "Detection benchmark: {} rollouts per cell and judge, seeds {}..{}, steps 5/10/25/50 % × 5 min, 15 s scrapes.",
        args.runs,
        args.seed,
        args.seed + args.runs - 1
    );
    println!(
        "sequential: alpha {} (split errors/latency), error tolerance {}, latency tolerance {}; threshold: policies/istio-host-canary.yaml's analysis.\n",
        args.alpha, args.error_tolerance, args.latency_tolerance
    );
    println!("| rate | scenario | judge | false rollbacks (95 % upper) | detected | paused | median TTD | p90 TTD | median canary reqs |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|");
    let mut cells = Vec::new();
    for rate in &args.rates {
        for scenario in scenarios() {
            let m = model(*rate, &scenario);
            let counted_from = scenario.onset.unwrap_or(0);
            for judge in JUDGES {
                let results = (0..args.runs)
                    .map(|i| {
                        let seed = args.seed.wrapping_add(i);
                        match judge {
                            "sequential" => Ok(run_sequential(&set, m, seed, counted_from)),
                            "threshold" => run_threshold(&threshold, m, seed, counted_from),
                            _ => run_threshold(&threshold_1m, m, seed, counted_from),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .context("the benchmark policy is a valid plan")?;
                let cell = Cell::new(&results, scenario.onset);
                print_row(*rate, scenario.name, judge, &cell, scenario.onset.is_none());
                cells.push((*rate, scenario.name, judge, cell));
            }
        }
        eprintln!("{rate} requests/s done after {:.0?}", started.elapsed());
    }
    print_targets(&cells);
    eprintln!("finished in {:.0?}", started.elapsed());
    Ok(())
}

/// The wall clock, for the progress lines on stderr only; nothing in the table
/// depends on it.
#[allow(clippy::disallowed_methods)]
fn stopwatch() -> Instant {
    Instant::now()
}

fn print_row(rate: f64, scenario: &str, judge: &str, c: &Cell, null: bool) {
    let false_rate = if null || c.false_rollbacks > 0 {
        format!(
            "{} ({})",
            pct(c.false_rollbacks as f64 / c.runs.max(1) as f64),
            pct(clopper_pearson_upper(c.false_rollbacks, c.runs))
        )
    } else {
        "0".to_owned()
    };
    let detected = if null {
        "—".to_owned()
    } else {
        pct(c.detected_share())
    };
    let requests = percentile(&c.requests, 0.5).map_or("—".to_owned(), |r| {
        crate::analysis::sequential::grouped(r as f64)
    });
    println!(
        "| {rate} | {scenario} | {judge} | {false_rate} | {detected} | {} | {} | {} | {requests} |",
        pct(c.stuck as f64 / c.runs.max(1) as f64),
        duration(c.median_time()),
        duration(percentile(&c.times, 0.9)),
    );
}

/// The "Must hold" figures for the sequential judges, met or not.
fn print_targets(cells: &[(f64, &str, &str, Cell)]) {
    let find = |rate: f64, scenario: &str| {
        cells
            .iter()
            .find(|(r, s, j, _)| *r == rate && *s == scenario && *j == "sequential")
            .map(|(_, _, _, c)| c)
    };
    println!("\nTargets (sequential judges):\n");
    let line = |what: String, met: Option<bool>| {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        println!("- {what}: {verdict}");
    };
    for rate in [1.0, 50.0, 2000.0] {
        let c = find(rate, "A/A");
        line(
            format!(
                "false rollbacks ≤ 1 % at {rate}/s (upper bound {})",
                c.map_or("—".to_owned(), |c| pct(clopper_pearson_upper(
                    c.false_rollbacks,
                    c.runs
                )))
            ),
            c.map(|c| c.false_rollbacks as f64 <= 0.01 * c.runs as f64),
        );
    }
    let c = find(2000.0, "errors ×2");
    line(
        "errors ×2 at 2000/s: 100 % caught, median ≤ 30 s, ≤ 3,000 canary requests".to_owned(),
        c.map(|c| {
            c.detected == c.runs
                && c.median_time().is_some_and(|t| t <= 30)
                && percentile(&c.requests, 0.5).is_some_and(|r| r <= 3000)
        }),
    );
    let c = find(50.0, "latency ×1.1");
    line(
        "latency ×1.1 at 50/s: ≥ 99 % caught, median ≤ 5 min".to_owned(),
        c.map(|c| c.detected_share() >= 0.99 && c.median_time().is_some_and(|t| t <= 300)),
    );
    let c = find(50.0, "tail 3 % ×3");
    line(
        "slow tail at 50/s: 100 % caught within 3 min".to_owned(),
        c.map(|c| c.detected == c.runs && c.times.last().is_some_and(|t| *t <= 180)),
    );
    let c = find(50.0, "errors ×1.5");
    line(
        "errors ×1.5 at 50/s: ≥ 50 % caught".to_owned(),
        c.map(|c| c.detected_share() >= 0.5),
    );
    let c = find(2000.0, "errors ×2 from 7m");
    line(
        "errors ×2 from minute 7 at 2000/s: median ≤ 1 min after onset".to_owned(),
        c.map(|c| c.detected_share() >= 0.5 && c.median_time().is_some_and(|t| t <= 60)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_bounds_are_the_textbook_ones() {
        // 0 of 2000: the "rule of three" gives about 3/n.
        let u = clopper_pearson_upper(0, 2000);
        assert!((u - 0.0015).abs() < 0.0001, "{u}");
        assert_eq!(clopper_pearson_upper(5, 5), 1.0);
        assert!(clopper_pearson_upper(20, 2000) > 0.01);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[10, 20, 30, 40], 0.5), Some(20));
        assert_eq!(percentile(&[10, 20, 30, 40], 0.9), Some(40));
    }
}
