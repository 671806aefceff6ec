//! Sequential judges: canary against stable from counts, with a known false-rollback
//! rate however often they look. Pure: `(state, new interval's counts) -> (verdict,
//! state, explanation)`, the state O(1) per metric and serialisable into the status.
//!
//! Each evaluation must bring the counts of the interval since the previous one (not
//! an overlapping window): the state adds them up. Outage, NaN and no data are
//! Inconclusive and change nothing; low traffic is Inconclusive with the evidence
//! kept, so it is not forgotten at the next evaluation.
//!
//! Selected per metric by `judge:` (the default for `compare`); `analysis::comparison`
//! runs them inside each evaluation. `shiftgate bench-judges` measures them.

pub mod error_rate;
pub mod evidence;
mod histogram;
pub mod latency;
pub mod shift;
#[cfg(test)]
mod validity;

pub use error_rate::ErrorRateJudge;
pub use evidence::{IntervalCounts, RatioEvidence, Standing};
pub use latency::{LatencyEvidence, LatencyJudge};
pub use shift::ShiftEvidence;

use crate::analysis::sample::{Measured, Sample};
use crate::analysis::verdict::{InconclusiveReason, Verdict};

/// A judge's answer: the verdict, the state to keep, and one line for on-call.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged<S> {
    pub verdict: Verdict,
    pub state: S,
    pub explanation: String,
}

/// The false-rollback budget of a rollout shared by its metrics (Bonferroni): each of
/// `metrics` judges gets `alpha / metrics`.
pub fn alpha_per_metric(alpha: f64, metrics: usize) -> f64 {
    alpha / metrics.max(1) as f64
}

/// The measured counts of a sample, or why there are none.
pub(crate) fn measured(sample: &Sample) -> Result<&Measured, InconclusiveReason> {
    match sample {
        Sample::Value(m) => Ok(m),
        Sample::NoData => Err(InconclusiveReason::NoData),
        Sample::NotANumber => Err(InconclusiveReason::NotANumber),
        Sample::Unreachable { message } => {
            Err(InconclusiveReason::SourceUnreachable(message.clone()))
        }
        Sample::TimedOut => Err(InconclusiveReason::TimedOut),
        Sample::Invalid { message } => Err(InconclusiveReason::InvalidQuery(message.clone())),
    }
}

/// A count a judge can use: present, finite, not negative.
pub(crate) fn count(value: Option<f64>) -> Result<f64, InconclusiveReason> {
    match value {
        None => Err(InconclusiveReason::NoData),
        Some(v) if v.is_nan() => Err(InconclusiveReason::NotANumber),
        Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Some(v) => Err(InconclusiveReason::InvalidQuery(format!(
            "count {v} is not a finite number ≥ 0"
        ))),
    }
}

/// The verdict for a metric whose evidence stands at `standing`.
pub(crate) fn verdict(metric: &str, standing: Standing, explanation: &str) -> Verdict {
    match standing {
        Standing::Worse => Verdict::Fail {
            metric: metric.to_owned(),
            reason: explanation.to_owned(),
        },
        Standing::NoWorse => Verdict::Pass,
        Standing::Undecided => Verdict::Inconclusive(InconclusiveReason::NotEnoughEvidence(
            explanation.to_owned(),
        )),
    }
}

/// "evidence 48 of 100 needed to roll back" (or "… shows no worse" when it passed).
pub(crate) fn evidence_words(evidence: &RatioEvidence, alpha: f64, standing: Standing) -> String {
    let needed = 1.0 / alpha;
    match standing {
        Standing::NoWorse => format!(
            "no worse than {}× shown (evidence {} of {} needed)",
            short(evidence.ratio0),
            grouped(evidence.log_evidence_no_worse().exp().min(needed * 1e6)),
            grouped(needed)
        ),
        _ => rollback_words(evidence.log_evidence_worse(), needed),
    }
}

