//! `judge: mannWhitney` in a rollout: Kayenta's classifier (`analysis::mann_whitney`)
//! run at every evaluation on the per-interval values seen so far. Pure.
//!
//! Each evaluation appends the window's canary and stable values to the metric's
//! series (kept in the status, so a restart neither loses nor repeats an interval), at
//! most `MAX_INTERVALS` of them: the oldest drop out, like a Kayenta lifetime sliding
//! along. With fewer than `MIN_INTERVALS` intervals, or too few for a finite interval
//! of the shift at the confidence level (4 per side at 95 %), nothing is classified
//! (Kayenta would pass a canary on one point). Then, as one Kayenta canary run over the policy's
//! `mannWhitney` metrics: the score is the share of them classified Pass (0–100); below
//! `marginal` the High/Low metrics fail (counted against `failureLimit`, like a
//! threshold's Fail: one look of a fixed-horizon test is no final decision), between `marginal` and `pass` they are
//! Inconclusive (`MarginalScore`), at or above `pass` everything passes. When metrics
//! give different `pass`/`marginal`, the strictest (highest) of each applies.
//!
//! An outage, NaN or no data on either side adds nothing and is Inconclusive: never a
//! value either way.

use serde::{Deserialize, Serialize};

use crate::analysis::comparison::{prior_state, Compared};
use crate::analysis::judge::num;
use crate::analysis::mann_whitney::{Classification, Direction, MannWhitneyJudge, Scoring};
use crate::analysis::sample::{AnalysisInput, Sample};
use crate::analysis::verdict::{InconclusiveReason, Verdict};
use crate::policy::judge::{MannWhitneySpec, RegressionDirection};
use crate::policy::status::{EvidenceStatus, JudgeState};
use crate::policy::AnalysisSpec;

/// The most intervals kept per side (60: 30 minutes at a 30 s interval); the status
/// holds at most this many values per side and metric.
pub const MAX_INTERVALS: usize = 60;
/// Intervals needed on each side before the metric is classified (more when the
/// confidence level needs more for a finite interval: 4 at 95 %).
pub const MIN_INTERVALS: usize = 3;

/// The last per-interval values of one metric, oldest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MannWhitneySeries {
    pub canary: Vec<f64>,
    pub stable: Vec<f64>,
}

impl MannWhitneySeries {
    /// The series with one more interval, the oldest dropped beyond `MAX_INTERVALS`.
    pub fn pushed(&self, canary: f64, stable: f64) -> MannWhitneySeries {
        let last = |values: &[f64], value: f64| -> Vec<f64> {
            let mut all: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            all.push(value);
            let excess = all.len().saturating_sub(MAX_INTERVALS);
            all.split_off(excess)
        };
        MannWhitneySeries {
            canary: last(&self.canary, canary),
            stable: last(&self.stable, stable),
        }
    }

    pub fn intervals(&self) -> usize {
        self.canary.len().min(self.stable.len())
    }
}

impl From<RegressionDirection> for Direction {
    fn from(d: RegressionDirection) -> Direction {
        match d {
            RegressionDirection::Increase => Direction::Increase,
            RegressionDirection::Decrease => Direction::Decrease,
            RegressionDirection::Either => Direction::Either,
        }
    }
}

fn judge_of(spec: &MannWhitneySpec) -> MannWhitneyJudge {
    MannWhitneyJudge {
        confidence: spec.confidence(),
        tolerance: spec.tolerance(),
        allowed_increase: spec.allowed_increase(),
        allowed_decrease: spec.allowed_decrease(),
        direction: spec.direction().into(),
    }
}

/// A finite value, or why there is none.
fn value(sample: &Sample) -> Result<f64, InconclusiveReason> {
    let measured = crate::analysis::sequential::measured(sample)?;
    if measured.value.is_finite() {
        Ok(measured.value)
    } else {
        Err(InconclusiveReason::NotANumber)
    }
}

/// Where one metric stands before the scoring.
enum Standing {
    /// No usable value this evaluation (the reason), series unchanged.
    Missing(InconclusiveReason),
    /// Fewer than `MIN_INTERVALS` intervals so far.
    Waiting,
    /// Too few intervals for a finite interval at this confidence level.
    TooShort(f64),
    /// Classified, with the words saying on what.
    Classified(Classification, String),
}

