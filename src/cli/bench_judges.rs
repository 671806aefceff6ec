//! `shiftgate bench-judges` (hidden): the detection benchmark of docs/benchmarks.md.
//! Thousands of seeded rollouts per cell (rate × scenario) on traffic with real
//! sampling noise, judged by today's threshold judge through the real engine and by the
//! sequential and Kayenta-compatible Mann–Whitney judges through the same steps. Same
//! seed, same table.

use crate::cli::output::{out, say};
use std::time::Instant;

use anyhow::Context as _;
use statrs::distribution::{Beta, ContinuousCDF};

use crate::analysis::mann_whitney::MannWhitneyJudge;
use crate::cli::exit;
use crate::policy::RolloutSpec;
use crate::sim::judge_bench::{
    run_mann_whitney, run_sequential, run_threshold, threshold_spec, Ending, RolloutResult,
    SequentialSet,
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
    /// Share of alpha given to the error-rate metric, the rest to latency (a weighted
    /// Bonferroni split; 0.5 is the policy's equal split).
    #[arg(long, default_value_t = 0.5)]
    pub error_alpha_share: f64,
    /// The canary's error rate may be up to 1 + this times stable's.
    #[arg(long, default_value_t = 0.0)]
    pub error_tolerance: f64,
    /// The canary's share of slow requests may be up to 1 + this times stable's.
    #[arg(long, default_value_t = 0.0)]
    pub latency_tolerance: f64,
    /// Requests per second of the service (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1.0, 50.0, 2000.0])]
    pub rates: Vec<f64>,
    /// Judges to run (comma-separated): threshold, threshold-1m, sequential, mannWhitney.
    #[arg(long, value_delimiter = ',', default_values_t = JUDGES.iter().map(|j| j.to_string()).collect::<Vec<_>>())]
    pub judges: Vec<String>,
    /// Only scenarios whose name contains this (e.g. "A/A", "errors ×2").
    #[arg(long)]
    pub scenario: Option<String>,
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
    Behaviour::BENCHMARK_BASELINE
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

const JUDGES: [&str; 4] = ["threshold", "threshold-1m", "sequential", "mannWhitney"];

/// The judge's name in the table.
fn judge_label(judge: &str) -> &str {
    match judge {
        "threshold-1m" => "threshold, window 1m",
        other => other,
    }
}

/// The judges of one benchmark run.
struct Judges {
    threshold: RolloutSpec,
    threshold_1m: RolloutSpec,
    sequential: SequentialSet,
    mann_whitney: MannWhitneyJudge,
}

impl Judges {
    fn new(args: &BenchJudgesArgs) -> anyhow::Result<Judges> {
        let share = args.error_alpha_share;
        if !(share > 0.0 && share < 1.0) {
            anyhow::bail!("--error-alpha-share {share} is not a share strictly between 0 and 1");
        }
        Ok(Judges {
            threshold: serde_json::from_str(&threshold_spec(None))
                .context("the threshold policy parses")?,
            threshold_1m: serde_json::from_str(&threshold_spec(Some("1m")))
                .context("the threshold policy with a 1m window parses")?,
            sequential: SequentialSet::weighted(
                args.alpha,
                args.error_alpha_share,
                args.error_tolerance,
                args.latency_tolerance,
            ),
            mann_whitney: MannWhitneyJudge::default(),
        })
    }

    /// `runs` rollouts of one cell with one judge; rollout i uses seed + i.
    fn cell(
        &self,
        judge: &str,
        model: TrafficModel,
        seed: u64,
        runs: u64,
        counted_from: u64,
    ) -> anyhow::Result<Vec<RolloutResult>> {
        (0..runs)
            .map(|i| {
                let seed = seed.wrapping_add(i);
                match judge {
                    "sequential" => run_sequential(&self.sequential, model, seed, counted_from)
                        .context("the benchmark's sequential policy runs"),
                    "mannWhitney" => Ok(run_mann_whitney(
                        &self.mann_whitney,
                        model,
                        seed,
                        counted_from,
                    )),
                    "threshold" => run_threshold(&self.threshold, model, seed, counted_from)
                        .context("the benchmark policy is a valid plan"),
                    "threshold-1m" => run_threshold(&self.threshold_1m, model, seed, counted_from)
                        .context("the benchmark policy is a valid plan"),
                    other => anyhow::bail!("no judge {other:?}: choose from {}", JUDGES.join(", ")),
                }
            })
            .collect()
    }
}

pub fn run(args: BenchJudgesArgs) -> i32 {
    match bench(&args) {
        Ok(()) => exit::OK,
        Err(e) => {
            say!("error: {e:#}");
            exit::COULD_NOT_RUN
        }
    }
}

fn bench(args: &BenchJudgesArgs) -> anyhow::Result<()> {
    let started = stopwatch();
    let judges = Judges::new(args)?;
    out!(
        "Detection benchmark: {} rollouts per cell and judge, seeds {}..{}, steps 5/10/25/50 % × 5 min, 15 s scrapes.",
        args.runs,
        args.seed,
        args.seed + args.runs - 1
    );
    out!(
        "sequential (through the engine, an evaluation every 15 s): alpha {} ({} to errors, the rest to latency), error tolerance {}, latency tolerance {}; threshold: policies/istio-host-canary.yaml's analysis; mannWhitney: Kayenta's defaults on the last 5 min of per-scrape error rate and median latency, at every scrape.\n",
        args.alpha, args.error_alpha_share, args.error_tolerance, args.latency_tolerance
    );
    out!("| rate | scenario | judge | false rollbacks (95 % upper) | detected | paused | median TTD | p90 TTD | median canary reqs |");
    out!("|---:|---|---|---:|---:|---:|---:|---:|---:|");
    let mut cells = Vec::new();
    for rate in &args.rates {
        let wanted = |s: &Scenario| {
            args.scenario
                .as_deref()
                .is_none_or(|name| s.name.contains(name))
        };
        for scenario in scenarios().into_iter().filter(wanted) {
            let m = model(*rate, &scenario);
            let counted_from = scenario.onset.unwrap_or(0);
            for judge in &args.judges {
                let results = judges.cell(judge, m, args.seed, args.runs, counted_from)?;
                let cell = Cell::new(&results, scenario.onset);
                out!(
                    "{}",
                    row(*rate, scenario.name, judge, &cell, scenario.onset.is_none())
                );
                cells.push((*rate, scenario.name, judge.clone(), cell));
            }
        }
        say!("{rate} requests/s done after {:.0?}", started.elapsed());
    }
    print_targets(&cells);
    say!("finished in {:.0?}", started.elapsed());
    Ok(())
}

/// The wall clock, for the progress lines on stderr only; nothing in the table
/// depends on it.
#[allow(clippy::disallowed_methods)]
fn stopwatch() -> Instant {
    Instant::now()
}

fn row(rate: f64, scenario: &str, judge: &str, c: &Cell, null: bool) -> String {
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
    format!(
        "| {rate} | {scenario} | {} | {false_rate} | {detected} | {} | {} | {} | {requests} |",
        judge_label(judge),
        pct(c.stuck as f64 / c.runs.max(1) as f64),
        duration(c.median_time()),
        duration(percentile(&c.times, 0.9)),
    )
}

/// The "Must hold" figures for the sequential judges, met or not, with the
/// measured figure beside each.
fn print_targets(cells: &[(f64, &str, String, Cell)]) {
    let find = |rate: f64, scenario: &str| {
        cells
            .iter()
            .find(|(r, s, j, _)| *r == rate && *s == scenario && j == "sequential")
            .map(|(_, _, _, c)| c)
    };
    out!("\nTargets (sequential judges):\n");
    let line = |what: &str, c: Option<&Cell>, met: &dyn Fn(&Cell) -> bool| {
        let (verdict, measured) = match c {
            Some(c) => (
                if met(c) { "met" } else { "NOT met" },
                format!(
                    "measured: {} detected, median {}, p90 {}, slowest {}, median {} canary requests",
                    pct(c.detected_share()),
                    duration(c.median_time()),
                    duration(percentile(&c.times, 0.9)),
                    duration(c.times.last().copied()),
                    percentile(&c.requests, 0.5).map_or("—".to_owned(), |r| {
                        crate::analysis::sequential::grouped(r as f64)
                    })
                ),
            ),
            None => ("not measured", String::new()),
        };
        out!("- {what}: {verdict} ({measured})");
    };
    for rate in [1.0, 50.0, 2000.0] {
        let c = find(rate, "A/A");
        let bound = c.map_or("—".to_owned(), |c| {
            pct(clopper_pearson_upper(c.false_rollbacks, c.runs))
        });
        let verdict = c.map_or("not measured", |c| {
            if clopper_pearson_upper(c.false_rollbacks, c.runs) <= 0.01 {
                "met"
            } else if c.false_rollbacks as f64 <= 0.01 * c.runs as f64 {
                "met by the rate, not by its upper bound"
            } else {
                "NOT met"
            }
        });
        out!("- false rollbacks ≤ 1 % at {rate}/s (95 % upper bound {bound}): {verdict}");
    }
    line(
        "errors ×2 at 2000/s: 100 % caught, median ≤ 30 s, ≤ 3,000 canary requests",
        find(2000.0, "errors ×2"),
        &|c| {
            c.detected == c.runs
                && c.median_time().is_some_and(|t| t <= 30)
                && percentile(&c.requests, 0.5).is_some_and(|r| r <= 3000)
        },
    );
    line(
        "latency ×1.1 at 50/s: ≥ 99 % caught, median ≤ 5 min",
        find(50.0, "latency ×1.1"),
        &|c| c.detected_share() >= 0.99 && c.median_time().is_some_and(|t| t <= 300),
    );
    line(
        "slow tail at 50/s: 100 % caught, median ≤ 3 min",
        find(50.0, "tail 3 % ×3"),
        &|c| c.detected == c.runs && c.median_time().is_some_and(|t| t <= 180),
    );
    line(
        "errors ×1.5 at 50/s: ≥ 50 % caught",
        find(50.0, "errors ×1.5"),
        &|c| c.detected_share() >= 0.5,
    );
    line(
        "errors ×2 from minute 7 at 2000/s: median ≤ 1 min after onset",
        find(2000.0, "errors ×2 from 7m"),
        &|c| c.detected_share() >= 0.5 && c.median_time().is_some_and(|t| t <= 60),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
    fn the_same_seed_gives_the_same_rows() {
        let args = BenchJudgesArgs {
            runs: 12,
            seed: 7,
            alpha: 0.01,
            error_alpha_share: 0.5,
            error_tolerance: 0.0,
            latency_tolerance: 0.0,
            rates: vec![50.0],
            judges: Vec::new(),
            scenario: None,
        };
        let judges = Judges::new(&args).unwrap();
        let scenario = scenarios()
            .into_iter()
            .find(|s| s.name == "errors ×5")
            .unwrap();
        let m = model(50.0, &scenario);
        let rows = |seed: u64| {
            JUDGES
                .iter()
                .map(|judge| {
                    let results = judges.cell(judge, m, seed, args.runs, 0).unwrap();
                    row(
                        50.0,
                        scenario.name,
                        judge,
                        &Cell::new(&results, Some(0)),
                        false,
                    )
                })
                .collect::<Vec<_>>()
        };
        let first = rows(7);
        assert_eq!(first, rows(7));
        // The seed matters: another one draws other traffic (and other figures).
        assert_ne!(first, rows(1000));
        assert!(first[2].contains("| sequential |"), "{first:?}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[10, 20, 30, 40], 0.5), Some(20));
        assert_eq!(percentile(&[10, 20, 30, 40], 0.9), Some(40));
    }
}
