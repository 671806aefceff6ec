//! One seeded rollout of the detection benchmark (`shiftgate bench-judges`): the
//! traffic model's counts, judged by the threshold and sequential judges through the
//! real engine (`engine::step`, a policy evaluated at every 15 s scrape for the
//! sequential one), or by the Kayenta-compatible `mannWhitney` judge through the same
//! step schedule.
//!
//! The Mann–Whitney rollouts are driven here: an evaluation at every scrape, rollback at
//! the first failing score, promotion when the last step's hold ends. In the engine's
//! rollouts `advanceEarly` is off, so an early Pass does not advance a step either.

use crate::analysis::mann_whitney::{MannWhitneyJudge, ScoreVerdict, Scoring};
use crate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use crate::analysis::sequential::{alpha_per_metric, ErrorRateJudge, LatencyJudge};
use crate::engine::{counts_since, step, Action, Observation, Plan, PlanError};
use crate::policy::status::Phase;
use crate::policy::{RolloutSpec, RolloutStatus};
use crate::router::ManagedRoute;
use crate::sim::traffic::{Scrape, TargetCounts, Traffic, TrafficModel, BUCKETS_MS};

/// The benchmark's steps: canary weight and how long each is held.
pub const STEPS: [u8; 4] = [5, 10, 25, 50];
pub const HOLD_SECS: u64 = 300;
/// No rollout of the benchmark runs longer than this (the steps take 20 minutes).
const LIMIT_SECS: u64 = 30 * 60;

