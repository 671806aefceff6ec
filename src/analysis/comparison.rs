//! The sequential side of an evaluation: each metric judged `sequential` adds the
//! counts since the evidence was last counted to its state and says where it stands.
//! Pure. The judges themselves live in `analysis::sequential`; this file picks one per
//! metric, splits α across them, and keeps their states together.

use crate::analysis::sample::{MetricObservation, Sample};
use crate::analysis::sequential::{
    alpha_per_metric, ErrorRateJudge, LatencyEvidence, LatencyJudge,
};
use crate::analysis::verdict::{InconclusiveReason, Verdict};
use crate::policy::status::{EvidenceStatus, JudgeState, MetricEvidence};
use crate::policy::{AnalysisSpec, MetricSpec};

/// Which sequential judge a metric needs, from what its queries count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountKind {
    /// Requests and failed requests per target.
    Errors,
    /// Histogram buckets per target.
    Latency,
}

/// What a metric's queries count: a built-in's measure, or a raw query's `counts:`.
pub fn count_kind(metric: &MetricSpec) -> Option<CountKind> {
    match (&metric.template, &metric.counts) {
        (Some(t), _) if t.ends_with("-error-rate") => Some(CountKind::Errors),
        (Some(t), _) if t.contains("-latency-") => Some(CountKind::Latency),
        (Some(_), _) => None,
        (None, Some(c)) if c.buckets.is_some() => Some(CountKind::Latency),
        (None, Some(c)) if c.requests.is_some() && c.errors.is_some() => Some(CountKind::Errors),
        (None, _) => None,
    }
}

/// How many of the policy's metrics judge sequentially (they share α).
pub fn sequential_metrics(spec: &AnalysisSpec) -> usize {
    spec.metrics
        .iter()
        .filter(|m| m.sequential().is_some())
        .count()
}

/// One sequential comparison after this evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Compared {
    pub verdict: Verdict,
    /// The state to keep when the evaluation's counts are committed.
    pub state: JudgeState,
    /// "canary errors 2.1× stable, evidence 48 of 100 needed to roll back, …".
    pub explanation: String,
    /// The counts were usable (not an outage, NaN or missing series).
    pub counted: bool,
    /// Canary requests in the evidence, counting this evaluation's.
    pub canary_requests: f64,
    /// Whether this evaluation added anything to the evidence.
    pub progressed: bool,
}

/// Judges `metric`'s comparison from `observed` on top of `prior` (its state so far,
/// `None` at the start or when the kind of metric changed).
pub fn compare(
    spec: &AnalysisSpec,
    metric: &MetricSpec,
    prior: Option<&JudgeState>,
    observed: Option<&MetricObservation>,
) -> Option<Compared> {
    let params = metric.sequential()?;
    let alpha = alpha_per_metric(params.alpha(), sequential_metrics(spec));
    let tolerance = params.tolerance();
    let missing = Sample::NoData;
    let canary = observed.map_or(&missing, |o| &o.canary);
    let stable = observed.and_then(|o| o.stable.as_ref()).unwrap_or(&missing);
    let (verdict, state, explanation) = match count_kind(metric)? {
        CountKind::Errors => {
            let judge = ErrorRateJudge { alpha, tolerance };
            let before = match prior {
                Some(JudgeState::ErrorRate(e)) if e.ratio0 == 1.0 + tolerance => e.clone(),
                _ => judge.start(),
            };
            let j = judge.judge(&metric.name, &before, canary, stable);
            (j.verdict, JudgeState::ErrorRate(j.state), j.explanation)
        }
        CountKind::Latency => {
            let judge = LatencyJudge::with_default_quantiles(alpha, tolerance);
            let before = match prior {
                Some(JudgeState::Latency(l)) => l.clone(),
                _ => LatencyEvidence::default(),
            };
            let j = judge.judge(&metric.name, &before, canary, stable);
            (j.verdict, JudgeState::Latency(j.state), j.explanation)
        }
    };
    // Until the latency judge has chosen its bucket edges (it needs enough stable
    // requests in one range), nothing is counted: the range grows until it has them.
    let counted = !matches!(
        &verdict,
        Verdict::Inconclusive(reason) if !matches!(reason, InconclusiveReason::NotEnoughEvidence(_))
    ) && !matches!(&state, JudgeState::Latency(l) if l.edges.is_empty());
    let progressed = counted && prior != Some(&state);
    Some(Compared {
        canary_requests: state.canary_requests(),
        verdict,
        state,
        explanation,
        counted,
        progressed,
    })
}

/// The evidence to save after an evaluation: every sequential metric's new state when
/// all of them could count (so all count the same range), else `prior` unchanged (the
/// next evaluation counts the longer range, nothing is lost or counted twice).
pub fn next_evidence(
    prior: Option<&EvidenceStatus>,
    compared: &[(String, Compared)],
    at: crate::policy::Timestamp,
) -> Option<EvidenceStatus> {
    if compared.is_empty() || !compared.iter().all(|(_, c)| c.counted) {
        return prior.cloned();
    }
    Some(EvidenceStatus {
        counted_until: at,
        metrics: compared
            .iter()
            .map(|(name, c)| MetricEvidence {
                name: name.clone(),
                state: c.state.clone(),
            })
            .collect(),
    })
}

/// The state `name` had, from the saved evidence.
pub fn prior_state<'a>(prior: Option<&'a EvidenceStatus>, name: &str) -> Option<&'a JudgeState> {
    prior?
        .metrics
        .iter()
        .find(|m| m.name == name)
        .map(|m| &m.state)
}