/// Judges every `mannWhitney` metric of `spec` from `input` on top of the saved series.
pub fn compare_all(
    spec: &AnalysisSpec,
    input: &AnalysisInput,
    prior: Option<&EvidenceStatus>,
) -> Vec<(String, Compared)> {
    let mut judged: Vec<(String, MannWhitneySeries, bool, Standing)> = Vec::new();
    let (mut pass, mut marginal) = (0.0_f64, 0.0_f64);
    for metric in &spec.metrics {
        let Some(params) = metric.mann_whitney() else {
            continue;
        };
        pass = pass.max(params.pass());
        marginal = marginal.max(params.marginal());
        let before = match prior_state(prior, &metric.name) {
            Some(JudgeState::MannWhitney(s)) => s.clone(),
            _ => MannWhitneySeries::default(),
        };
        let observed = input.metrics.iter().find(|m| m.name == metric.name);
        let canary = observed.map_or(Err(InconclusiveReason::NoData), |o| value(&o.canary));
        let stable = observed
            .and_then(|o| o.stable.as_ref())
            .map_or(Err(InconclusiveReason::NoData), value);
        let (series, progressed, standing) = match (canary, stable) {
            (Err(reason), _) => (before, false, Standing::Missing(reason)),
            (_, Err(reason)) => (before, false, Standing::Missing(reason)),
            (Ok(c), Ok(s)) => {
                let series = before.pushed(c, s);
                let standing = if series.intervals() < MIN_INTERVALS {
                    Standing::Waiting
                } else {
                    let judge = judge_of(&params);
                    let c = judge.classify(&series.canary, &series.stable);
                    // Too few intervals for an interval at this confidence: Kayenta would
                    // pass on an infinite interval; this waits for one more.
                    if c.result
                        .is_some_and(|r| !(r.lower.is_finite() && r.upper.is_finite()))
                    {
                        Standing::TooShort(judge.confidence)
                    } else {
                        Standing::Classified(c.classification, describe(&judge, &c, &series))
                    }
                };
                (series, true, standing)
            }
        };
        judged.push((metric.name.clone(), series, progressed, standing));
    }
    let classes: Vec<Classification> = judged
        .iter()
        .filter_map(|(_, _, _, s)| match s {
            Standing::Classified(c, _) => Some(*c),
            _ => None,
        })
        .collect();
    let scoring = Scoring { pass, marginal };
    let score = Scoring::score(&classes);
    judged
        .into_iter()
        .map(|(name, series, progressed, standing)| {
            let (verdict, explanation) = verdict_of(&name, standing, &series, score, &scoring);
            let compared = Compared {
                verdict,
                state: JudgeState::MannWhitney(series),
                explanation,
                counted: true,
                canary_requests: 0.0,
                progressed,
                evidence_share: None,
            };
            (name, compared)
        })
        .collect()
}

fn verdict_of(
    name: &str,
    standing: Standing,
    series: &MannWhitneySeries,
    score: Option<f64>,
    scoring: &Scoring,
) -> (Verdict, String) {
    let scored = |s: f64| {
        format!(
            "score {} of 100 (passes at {}, fails below {})",
            num(s),
            num(scoring.pass),
            num(scoring.marginal)
        )
    };
    match standing {
        Standing::Missing(reason) => {
            let text = format!("{reason}; {} intervals kept", series.intervals());
            (Verdict::Inconclusive(reason), text)
        }
        Standing::Waiting | Standing::TooShort(_) => {
            let text = match standing {
                Standing::TooShort(confidence) => format!(
                    "{} intervals, too few for a {}% interval of the shift",
                    series.intervals(),
                    num(confidence * 100.0)
                ),
                _ => format!(
                    "{} of {MIN_INTERVALS} intervals needed to compare",
                    series.intervals()
                ),
            };
            (
                Verdict::Inconclusive(InconclusiveReason::NotEnoughEvidence(text.clone())),
                text,
            )
        }
        Standing::Classified(Classification::Pass | Classification::NoData, words) => {
            (Verdict::Pass, words)
        }
        Standing::Classified(_, words) => {
            let Some(s) = score else {
                return (Verdict::Pass, words);
            };
            let text = format!("{words}; {}", scored(s));
            match scoring.verdict(s) {
                crate::analysis::mann_whitney::ScoreVerdict::Pass => (Verdict::Pass, text),
                crate::analysis::mann_whitney::ScoreVerdict::Marginal => (
                    Verdict::Inconclusive(InconclusiveReason::MarginalScore(text.clone())),
                    text,
                ),
                crate::analysis::mann_whitney::ScoreVerdict::Fail => (
                    Verdict::Fail {
                        metric: name.to_owned(),
                        reason: text.clone(),
                    },
                    text,
                ),
            }
        }
    }
}

/// "canary 0.012 vs stable 0.0049 (means of 12 intervals, 2.4×), shift +0.0071, 95%
/// interval 0.004 to 0.0102: higher than stable".
fn describe(
    judge: &MannWhitneyJudge,
    c: &crate::analysis::mann_whitney::MetricClassification,
    series: &MannWhitneySeries,
) -> String {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut text = format!(
        "canary {} vs stable {} (means of {} intervals, {}×)",
        num(mean(&series.canary)),
        num(mean(&series.stable)),
        series.intervals(),
        num(c.ratio)
    );
    if let Some(r) = c.result {
        text.push_str(&format!(
            ", shift {}{} ({}% interval {} to {})",
            if r.estimate >= 0.0 { "+" } else { "" },
            num(r.estimate),
            num(judge.confidence * 100.0),
            num(r.lower),
            num(r.upper)
        ));
    }
    text.push_str(match c.classification {
        Classification::High => ": higher than stable",
        Classification::Low => ": lower than stable",
        Classification::Pass | Classification::NoData => ": no shift shown",
    });
    text
}

#[cfg(test)]
#[path = "mann_whitney_run_tests.rs"]
mod tests;
