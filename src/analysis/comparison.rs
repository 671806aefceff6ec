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
    /// Whether this evaluation added canary requests to the evidence.
    pub progressed: bool,
    /// The evidence against "no worse" as a share of what rolls back (`1/α`); 1 once
    /// decided worse. `None` for `mannWhitney`, which has no such evidence.
    pub evidence_share: Option<f64>,
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
    let (verdict, state, explanation, requests_before) = match count_kind(metric)? {
        CountKind::Errors => {
            let judge = ErrorRateJudge { alpha, tolerance };
            let before = match prior {
                Some(JudgeState::ErrorRate(e)) if e.ratio0 == 1.0 + tolerance => e.clone(),
                _ => judge.start(),
            };
            let requests_before = before.canary_trials;
            let j = judge.judge(&metric.name, &before, canary, stable);
            (
                j.verdict,
                JudgeState::ErrorRate(j.state),
                j.explanation,
                requests_before,
            )
        }
        CountKind::Latency => {
            let judge = LatencyJudge::with_default_quantiles(alpha, tolerance);
            let before = match prior {
                Some(JudgeState::Latency(l)) => l.clone(),
                _ => LatencyEvidence::default(),
            };
            let requests_before = JudgeState::Latency(before.clone()).canary_requests();
            let j = judge.judge(&metric.name, &before, canary, stable);
            (
                j.verdict,
                JudgeState::Latency(j.state),
                j.explanation,
                requests_before,
            )
        }
    };
    // Until the latency judge has chosen its bucket edges (it needs enough stable
    // requests in one range), nothing is counted: the range grows until it has them.
    let counted = !matches!(
        &verdict,
        Verdict::Inconclusive(reason) if !matches!(reason, InconclusiveReason::NotEnoughEvidence(_))
    ) && !matches!(&state, JudgeState::Latency(l) if l.edges.is_empty());
    // Progress is canary requests: a canary that gets no traffic while stable does is
    // not gathering evidence, and must reach `inconclusiveLimit`.
    let progressed = counted && state.canary_requests() > requests_before;
    let evidence_share = Some(evidence_share(&state, alpha));
    Some(Compared {
        evidence_share,
        canary_requests: state.canary_requests(),
        verdict,
        state,
        explanation,
        counted,
        progressed,
    })
}

/// How far the evidence is towards a rollback: e-value × α (per latency edge, its own
/// share of α), the largest of the edges; 1 once it crossed.
fn evidence_share(state: &JudgeState, alpha: f64) -> f64 {
    let share = |e: &crate::analysis::sequential::RatioEvidence, alpha: f64| {
        if e.crossed {
            1.0
        } else {
            (e.log_evidence_worse() + alpha.ln()).exp().min(1.0)
        }
    };
    match state {
        JudgeState::ErrorRate(e) => share(e, alpha),
        JudgeState::MannWhitney(_) => 0.0,
        JudgeState::Latency(l) => {
            let per_edge = alpha
                / LatencyJudge::with_default_quantiles(alpha, 0.0)
                    .quantiles
                    .len() as f64;
            l.edges
                .iter()
                .map(|edge| share(&edge.evidence, per_edge))
                .fold(0.0, f64::max)
        }
    }
}

/// The evidence to save after an evaluation: every sequential metric's new state when
/// all of them could count (so all count the same range), else `prior`'s unchanged
/// (the next evaluation counts the longer range, nothing is lost or counted twice).
/// `mannWhitney` series are per evaluation, not per range: theirs are always the new
/// ones. (With no prior and sequential metrics that could not count, the result holds
/// only series and `at`; `engine::evidence::kept` pins its instant to the range start.)
pub fn next_evidence(
    prior: Option<&EvidenceStatus>,
    compared: &[(String, Compared)],
    at: crate::policy::Timestamp,
) -> Option<EvidenceStatus> {
    let is_series = |c: &Compared| matches!(c.state, JudgeState::MannWhitney(_));
    let sequential: Vec<&(String, Compared)> =
        compared.iter().filter(|(_, c)| !is_series(c)).collect();
    let counted = !sequential.is_empty() && sequential.iter().all(|(_, c)| c.counted);
    let mut kept = if counted {
        Some(EvidenceStatus {
            counted_until: at,
            metrics: sequential
                .iter()
                .map(|(name, c)| MetricEvidence {
                    name: name.clone(),
                    state: c.state.clone(),
                })
                .collect(),
        })
    } else {
        prior.cloned()
    };
    for (name, c) in compared.iter().filter(|(_, c)| is_series(c)) {
        let evidence = kept.get_or_insert_with(|| EvidenceStatus {
            counted_until: at,
            metrics: Vec::new(),
        });
        let state = c.state.clone();
        match evidence.metrics.iter_mut().find(|m| m.name == *name) {
            Some(m) => m.state = state,
            None => evidence.metrics.push(MetricEvidence {
                name: name.clone(),
                state,
            }),
        }
    }
    kept
}