/// "evidence 48 of 100 needed to roll back"; once past it, "evidence 11,847, past the
/// 100 needed to roll back": "11,847 of 100" read like a typo to on-call.
pub(crate) fn rollback_words(log_evidence: f64, needed: f64) -> String {
    let evidence = log_evidence.exp();
    let ceiling = needed * 1e6;
    if evidence < needed {
        format!(
            "evidence {} of {} needed to roll back",
            grouped(evidence),
            grouped(needed)
        )
    } else if evidence < ceiling {
        format!(
            "evidence {}, past the {} needed to roll back",
            grouped(evidence),
            grouped(needed)
        )
    } else {
        format!(
            "evidence over {}, far past the {} needed to roll back",
            grouped(ceiling),
            grouped(needed)
        )
    }
}

/// A ratio like `2.1`, `0.95`, `12`. Printed from integers: fixed-precision float
/// formatting was a tenth of a judge's evaluation.
pub(crate) fn short(value: f64) -> String {
    if !value.is_finite() || !(0.0..1e15).contains(&value) {
        return format!("{value:.2}");
    }
    if value >= 9.95 {
        format!("{}", value.round() as u64)
    } else if value >= 0.995 {
        let tenths = (value * 10.0).round() as u64;
        format!("{}.{}", tenths / 10, tenths % 10)
    } else {
        let hundredths = (value * 100.0).round() as u64;
        format!("{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

/// A whole number with thousands separators: `1,240`.
pub fn grouped(value: f64) -> String {
    if !value.is_finite() || value.abs() >= 1e18 {
        return value.to_string();
    }
    let rounded = value.round();
    let digits = (rounded.abs() as u64).to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if rounded < 0.0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_on_call_expects() {
        assert_eq!(grouped(1240.0), "1,240");
        assert_eq!(grouped(48.4), "48");
        assert_eq!(grouped(1_234_567.0), "1,234,567");
        assert_eq!(grouped(-1000.0), "-1,000");
        assert_eq!(short(2.06), "2.1");
        assert_eq!(short(0.954), "0.95");
        assert_eq!(short(12.4), "12");
        assert_eq!(short(9.96), "10");
        assert_eq!(short(1.0), "1.0");
        assert_eq!(short(0.999), "1.0");
        assert_eq!(short(0.05), "0.05");
        assert_eq!(grouped(0.4), "0");
        assert_eq!(alpha_per_metric(0.01, 2), 0.005);
        assert_eq!(alpha_per_metric(0.01, 0), 0.01);
        assert_eq!(
            rollback_words(48f64.ln(), 100.0),
            "evidence 48 of 100 needed to roll back"
        );
        assert_eq!(
            rollback_words(11_847f64.ln(), 100.0),
            "evidence 11,847, past the 100 needed to roll back"
        );
        assert_eq!(
            rollback_words(1e300f64.ln(), 100.0),
            "evidence over 100,000,000, far past the 100 needed to roll back"
        );
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn judge_state_stays_bounded_over_a_long_rollout() {
        use crate::sim::traffic::{Behaviour, Traffic, TrafficModel};
        // A rollout's whole judge state (errors and latency) in the status: the same
        // size after 400 intervals (100 minutes at 2000 requests/s) as after 10.
        let model = TrafficModel::benchmark(2000.0, Behaviour::BENCHMARK_BASELINE);
        let errors = ErrorRateJudge {
            alpha: 0.005,
            tolerance: 0.0,
        };
        let latency = LatencyJudge::with_default_quantiles(0.005, 0.0);
        let (mut e, mut l) = (errors.start(), LatencyEvidence::default());
        let mut traffic = Traffic::new(model, 3);
        let mut sizes = Vec::new();
        for i in 1..=400 {
            let s = traffic.next_scrape(25);
            let (canary, stable) = (s.canary.to_sample(), s.stable.to_sample());
            e = errors.judge("errors", &e, &canary, &stable).state;
            l = latency.judge("latency", &l, &canary, &stable).state;
            if i == 10 || i == 400 {
                let json = serde_json::to_string(&(&e, &l)).unwrap();
                sizes.push(json.len());
            }
        }
        assert!(sizes[1] <= 3500, "{sizes:?}");
        // Only the digits of the numbers differ.
        assert!(sizes[1] <= sizes[0] + 100, "{sizes:?}");
    }
}
