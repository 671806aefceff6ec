//! How soon the next evaluation is due. A healthy rollout is evaluated once per
//! `interval`. While the step's last evaluation saw the canary failing (a failed
//! evaluation not yet past `failureLimit`, a metric that failed while the verdict as a
//! whole waited for data, or a sequential judge at least halfway to the evidence that
//! rolls back), the next one is due at once: the runtime wakes it just after the next
//! scrape (`runtime::scheduler::wake_for_evaluation`), so a canary that is going bad
//! is judged on every new sample instead of one whole interval per look. That costs one
//! evaluation per scrape only while a canary fails; healthy rollouts keep one per
//! interval. [`failing_cadence`] bounds how often a failing rollout is evaluated
//! whatever wakes it (a watch event, a short scrape interval).

use crate::policy::status::{RolloutStatus, VerdictKind};

/// A sequential comparison's evidence (as a share of what rolls back) from which the
/// canary is taken to lean towards failing. Under a canary as good as stable the
/// evidence reaches half of the rollback level with probability at most `2 × alpha`.
pub const LEANING_TO_FAIL: f64 = 0.5;

/// The shortest gap between two evaluations of a failing rollout: one second, or the
/// interval when it is shorter.
pub fn failing_cadence(interval: chrono::Duration) -> chrono::Duration {
    interval.min(chrono::Duration::seconds(1))
}

/// Whether the step's last evaluation saw the canary failing (see the module comment).
/// An evaluation from before the step started is another step's, not this one's trend.
pub fn failing_trend(status: &RolloutStatus) -> bool {
    let Some(analysis) = &status.last_analysis else {
        return false;
    };
    if status
        .step_started_at
        .is_some_and(|started| analysis.at < started)
    {
        return false;
    }
    analysis.verdict == VerdictKind::Fail
        || analysis.metrics.iter().any(|m| {
            m.verdict == VerdictKind::Fail || m.evidence.is_some_and(|e| e >= LEANING_TO_FAIL)
        })
}

/// The gap from the last evaluation to the next one due: `interval`, or
/// [`failing_cadence`] during a failing trend.
pub fn next_gap(interval: chrono::Duration, status: &RolloutStatus) -> chrono::Duration {
    if failing_trend(status) {
        failing_cadence(interval)
    } else {
        interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::status::{AnalysisSummary, MetricSummary};

    fn at(secs: i64) -> crate::policy::Timestamp {
        chrono::DateTime::from_timestamp(1_767_607_200 + secs, 0).unwrap_or_default()
    }

    fn judged(verdict: VerdictKind, metric: VerdictKind, evidence: Option<f64>) -> RolloutStatus {
        RolloutStatus {
            step_started_at: Some(at(0)),
            last_analysis: Some(AnalysisSummary {
                at: at(60),
                verdict,
                reason: "".into(),
                message: String::new(),
                canary_requests: None,
                metrics: vec![MetricSummary {
                    name: "error-rate".to_owned(),
                    canary: None,
                    stable: None,
                    verdict: metric,
                    reason: "".into(),
                    message: String::new(),
                    evidence,
                }],
            }),
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn a_failed_or_leaning_evaluation_is_a_failing_trend_and_a_healthy_one_is_not() {
        use VerdictKind::*;
        let minute = chrono::Duration::minutes(1);
        let second = chrono::Duration::seconds(1);
        assert_eq!(next_gap(minute, &judged(Fail, Fail, None)), second);
        assert_eq!(
            next_gap(minute, &judged(Inconclusive, Fail, None)),
            second,
            "a metric failed while the verdict waited for data"
        );
        assert_eq!(next_gap(minute, &judged(Pass, Pass, Some(0.6))), second);
        assert_eq!(next_gap(minute, &judged(Pass, Pass, Some(0.3))), minute);
        assert_eq!(next_gap(minute, &judged(Pass, Pass, None)), minute);
        assert_eq!(
            next_gap(minute, &RolloutStatus::default()),
            minute,
            "never evaluated"
        );
        let mut previous_step = judged(Fail, Fail, None);
        previous_step.step_started_at = Some(at(61));
        assert_eq!(next_gap(minute, &previous_step), minute);
        let half = chrono::Duration::milliseconds(500);
        assert_eq!(next_gap(half, &judged(Fail, Fail, None)), half);
    }
}