/// `policies/istio-host-canary.yaml`'s analysis on the benchmark's steps.
pub fn threshold_spec(window: Option<&str>) -> String {
    let window = window.map_or(String::new(), |w| format!(r#""window": "{w}","#));
    let steps: Vec<String> = STEPS
        .iter()
        .map(|w| format!(r#"{{"weight": {w}, "hold": "{HOLD_SECS}s"}}"#))
        .collect();
    format!(
        r#"{{
  "revision": "v2",
  "router": {{ "istio": {{ "virtualService": "vs", "stable": {{ "host": "s" }}, "canary": {{ "host": "c" }} }} }},
  "steps": [{}, 100],
  "analysis": {{
    "interval": "30s", {window} "minRequests": 100, "failureLimit": 1,
    "inconclusiveLimit": 4, "onInconclusive": "pause",
    "metrics": [
      {{ "name": "error-rate", "template": "istio-error-rate", "max": 0.01 }},
      {{ "name": "p99-latency", "template": "istio-latency-p99", "max": 500 }},
      {{ "name": "errors-vs-stable", "template": "istio-error-rate", "compare": {{ "maxIncrease": 0.005 }}, "judge": "threshold" }}
    ]
  }},
  "onFailure": "rollback"
}}"#,
        steps.join(", ")
    )
}

/// How one rollout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    RolledBack,
    Promoted,
    /// Paused (inconclusive limit) or still running at the limit: never judged bad.
    Stuck,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutResult {
    pub ending: Ending,
    /// Seconds from the start when the rollback was decided.
    pub rollback_at: Option<u64>,
    /// Canary requests from `counted_from` to the end of the rollout.
    pub canary_requests: u64,
}

/// Adds up canary requests from an offset on (the regression's onset).
struct Served {
    from_secs: u64,
    requests: u64,
}

impl Served {
    fn add(&mut self, scrape: &Scrape) {
        if scrape.end_secs > self.from_secs {
            self.requests += scrape.canary.requests;
        }
    }
}

/// The sequential judges of one rollout: error rate and latency, each with its share of
/// the rollout's α (Bonferroni: the shares add up to α).
#[derive(Clone, Debug)]
pub struct SequentialSet {
    pub errors: ErrorRateJudge,
    pub latency: LatencyJudge,
}

impl SequentialSet {
    /// α split equally between errors and latency (the policy's default).
    pub fn new(alpha: f64, error_tolerance: f64, latency_tolerance: f64) -> Self {
        let each = alpha_per_metric(alpha, 2);
        SequentialSet {
            errors: ErrorRateJudge {
                alpha: each,
                tolerance: error_tolerance,
            },
            latency: LatencyJudge::with_default_quantiles(each, latency_tolerance),
        }
    }

    /// A weighted Bonferroni split: `error_share` of α to the error rate, the rest to
    /// latency.
    pub fn weighted(
        alpha: f64,
        error_share: f64,
        error_tolerance: f64,
        latency_tolerance: f64,
    ) -> Self {
        SequentialSet {
            errors: ErrorRateJudge {
                alpha: alpha * error_share,
                tolerance: error_tolerance,
            },
            latency: LatencyJudge::with_default_quantiles(
                alpha * (1.0 - error_share),
                latency_tolerance,
            ),
        }
    }

    /// The policy these judges are in a rollout: the benchmark's steps, an evaluation
    /// at every scrape, an error-rate and a latency metric compared sequentially. Each
    /// metric's `alpha` is twice its share, since the engine divides by the two
    /// sequential metrics.
    pub fn spec(&self) -> String {
        let steps: Vec<String> = STEPS
            .iter()
            .map(|w| format!(r#"{{"weight": {w}, "hold": "{HOLD_SECS}s"}}"#))
            .collect();
        let judge = |alpha: f64, tolerance: f64| {
            format!(
                r#"{{"sequential": {{"alpha": {}, "tolerance": {tolerance}}}}}"#,
                alpha * 2.0
            )
        };
        format!(
            r#"{{
  "revision": "v2",
  "router": {{ "istio": {{ "virtualService": "vs", "stable": {{ "host": "s" }}, "canary": {{ "host": "c" }} }} }},
  "steps": [{}, 100],
  "analysis": {{
    "interval": "15s", "minRequests": 1, "inconclusiveLimit": 8, "onInconclusive": "pause",
    "metrics": [
      {{ "name": "errors", "template": "istio-error-rate", "compare": {{}}, "judge": {} }},
      {{ "name": "latency", "template": "istio-latency-p99", "compare": {{}}, "judge": {} }}
    ]
  }},
  "onFailure": "rollback"
}}"#,
            steps.join(", "),
            judge(self.errors.alpha, self.errors.tolerance),
            judge(self.latency.alpha, self.latency.tolerance)
        )
    }
}

/// One rollout judged by the sequential judges through the real engine;
/// `counted_from` is the regression's onset (canary requests are counted from there).
pub fn run_sequential(
    set: &SequentialSet,
    model: TrafficModel,
    seed: u64,
    counted_from: u64,
) -> Result<RolloutResult, BenchError> {
    let spec: RolloutSpec =
        serde_json::from_str(&set.spec()).map_err(|e| BenchError::Spec(e.to_string()))?;
    Ok(run_through_engine(
        &spec,
        model,
        seed,
        counted_from,
        counts_input,
    )?)
}

/// Why a benchmark rollout could not run (the benchmark's own policy is wrong).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the benchmark's sequential policy does not parse: {0}")]
    Spec(String),
    #[error("the benchmark's policy is not a valid plan: {0}")]
    Plan(#[from] PlanError),
}

/// What Prometheus would answer for the sequential policy: per metric and target the
/// counts of the scrapes in (`since`, now] (the last scrape without `since`), and the
/// canary's requests in the last scrape for `minRequests`.
fn counts_input(
    scrapes: &[Scrape],
    since: Option<u64>,
    at: crate::policy::Timestamp,
) -> AnalysisInput {
    let from = since.map_or(scrapes.len().saturating_sub(1), |since| {
        scrapes.partition_point(|s| s.end_secs <= since)
    });
    let (mut canary, mut stable) = (TargetCounts::default(), TargetCounts::default());
    for s in &scrapes[from..] {
        canary.add(&s.canary);
        stable.add(&s.stable);
    }
    let last = scrapes.last().map_or(0, |s| s.canary.requests);
    let observation = |name: &str| MetricObservation {
        name: name.to_owned(),
        canary: canary.to_sample(),
        stable: Some(stable.to_sample()),
    };
    AnalysisInput {
        at,
        canary_requests: Sample::value(last as f64),
        metrics: vec![observation("errors"), observation("latency")],
    }
}

/// The benchmark's rollout (`STEPS`, `HOLD_SECS` each) judged at every scrape:
/// `rolls_back` sees each scrape in turn, and the first `true` ends it rolled back.
fn run_scrape_by_scrape(
    model: TrafficModel,
    seed: u64,
    counted_from: u64,
    mut rolls_back: impl FnMut(&Scrape) -> bool,
) -> RolloutResult {
    let mut traffic = Traffic::new(model, seed);
    let mut served = Served {
        from_secs: counted_from,
        requests: 0,
    };
    for weight in STEPS {
        let step_end = traffic.elapsed_secs() + HOLD_SECS;
        while traffic.elapsed_secs() < step_end {
            let scrape = traffic.next_scrape(weight);
            served.add(&scrape);
            if rolls_back(&scrape) {
                return RolloutResult {
                    ending: Ending::RolledBack,
                    rollback_at: Some(scrape.end_secs),
                    canary_requests: served.requests,
                };
            }
        }
    }
    RolloutResult {
        ending: Ending::Promoted,
        rollback_at: None,
        canary_requests: served.requests,
    }
}

/// Scrapes in the Mann–Whitney judge's look-back: the last 5 minutes.
pub const MANN_WHITNEY_LOOKBACK: usize = 20;

/// One rollout judged at every scrape like a Kayenta canary analysis run every
/// interval: per metric the per-scrape values of the last `MANN_WHITNEY_LOOKBACK`
/// scrapes (error rate, median latency read from the buckets like
/// `histogram_quantile`), Kayenta's default classifier and scoring (pass 95, marginal
/// 75); a failing score rolls back, a marginal one carries on.
pub fn run_mann_whitney(
    judge: &MannWhitneyJudge,
    model: TrafficModel,
    seed: u64,
    counted_from: u64,
) -> RolloutResult {
    let mut series: Vec<[f64; 4]> = Vec::with_capacity(MANN_WHITNEY_LOOKBACK + 1);
    let per_scrape = |c: &TargetCounts| {
        let rate = match c.requests {
            0 => f64::NAN,
            n => c.errors as f64 / n as f64,
        };
        (rate, histogram_quantile(0.5, c).unwrap_or(f64::NAN))
    };
    run_scrape_by_scrape(model, seed, counted_from, |scrape| {
        let (canary_rate, canary_p50) = per_scrape(&scrape.canary);
        let (stable_rate, stable_p50) = per_scrape(&scrape.stable);
        series.push([canary_rate, stable_rate, canary_p50, stable_p50]);
        if series.len() > MANN_WHITNEY_LOOKBACK {
            series.remove(0);
        }
        let column = |i: usize| series.iter().map(|v| v[i]).collect::<Vec<f64>>();
        let classes = [
            judge.classify(&column(0), &column(1)).classification,
            judge.classify(&column(2), &column(3)).classification,
        ];
        Scoring::score(&classes)
            .is_some_and(|score| Scoring::KAYENTA.verdict(score) == ScoreVerdict::Fail)
    })
}

/// One rollout judged by the threshold judge through the real engine (`engine::step`),
/// the router confirming every write at once.
pub fn run_threshold(
    spec: &RolloutSpec,
    model: TrafficModel,
    seed: u64,
    counted_from: u64,
) -> Result<RolloutResult, PlanError> {
    let window_secs = (spec.analysis.query_window().as_secs_f64().ceil() as u64).max(1);
    let interval = model.scrape_interval_secs.max(1);
    let scrapes_per_window = window_secs.div_ceil(interval) as usize;
    run_through_engine(spec, model, seed, counted_from, |scrapes, _, at| {
        analysis_input(scrapes, scrapes_per_window, at)
    })
}

/// One rollout of `spec` through `engine::step`, the router confirming every write at
/// once; `answer` gives what Prometheus would say from the scrapes so far and the
/// start of the range the engine counts from (seconds).
fn run_through_engine(
    spec: &RolloutSpec,
    model: TrafficModel,
    seed: u64,
    counted_from: u64,
    answer: impl Fn(&[Scrape], Option<u64>, crate::policy::Timestamp) -> AnalysisInput,
) -> Result<RolloutResult, PlanError> {
    let plan = Plan::new(spec)?;
    let t0 = chrono::DateTime::UNIX_EPOCH;
    let secs_of = |at: crate::policy::Timestamp| (at - t0).num_seconds().max(0) as u64;
    let mut traffic = Traffic::new(model, seed);
    let mut scrapes: Vec<Scrape> = Vec::new();
    let mut served = Served {
        from_secs: counted_from,
        requests: 0,
    };
    let mut state = RolloutStatus::default();
    let mut live = ManagedRoute {
        canary_weight: 0,
        test_route: false,
    };
    let mut now_secs = 0;
    loop {
        let now = t0 + chrono::Duration::seconds(now_secs as i64);
        let mut obs = Observation::at(now, Ok(live));
        let mut decision = step(&plan, &state, &obs);
        if decision.actions.contains(&Action::QueryMetrics) {
            let since = counts_since(&plan, &state).map(secs_of);
            obs.analysis = Some(answer(&scrapes, since, now));
            decision = step(&plan, &state, &obs);
        }
        state = decision.state.clone();
        match state.phase {
            Phase::RollingBack | Phase::RolledBack => {
                return Ok(RolloutResult {
                    ending: Ending::RolledBack,
                    rollback_at: Some(now_secs),
                    canary_requests: served.requests,
                });
            }
            Phase::Promoted => {
                return Ok(result(Ending::Promoted, served.requests));
            }
            Phase::Paused | Phase::Held => return Ok(result(Ending::Stuck, served.requests)),
            _ => {}
        }
        if let Some(write) = decision.route_write() {
            // The router confirms at once: look again at the same instant.
            live = write;
            continue;
        }
        let next = decision
            .wake_at
            .map_or(LIMIT_SECS, secs_of)
            .max(now_secs + 1);
        if next > LIMIT_SECS {
            return Ok(result(Ending::Stuck, served.requests));
        }
        while traffic.elapsed_secs() < next {
            let scrape = traffic.next_scrape(live.canary_weight);
            served.add(&scrape);
            scrapes.push(scrape);
        }
        now_secs = next;
    }
}

fn result(ending: Ending, canary_requests: u64) -> RolloutResult {
    RolloutResult {
        ending,
        rollback_at: None,
        canary_requests,
    }
}

/// What Prometheus would answer for the example policy's metrics over the last window.
fn analysis_input(
    recent: &[Scrape],
    scrapes: usize,
    at: crate::policy::Timestamp,
) -> AnalysisInput {
    let (mut canary, mut stable) = (TargetCounts::default(), TargetCounts::default());
    for s in recent.iter().rev().take(scrapes) {
        canary.add(&s.canary);
        stable.add(&s.stable);
    }
    let rate = |c: &TargetCounts| {
        if c.requests == 0 {
            Sample::NotANumber
        } else {
            Sample::value(c.errors as f64 / c.requests as f64)
        }
    };
    let p99 = match histogram_quantile(0.99, &canary) {
        Some(v) => Sample::value(v),
        None => Sample::NotANumber,
    };
    let requests = if canary.requests == 0 {
        Sample::NotANumber
    } else {
        Sample::value(canary.requests as f64)
    };
    let observation = |name: &str, canary: Sample, stable: Option<Sample>| MetricObservation {
        name: name.to_owned(),
        canary,
        stable,
    };
    AnalysisInput {
        at,
        canary_requests: requests,
        metrics: vec![
            observation("error-rate", rate(&canary), None),
            observation("p99-latency", p99, None),
            observation("errors-vs-stable", rate(&canary), Some(rate(&stable))),
        ],
    }
}

/// Prometheus's `histogram_quantile`: linear interpolation inside the bucket that
/// holds the rank; the highest finite edge when the rank is in the `+Inf` bucket.
pub fn histogram_quantile(q: f64, counts: &TargetCounts) -> Option<f64> {
    if counts.requests == 0 {
        return None;
    }
    let rank = q * counts.requests as f64;
    let mut lower_edge = 0.0;
    let mut lower_count = 0.0;
    for (le, cumulative) in BUCKETS_MS.iter().zip(counts.buckets) {
        let cumulative = cumulative as f64;
        if cumulative >= rank {
            if cumulative == lower_count {
                return Some(*le);
            }
            return Some(
                lower_edge + (le - lower_edge) * (rank - lower_count) / (cumulative - lower_count),
            );
        }
        lower_edge = *le;
        lower_count = cumulative;
    }
    BUCKETS_MS.last().copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sim::traffic::Behaviour;

    fn model(rps: f64, canary_error_rate: f64) -> TrafficModel {
        TrafficModel::benchmark(
            rps,
            Behaviour {
                error_rate: canary_error_rate,
                ..Behaviour::BENCHMARK_BASELINE
            },
        )
    }

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let mut c = TargetCounts {
            requests: 100,
            ..TargetCounts::default()
        };
        // 50 at or below 100 ms, all at or below 250 ms.
        c.buckets = [0, 0, 0, 0, 50, 100, 100, 100, 100, 100, 100];
        assert_eq!(histogram_quantile(0.5, &c), Some(100.0));
        assert_eq!(
            histogram_quantile(0.99, &c),
            Some(100.0 + 150.0 * 49.0 / 50.0)
        );
        c.buckets = [0; 11];
        assert_eq!(histogram_quantile(0.99, &c), Some(10000.0));
        assert_eq!(histogram_quantile(0.5, &TargetCounts::default()), None);
    }

    #[test]
    fn the_threshold_judge_through_the_engine_reproduces_the_issue() {
        let spec: RolloutSpec = serde_json::from_str(&threshold_spec(None)).unwrap();
        // 50 requests/s: the 5 % canary never reaches minRequests 100 in 30 s.
        let r = run_threshold(&spec, model(50.0, 0.005), 1, 0).unwrap();
        assert_eq!(r.ending, Ending::Stuck);
        // 2000 requests/s and 10× the errors: rolled back within the first step.
        let r = run_threshold(&spec, model(2000.0, 0.05), 1, 0).unwrap();
        assert_eq!(r.ending, Ending::RolledBack);
        assert!(r.rollback_at.unwrap() <= 120, "{r:?}");
        // 2000 requests/s, healthy: promoted.
        let r = run_threshold(&spec, model(2000.0, 0.005), 1, 0).unwrap();
        assert_eq!(r.ending, Ending::Promoted, "{r:?}");
    }

    #[test]
    fn the_mann_whitney_judge_catches_a_clear_regression() {
        let judge = MannWhitneyJudge::default();
        let r = run_mann_whitney(&judge, model(2000.0, 0.05), 1, 0);
        assert_eq!(r.ending, Ending::RolledBack);
        assert!(r.rollback_at.unwrap() <= 120, "{r:?}");
    }

    #[test]
    fn the_sequential_judges_catch_a_regression_and_promote_a_healthy_canary() {
        let set = SequentialSet::new(0.01, 0.0, 0.0);
        let r = run_sequential(&set, model(2000.0, 0.05), 1, 0).unwrap();
        assert_eq!(r.ending, Ending::RolledBack);
        assert!(r.rollback_at.unwrap() <= 30, "{r:?}");
        let r = run_sequential(&set, model(2000.0, 0.005), 1, 0).unwrap();
        assert_eq!(r.ending, Ending::Promoted, "{r:?}");
        assert!(r.canary_requests > 0);
    }
}
