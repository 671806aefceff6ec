//! Sequential judge of an error rate: "canary errors are more than `1 + tolerance`
//! times stable's", from each target's requests and errors per interval.

use serde::{Deserialize, Serialize};

use crate::analysis::sample::Sample;
use crate::analysis::sequential::evidence::{IntervalCounts, RatioEvidence};
use crate::analysis::sequential::{
    count, evidence_words, grouped, measured, short, verdict, Judged,
};
use crate::analysis::verdict::{InconclusiveReason, Verdict};

/// The parameters of one error-rate comparison.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ErrorRateJudge {
    /// This metric's share of the false-rollback budget (after the Bonferroni split).
    pub alpha: f64,
    /// The canary may have up to `1 + tolerance` times stable's error rate.
    pub tolerance: f64,
}

impl ErrorRateJudge {
    pub fn start(&self) -> RatioEvidence {
        RatioEvidence::new(1.0 + self.tolerance)
    }

    /// Adds one interval's counts (`requests`, `errors` of each side's sample) and
    /// judges. Any side without usable counts makes the evaluation Inconclusive and
    /// leaves the evidence as it was.
    pub fn judge(
        &self,
        metric: &str,
        state: &RatioEvidence,
        canary: &Sample,
        stable: &Sample,
    ) -> Judged<RatioEvidence> {
        let counts = match interval_counts(canary, stable) {
            Ok(c) => c,
            Err(reason) => {
                let explanation = format!("{reason}; {}", self.explain(state, None));
                return Judged {
                    verdict: Verdict::Inconclusive(reason),
                    state: state.clone(),
                    explanation,
                };
            }
        };
        let mut next = state.clone();
        let standing = next.update(counts, self.alpha);
        let explanation = self.explain(&next, Some(standing));
        Judged {
            verdict: verdict(metric, standing, &explanation),
            state: next,
            explanation,
        }
    }

    /// "canary errors 2.1× stable, evidence 48 of 100 needed to roll back, 1,240
    /// canary requests".
    pub fn explain(
        &self,
        state: &RatioEvidence,
        standing: Option<crate::analysis::sequential::Standing>,
    ) -> String {
        let standing = standing.unwrap_or_else(|| state.standing(self.alpha));
        let ratio = match state.observed_ratio() {
            Some(r) => format!("canary errors {}× stable", short(r)),
            None if state.canary_events == 0.0 => "no canary errors yet".to_owned(),
            None => format!(
                "{} canary errors, none on stable",
                grouped(state.canary_events)
            ),
        };
        format!(
            "{ratio}, {}, {} canary requests",
            evidence_words(state, self.alpha, standing),
            grouped(state.canary_trials)
        )
    }
}

fn interval_counts(canary: &Sample, stable: &Sample) -> Result<IntervalCounts, InconclusiveReason> {
    let c = measured(canary)?;
    let s = measured(stable)?;
    let counts = IntervalCounts {
        canary_trials: count(c.requests)?,
        canary_events: count(c.errors)?,
        stable_trials: count(s.requests)?,
        stable_events: count(s.errors)?,
    };
    if !counts.is_consistent() {
        return Err(InconclusiveReason::InvalidQuery(format!(
            "more errors than requests (canary {} of {}, stable {} of {})",
            counts.canary_events, counts.canary_trials, counts.stable_events, counts.stable_trials
        )));
    }
    Ok(counts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::analysis::sample::Measured;

    fn side(requests: f64, errors: f64) -> Sample {
        Sample::Value(Measured {
            value: errors / requests,
            requests: Some(requests),
            errors: Some(errors),
            ..Measured::default()
        })
    }

    const JUDGE: ErrorRateJudge = ErrorRateJudge {
        alpha: 0.01,
        tolerance: 0.2,
    };

    #[test]
    fn outages_nan_and_no_data_are_inconclusive_and_change_nothing() {
        let state = JUDGE.start();
        let good = side(1000.0, 5.0);
        let nan_count = Sample::Value(Measured {
            value: 0.0,
            requests: Some(f64::NAN),
            errors: Some(0.0),
            ..Measured::default()
        });
        let no_counts = Sample::value(0.01);
        for (canary, stable) in [
            (Sample::NoData, good.clone()),
            (good.clone(), Sample::NotANumber),
            (
                Sample::Unreachable {
                    message: "refused".into(),
                },
                good.clone(),
            ),
            (good.clone(), Sample::TimedOut),
            (nan_count, good.clone()),
            (no_counts, good.clone()),
            (side(10.0, 20.0), good.clone()),
        ] {
            let j = JUDGE.judge("errors", &state, &canary, &stable);
            assert!(matches!(j.verdict, Verdict::Inconclusive(_)), "{j:?}");
            assert_eq!(j.state, state, "{canary:?}");
        }
    }

    #[test]
    fn a_doubled_error_rate_fails_with_an_explanation() {
        let mut state = JUDGE.start();
        let mut last = None;
        for _ in 0..40 {
            let j = JUDGE.judge(
                "errors",
                &state,
                &side(1500.0, 15.0),
                &side(28_500.0, 135.0),
            );
            state = j.state.clone();
            last = Some(j);
            if matches!(last.as_ref().unwrap().verdict, Verdict::Fail { .. }) {
                break;
            }
        }
        let j = last.unwrap();
        assert!(matches!(j.verdict, Verdict::Fail { .. }), "{j:?}");
        assert!(
            j.explanation
                .starts_with("canary errors 2.1× stable, evidence "),
            "{}",
            j.explanation
        );
        assert!(
            j.explanation
                .contains(" past the 100 needed to roll back, "),
            "{}",
            j.explanation
        );
        assert!(
            j.explanation.ends_with(" canary requests"),
            "{}",
            j.explanation
        );
    }

    #[test]
    fn low_traffic_is_inconclusive_and_keeps_the_evidence() {
        let state = JUDGE.start();
        let j = JUDGE.judge("errors", &state, &side(4.0, 1.0), &side(70.0, 0.0));
        assert!(
            matches!(
                j.verdict,
                Verdict::Inconclusive(InconclusiveReason::NotEnoughEvidence(_))
            ),
            "{j:?}"
        );
        assert_eq!(j.state.canary_trials, 4.0);
        assert_eq!(j.state.intervals, 1);
        assert!(
            j.explanation.contains("1 canary errors, none on stable"),
            "{}",
            j.explanation
        );
    }
}