/// The state `name` had, from the saved evidence.
pub fn prior_state<'a>(prior: Option<&'a EvidenceStatus>, name: &str) -> Option<&'a JudgeState> {
    prior?
        .metrics
        .iter()
        .find(|m| m.name == name)
        .map(|m| &m.state)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::analysis::judge::evaluate;
    use crate::analysis::sample::{AnalysisInput, Measured};

    fn spec(min_requests: u64) -> AnalysisSpec {
        serde_json::from_value(serde_json::json!({
            "minRequests": min_requests,
            "metrics": [
                { "name": "ceiling", "template": "istio-error-rate", "max": 0.5 },
                { "name": "errors", "template": "istio-error-rate", "compare": {} }
            ]
        }))
        .unwrap()
    }

    fn side(requests: f64, errors: f64) -> Sample {
        Sample::Value(Measured {
            value: errors / requests,
            requests: Some(requests),
            errors: Some(errors),
            ..Measured::default()
        })
    }

    fn input(window_requests: f64, canary: Sample, stable: Sample) -> AnalysisInput {
        AnalysisInput {
            at: chrono::DateTime::from_timestamp(60, 0).unwrap(),
            canary_requests: Sample::value(window_requests),
            metrics: vec![
                MetricObservation {
                    name: "ceiling".into(),
                    canary: canary.clone(),
                    stable: None,
                },
                MetricObservation {
                    name: "errors".into(),
                    canary,
                    stable: Some(stable),
                },
            ],
        }
    }

    #[test]
    fn a_sequential_fail_wins_over_too_few_requests_for_the_thresholds() {
        // 2,000 canary requests counted since the start, 40 in the window.
        let e = evaluate(
            &spec(100),
            &input(40.0, side(2000.0, 200.0), side(18_000.0, 90.0)),
            10,
            None,
        );
        assert!(e.decided_worse, "{e:?}");
        assert!(
            matches!(e.verdict, Verdict::Fail { ref metric, .. } if metric == "errors"),
            "{e:?}"
        );
        assert!(e.message.contains("needed to roll back"), "{}", e.message);
        assert!(e.evidence.is_some());
    }

    #[test]
    fn an_outage_of_one_side_commits_nothing() {
        let prior = evaluate(
            &spec(0),
            &input(500.0, side(500.0, 2.0), side(4500.0, 20.0)),
            10,
            None,
        )
        .evidence
        .unwrap();
        let down = Sample::Unreachable {
            message: "refused".into(),
        };
        let e = evaluate(
            &spec(0),
            &input(500.0, side(500.0, 2.0), down),
            10,
            Some(&prior),
        );
        assert!(
            matches!(
                e.verdict,
                Verdict::Inconclusive(InconclusiveReason::SourceUnreachable(_))
            ),
            "{e:?}"
        );
        assert_eq!(e.evidence.as_ref(), Some(&prior));
        assert!(!e.gathering, "an outage is not evidence being gathered");
    }

    #[test]
    fn a_canary_without_traffic_is_not_gathering_evidence() {
        let mut only_compare = spec(0);
        only_compare.metrics.remove(0);
        let healthy = input(500.0, side(500.0, 2.0), side(4500.0, 20.0));
        let prior = evaluate(&only_compare, &healthy, 10, None)
            .evidence
            .unwrap();
        let idle = Sample::Value(Measured {
            value: f64::NAN,
            requests: Some(0.0),
            errors: Some(0.0),
            ..Measured::default()
        });
        only_compare.min_requests = 10_000;
        let e = evaluate(
            &only_compare,
            &input(0.0, idle, side(4500.0, 20.0)),
            10,
            Some(&prior),
        );
        assert!(matches!(e.verdict, Verdict::Inconclusive(_)), "{e:?}");
        assert!(!e.gathering, "{e:?}");
        // With canary requests the same evaluation gathers.
        let e = evaluate(&only_compare, &healthy, 10, Some(&prior));
        assert!(e.gathering, "{e:?}");
    }

    #[test]
    fn kinds_follow_templates_and_counts() {
        let metric = |v: serde_json::Value| serde_json::from_value::<MetricSpec>(v).unwrap();
        assert_eq!(
            count_kind(&metric(
                serde_json::json!({"name": "a", "template": "envoy-error-rate"})
            )),
            Some(CountKind::Errors)
        );
        assert_eq!(
            count_kind(&metric(
                serde_json::json!({"name": "a", "template": "istio-latency-p50"})
            )),
            Some(CountKind::Latency)
        );
        assert_eq!(
            count_kind(&metric(
                serde_json::json!({"name": "a", "template": "istio-request-rate"})
            )),
            None
        );
        assert_eq!(
            count_kind(&metric(
                serde_json::json!({"name": "a", "query": "q", "counts": {"buckets": "b"}})
            )),
            Some(CountKind::Latency)
        );
        assert_eq!(
            count_kind(&metric(serde_json::json!({"name": "a", "query": "q"}))),
            None
        );
    }
}
