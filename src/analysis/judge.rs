//! Judges one evaluation: every metric's canary value against its `min`/`max`, and
//! against stable with `compare`. Pure: the same input gives the same verdict.
//!
//! At a canary weight of 100 stable serves nothing, so `compare` criteria are skipped
//! there (noted in the detail); `min` and `max` still apply.
//!
//! `maxRatio` with a stable value of 0: a canary of 0 is a ratio of 1 (no change); any
//! canary above 0 is an unbounded ratio, so it fails. Pair `maxRatio` with `max` or
//! `maxIncrease` when stable is often exactly 0 (error rates of a quiet service).

use crate::analysis::comparison::{self, prior_state, Compared};
use crate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use crate::analysis::verdict::{InconclusiveReason, Verdict};
use crate::policy::status::EvidenceStatus;
use crate::policy::{AnalysisSpec, MetricSpec};

/// One metric's verdict with the values it was judged on.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricJudgement {
    pub name: String,
    /// The canary value, when a finite one was measured.
    pub canary: Option<f64>,
    /// The stable value, when the metric compares and a finite one was measured.
    pub stable: Option<f64>,
    pub verdict: Verdict,
    /// Each criterion with its numbers, e.g. `0.034 > max 0.01`.
    pub detail: String,
    /// A sequential comparison's evidence as a share of what rolls back (1: decided
    /// worse).
    pub evidence: Option<f64>,
}

/// The verdict of one evaluation and what it was made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub canary_requests: Option<f64>,
    pub metrics: Vec<MetricJudgement>,
    /// One line with numbers, e.g. `error-rate 0.034 > max 0.01 over 30s, 1234 reqs`.
    pub message: String,
    /// The sequential judges' evidence to save with this evaluation (`None`: the policy
    /// has no sequential metric, or nothing was counted yet).
    pub evidence: Option<EvidenceStatus>,
    /// A sequential judge decided the canary is worse: final, whatever `failureLimit`.
    pub decided_worse: bool,
    /// Every sequential metric showed the canary no worse and everything else passed:
    /// the step may advance before its hold ends (`analysis.advanceEarly`).
    pub shown_no_worse: bool,
    /// Inconclusive only because sequential evidence is still being gathered, and this
    /// evaluation added to it: not an outage, so not counted against
    /// `inconclusiveLimit`.
    pub gathering: bool,
}

/// Judges `input` against the policy's analysis with no evidence so far.
pub fn judge(spec: &AnalysisSpec, input: &AnalysisInput, canary_weight: u8) -> Evaluation {
    evaluate(spec, input, canary_weight, None)
}

