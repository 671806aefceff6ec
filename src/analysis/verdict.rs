//! The three verdicts. Never two: missing data is not a Pass and not a Fail.

use std::fmt;

use crate::policy::status::VerdictKind;

/// Why an evaluation could not decide.
#[derive(Clone, Debug, PartialEq)]
pub enum InconclusiveReason {
    /// The query returned an empty result.
    NoData,
    /// The query returned NaN (typically 0/0: no requests).
    NotANumber,
    /// The canary served fewer requests than `minRequests` in the window.
    TooFewRequests { requests: f64, min: u64 },
    /// The metric source could not be reached or answered with an error.
    SourceUnreachable(String),
    /// The metric source did not answer in time.
    TimedOut,
    /// The query is wrong; it will not fix itself.
    InvalidQuery(String),
    /// A sequential judge has not yet seen enough to decide either way; the evidence so
    /// far is kept. The text says how much there is.
    NotEnoughEvidence(String),
    /// The `mannWhitney` judges' score is between `marginal` and `pass`: not bad enough
    /// to fail, not good enough to pass. The text has the score.
    MarginalScore(String),
}

impl InconclusiveReason {
    /// CamelCase constant for conditions, events and labels.
    pub fn reason(&self) -> &'static str {
        match self {
            InconclusiveReason::NoData => "NoData",
            InconclusiveReason::NotANumber => "NotANumber",
            InconclusiveReason::TooFewRequests { .. } => "TooFewRequests",
            InconclusiveReason::SourceUnreachable(_) => "SourceUnreachable",
            InconclusiveReason::TimedOut => "SourceTimedOut",
            InconclusiveReason::InvalidQuery(_) => "InvalidQuery",
            InconclusiveReason::NotEnoughEvidence(_) => "NotEnoughEvidence",
            InconclusiveReason::MarginalScore(_) => "MarginalScore",
        }
    }
}

impl fmt::Display for InconclusiveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InconclusiveReason::NoData => f.write_str("no data"),
            InconclusiveReason::NotANumber => f.write_str("not a number"),
            InconclusiveReason::TooFewRequests { requests, min } => {
                write!(f, "too few canary requests: {requests:.0} < {min}")
            }
            InconclusiveReason::SourceUnreachable(msg) => {
                write!(f, "metric source unreachable: {msg}")
            }
            InconclusiveReason::TimedOut => f.write_str("metric source timed out"),
            InconclusiveReason::InvalidQuery(msg) => write!(f, "invalid query: {msg}"),
            InconclusiveReason::NotEnoughEvidence(msg) => write!(f, "not enough evidence: {msg}"),
            InconclusiveReason::MarginalScore(msg) => write!(f, "marginal: {msg}"),
        }
    }
}

/// The verdict of one metric or of a whole evaluation. Only `Pass` advances a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// `metric` broke its limit; `reason` says by how much, with numbers.
    Fail {
        metric: String,
        reason: String,
    },
    Inconclusive(InconclusiveReason),
}

impl Verdict {
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Pass => VerdictKind::Pass,
            Verdict::Fail { .. } => VerdictKind::Fail,
            Verdict::Inconclusive(_) => VerdictKind::Inconclusive,
        }
    }

    /// CamelCase constant.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Pass => "AnalysisPassed",
            Verdict::Fail { .. } => "AnalysisFailed",
            Verdict::Inconclusive(r) => r.reason(),
        }
    }

    /// Any Fail wins; else any Inconclusive; else Pass. The first of each kind is kept.
    pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut inconclusive = None;
        for verdict in verdicts {
            match verdict {
                Verdict::Fail { .. } => return verdict,
                Verdict::Inconclusive(_) if inconclusive.is_none() => inconclusive = Some(verdict),
                _ => {}
            }
        }
        inconclusive.unwrap_or(Verdict::Pass)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => f.write_str("pass"),
            Verdict::Fail { metric, reason } => write!(f, "fail: {metric} {reason}"),
            Verdict::Inconclusive(r) => write!(f, "inconclusive: {r}"),
        }
    }
}