/// Judges `input` against the policy's analysis. Any Fail gives Fail; else any
/// Inconclusive gives Inconclusive; else Pass. Fewer canary requests than `minRequests`
/// in the window make the threshold criteria Inconclusive; a sequential judge's Fail
/// still counts. `canary_weight` is the weight the window covered: at 100 there is no
/// stable traffic to compare with. `prior` is the sequential judges' evidence so far;
/// the input's counts must cover exactly the range since `prior.countedUntil`.
///
/// A sequential comparison that has not decided yet but has seen at least
/// `minRequests` canary requests does not hold the step: the evaluation passes ("no
/// regression shown so far") and the evidence carries on into the next step, where a
/// regression is still caught.
pub fn evaluate(
    spec: &AnalysisSpec,
    input: &AnalysisInput,
    canary_weight: u8,
    prior: Option<&EvidenceStatus>,
) -> Evaluation {
    let compare = canary_weight < 100;
    let mut compared: Vec<(String, Compared)> = Vec::new();
    let mut mann_whitney = if compare {
        crate::analysis::mann_whitney_run::compare_all(spec, input, prior)
    } else {
        Vec::new()
    };
    let mut any_threshold = false;
    let metrics: Vec<MetricJudgement> = spec
        .metrics
        .iter()
        .map(|metric| {
            let observed = input.metrics.iter().find(|m| m.name == metric.name);
            let sequential = metric.sequential().is_some();
            let ranked = metric.mann_whitney().is_some();
            let threshold_part =
                metric.min.is_some() || metric.max.is_some() || metric.threshold_compare();
            any_threshold |= threshold_part;
            let mut judged = if threshold_part {
                judge_metric(metric, observed, compare)
            } else {
                MetricJudgement {
                    name: metric.name.clone(),
                    canary: None,
                    stable: None,
                    verdict: Verdict::Pass,
                    detail: String::new(),
                    evidence: None,
                }
            };
            if (sequential || ranked) && !compare {
                add_detail(&mut judged, "compare skipped: no stable traffic at 100%");
            }
            let prior_state = prior_state(prior, &metric.name);
            let judged_by = if ranked {
                let at = mann_whitney.iter().position(|(n, _)| *n == metric.name);
                at.map(|i| mann_whitney.swap_remove(i).1)
            } else {
                compare
                    .then(|| comparison::compare(spec, metric, prior_state, observed))
                    .flatten()
            };
            if let Some(c) = judged_by {
                judged.verdict = match (&judged.verdict, &c.verdict) {
                    (Verdict::Fail { .. }, _) => judged.verdict.clone(),
                    (_, Verdict::Fail { .. }) => c.verdict.clone(),
                    (Verdict::Inconclusive(_), _) => judged.verdict.clone(),
                    _ => c.verdict.clone(),
                };
                add_detail(&mut judged, &c.explanation);
                judged.evidence = c.evidence_share;
                compared.push((metric.name.clone(), c));
            }
            judged
        })
        .collect();
    let requests = finite_value(&input.canary_requests).ok();
    let traffic = any_threshold
        .then(|| judge_traffic(spec.min_requests, &input.canary_requests))
        .flatten();
    let too_little_traffic = traffic.is_some();
    // Only a sequential judge decides: a `mannWhitney` Fail is one look of a
    // fixed-horizon test and counts against `failureLimit` like a threshold's.
    let decided_worse = compared
        .iter()
        .find(|(_, c)| matches!(c.verdict, Verdict::Fail { .. }) && c.evidence_share.is_some());
    let mut verdict = match (decided_worse, traffic) {
        (Some((_, c)), _) => c.verdict.clone(),
        (None, Some(inconclusive)) => inconclusive,
        (None, None) => Verdict::combine(metrics.iter().map(|m| m.verdict.clone())),
    };
    // Which metrics are only waiting for evidence (not an outage, not a threshold).
    let waiting: Vec<&Compared> = metrics
        .iter()
        .filter(|m| matches!(m.verdict, Verdict::Inconclusive(_)))
        .filter_map(|m| {
            compared
                .iter()
                .find(|(name, c)| *name == m.name && m.verdict == c.verdict)
                .map(|(_, c)| c)
        })
        .filter(|c| {
            matches!(
                c.verdict,
                Verdict::Inconclusive(InconclusiveReason::NotEnoughEvidence(_))
            )
        })
        .collect();
    let only_waiting = !too_little_traffic
        && matches!(verdict, Verdict::Inconclusive(_))
        && waiting.len()
            == metrics
                .iter()
                .filter(|m| matches!(m.verdict, Verdict::Inconclusive(_)))
                .count();
    let enough = |c: &&Compared| c.canary_requests >= spec.min_requests.max(1) as f64;
    let no_regression_so_far = only_waiting && waiting.iter().all(enough);
    if no_regression_so_far {
        verdict = Verdict::Pass;
    }
    let gathering = only_waiting && !no_regression_so_far && waiting.iter().all(|c| c.progressed);
    let shown_no_worse = verdict == Verdict::Pass
        && !no_regression_so_far
        && !compared.is_empty()
        && compared
            .iter()
            .all(|(_, c)| c.verdict == Verdict::Pass && c.evidence_share.is_some());
    let window = spec.query_window().to_promql();
    let reqs = requests.map_or_else(|| "unknown".to_owned(), |r| format!("{r:.0}"));
    // The window and its request count mean something to threshold criteria only; a
    // sequential judge's line carries its own counts.
    let over = if any_threshold {
        format!(" over {window}, {reqs} reqs")
    } else {
        String::new()
    };
    let message = match &verdict {
        Verdict::Fail { metric, reason } if decided_worse.is_some() => {
            format!("{metric}: {reason}")
        }
        Verdict::Fail { metric, reason } => format!("{metric} {reason} over {window}, {reqs} reqs"),
        Verdict::Inconclusive(reason) => {
            let which = metrics
                .iter()
                .find(|m| matches!(m.verdict, Verdict::Inconclusive(_)))
                .filter(|_| !too_little_traffic)
                .map(|m| format!("{}: ", m.name))
                .unwrap_or_else(|| {
                    let counted = matches!(reason, InconclusiveReason::TooFewRequests { .. });
                    if too_little_traffic && !counted {
                        "canary request count: ".to_owned()
                    } else {
                        String::new()
                    }
                });
            format!("{which}{reason}{over}")
        }
        Verdict::Pass => {
            let details: Vec<String> = metrics
                .iter()
                .map(|m| format!("{} {}", m.name, m.detail))
                .collect();
            let lead = if no_regression_so_far {
                "no regression shown so far: "
            } else {
                ""
            };
            format!("{lead}{}{over}", details.join("; "))
        }
    };
    Evaluation {
        evidence: comparison::next_evidence(prior, &compared, input.at),
        decided_worse: decided_worse.is_some(),
        shown_no_worse,
        gathering,
        verdict,
        canary_requests: requests,
        metrics,
        message,
    }
}

fn add_detail(judged: &mut MetricJudgement, detail: &str) {
    if !judged.detail.is_empty() {
        judged.detail.push_str(", ");
    }
    judged.detail.push_str(detail);
}

/// `None` when the traffic is enough to judge (or no minimum is set).
fn judge_traffic(min_requests: u64, sample: &Sample) -> Option<Verdict> {
    if min_requests == 0 {
        return None;
    }
    match finite_value(sample) {
        Ok(requests) if requests >= min_requests as f64 => None,
        Ok(requests) => Some(Verdict::Inconclusive(InconclusiveReason::TooFewRequests {
            requests,
            min: min_requests,
        })),
        // No series is no requests. A count that is NaN or infinite is not a count:
        // it stays Inconclusive for that reason (below), never "0 requests".
        Err(InconclusiveReason::NoData) => {
            Some(Verdict::Inconclusive(InconclusiveReason::TooFewRequests {
                requests: 0.0,
                min: min_requests,
            }))
        }
        Err(other) => Some(Verdict::Inconclusive(other)),
    }
}

fn finite_value(sample: &Sample) -> Result<f64, InconclusiveReason> {
    let measured = crate::analysis::sequential::measured(sample)?;
    if measured.value.is_nan() {
        return Err(InconclusiveReason::NotANumber);
    }
    Ok(measured.value)
}

fn judge_metric(
    spec: &MetricSpec,
    observed: Option<&MetricObservation>,
    compare_with_stable: bool,
) -> MetricJudgement {
    let inconclusive = |reason: InconclusiveReason, stable: Option<f64>| MetricJudgement {
        name: spec.name.clone(),
        canary: None,
        stable,
        detail: reason.to_string(),
        verdict: Verdict::Inconclusive(reason),
        evidence: None,
    };
    let Some(observed) = observed else {
        return inconclusive(InconclusiveReason::NoData, None);
    };
    let canary = match finite_value(&observed.canary) {
        Ok(v) => v,
        Err(reason) => return inconclusive(reason, None),
    };
    let mut results: Vec<(Verdict, String)> = Vec::new();
    let criterion = |failed: bool, detail: String| {
        let verdict = if failed {
            Verdict::Fail {
                metric: spec.name.clone(),
                reason: detail.clone(),
            }
        } else {
            Verdict::Pass
        };
        (verdict, detail)
    };
    if let Some(max) = spec.max {
        let failed = canary > max;
        results.push(criterion(
            failed,
            format!("{} {} max {}", num(canary), op(failed, '>'), num(max)),
        ));
    }
    if let Some(min) = spec.min {
        let failed = canary < min;
        results.push(criterion(
            failed,
            format!("{} {} min {}", num(canary), op(failed, '<'), num(min)),
        ));
    }
    let mut stable_value = None;
    if spec.threshold_compare() && !compare_with_stable {
        results.push((
            Verdict::Pass,
            "compare skipped: no stable traffic at 100%".to_owned(),
        ));
    }
    let threshold_compare = spec.threshold_compare();
    if let Some(compare) = spec
        .compare
        .as_ref()
        .filter(|_| compare_with_stable && threshold_compare)
    {
        let stable = observed
            .stable
            .as_ref()
            .map_or(Err(InconclusiveReason::NoData), finite_value);
        match stable {
            Err(reason) => {
                let detail = format!("stable: {reason}");
                results.push((Verdict::Inconclusive(reason), detail));
            }
            Ok(stable) => {
                stable_value = Some(stable);
                if let Some(limit) = compare.max_increase {
                    let increase = canary - stable;
                    let failed = increase > limit;
                    results.push(criterion(
                        failed,
                        format!(
                            "canary {} − stable {} = {} {} maxIncrease {}",
                            num(canary),
                            num(stable),
                            num(increase),
                            op(failed, '>'),
                            num(limit)
                        ),
                    ));
                }
                if let Some(limit) = compare.max_ratio {
                    let ratio = ratio(canary, stable);
                    let failed = ratio > limit;
                    results.push(criterion(
                        failed,
                        format!(
                            "canary {} / stable {} = {} {} maxRatio {}",
                            num(canary),
                            num(stable),
                            num(ratio),
                            op(failed, '>'),
                            num(limit)
                        ),
                    ));
                }
            }
        }
    }
    MetricJudgement {
        name: spec.name.clone(),
        canary: canary.is_finite().then_some(canary),
        stable: stable_value.filter(|v| v.is_finite()),
        detail: results
            .iter()
            .map(|(_, d)| d.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        verdict: Verdict::combine(results.into_iter().map(|(v, _)| v)),
        evidence: None,
    }
}

/// canary / stable, where 0 / 0 is no change and x / 0 is unbounded.
fn ratio(canary: f64, stable: f64) -> f64 {
    if stable == 0.0 {
        if canary == 0.0 {
            1.0
        } else {
            f64::INFINITY
        }
    } else {
        canary / stable
    }
}

fn op(failed: bool, broken: char) -> String {
    match (failed, broken) {
        (true, c) => c.to_string(),
        (false, '>') => "≤".to_owned(),
        (false, _) => "≥".to_owned(),
    }
}

/// Up to four decimals, without trailing zeros: `0.034`, `512`, `1234.5`. Rounds first
/// and prints the shortest form (fixed-precision float formatting is slow).
pub fn num(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded = (value * 10_000.0).round() / 10_000.0;
    if rounded == 0.0 {
        "0".to_owned()
    } else if rounded.abs() >= 1e15 {
        format!("{value:.0}")
    } else {
        rounded.to_string()
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
