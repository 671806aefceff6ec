//! Sequential judge of latency from histogram buckets: "the share of canary requests
//! slower than a bucket edge is more than `1 + tolerance` times stable's", at up to
//! three edges near stable's p50, p90 and p99, with α split across them.
//!
//! The edges are chosen once, from the first interval in which stable served enough
//! requests, and evidence starts with the interval after it: choosing edges from the
//! same counts that are then judged would bias the test. A bucket edge is where the
//! counts are exact; a quantile read between edges (`histogram_quantile`) is not.

use serde::{Deserialize, Serialize};

use crate::analysis::sample::{Measured, Sample};
use crate::analysis::sequential::evidence::{IntervalCounts, RatioEvidence, Standing};
use crate::analysis::sequential::{
    count, evidence_words, grouped, measured, short, verdict, Judged,
};
use crate::analysis::verdict::{InconclusiveReason, Verdict};

/// Stable requests needed in one interval before edges are chosen from it.
pub const MIN_STABLE_REQUESTS_FOR_EDGES: f64 = 50.0;

/// The parameters of one latency comparison.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LatencyJudge {
    /// This metric's share of the false-rollback budget; split again across `quantiles`.
    pub alpha: f64,
    /// The canary's share of slow requests may be up to `1 + tolerance` times stable's.
    pub tolerance: f64,
    /// Stable's quantiles whose bucket edges are watched, e.g. `[0.5, 0.9, 0.99]`.
    pub quantiles: Vec<f64>,
}

/// The evidence at each chosen edge. Empty until the edges are chosen; at most one
/// entry per quantile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LatencyEvidence {
    pub edges: Vec<EdgeEvidence>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeEvidence {
    /// The bucket edge: a request above it is slow.
    pub le: f64,
    pub evidence: RatioEvidence,
}

impl LatencyJudge {
    /// The default edges: near stable's p50, p90 and p99.
    pub fn with_default_quantiles(alpha: f64, tolerance: f64) -> Self {
        LatencyJudge {
            alpha,
            tolerance,
            quantiles: vec![0.5, 0.9, 0.99],
        }
    }

    fn alpha_per_edge(&self) -> f64 {
        self.alpha / self.quantiles.len().max(1) as f64
    }

    /// Adds one interval's histograms (each side's `buckets` and `requests`) and
    /// judges. Any side without a usable histogram makes the evaluation Inconclusive
    /// and leaves the evidence as it was.
    pub fn judge(
        &self,
        metric: &str,
        state: &LatencyEvidence,
        canary: &Sample,
        stable: &Sample,
    ) -> Judged<LatencyEvidence> {
        let sides = measured(canary).and_then(|c| Ok((c, measured(stable)?)));
        let (c, s) = match sides.and_then(|(c, s)| Ok((histogram(c)?, histogram(s)?))) {
            Ok(sides) => sides,
            Err(reason) => return self.unchanged(state, reason),
        };
        if state.edges.is_empty() {
            return self.choose_edges(s);
        }
        let mut next = state.clone();
        let alpha = self.alpha_per_edge();
        let mut standings = Vec::with_capacity(next.edges.len());
        for edge in &mut next.edges {
            let counts = match slow_counts(edge.le, c, s) {
                Ok(counts) => counts,
                Err(reason) => return self.unchanged(state, reason),
            };
            standings.push(edge.evidence.update(counts, alpha));
        }
        let standing = if standings.contains(&Standing::Worse) {
            Standing::Worse
        } else if standings.iter().all(|s| *s == Standing::NoWorse) {
            Standing::NoWorse
        } else {
            Standing::Undecided
        };
        let explanation = self.explain(&next);
        Judged {
            verdict: verdict(metric, standing, &explanation),
            state: next,
            explanation,
        }
    }

    fn unchanged(
        &self,
        state: &LatencyEvidence,
        reason: InconclusiveReason,
    ) -> Judged<LatencyEvidence> {
        let explanation = match state.edges.is_empty() {
            true => reason.to_string(),
            false => format!("{reason}; {}", self.explain(state)),
        };
        Judged {
            verdict: Verdict::Inconclusive(reason),
            state: state.clone(),
            explanation,
        }
    }

    fn choose_edges(&self, stable: Histogram<'_>) -> Judged<LatencyEvidence> {
        let mut state = LatencyEvidence::default();
        if stable.total >= MIN_STABLE_REQUESTS_FOR_EDGES {
            for q in &self.quantiles {
                let edge = stable
                    .buckets
                    .iter()
                    .find(|b| b.count / stable.total >= *q)
                    .map(|b| b.le);
                if let Some(le) = edge.filter(|le| !state.edges.iter().any(|e| e.le == *le)) {
                    state.edges.push(EdgeEvidence {
                        le,
                        evidence: RatioEvidence::new(1.0 + self.tolerance),
                    });
                }
            }
        }
        let explanation = if state.edges.is_empty() {
            format!(
                "choosing bucket edges: {} stable requests in the interval, {} needed",
                grouped(stable.total),
                grouped(MIN_STABLE_REQUESTS_FOR_EDGES)
            )
        } else {
            let edges: Vec<String> = state.edges.iter().map(|e| short(e.le)).collect();
            format!(
                "watching the share of requests slower than {} (stable's p{}); evidence starts with the next interval",
                edges.join(", "),
                self.quantiles
                    .iter()
                    .map(|q| short(q * 100.0))
                    .collect::<Vec<_>>()
                    .join("/p")
            )
        };
        Judged {
            verdict: Verdict::Inconclusive(InconclusiveReason::NotEnoughEvidence(
                explanation.clone(),
            )),
            state,
            explanation,
        }
    }

    /// Names the edge with the most evidence against the canary: "canary requests
    /// slower than 250: 5.1 % vs stable 3.3 % (1.5×), evidence 48 of 600 needed to
    /// roll back, 1,240 canary requests".
    pub fn explain(&self, state: &LatencyEvidence) -> String {
        let alpha = self.alpha_per_edge();
        let worst = state.edges.iter().max_by(|a, b| {
            let key = |e: &EdgeEvidence| (e.evidence.crossed, e.evidence.log_evidence_worse());
            key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let Some(edge) = worst else {
            return "no bucket edges chosen yet".to_owned();
        };
        let e = &edge.evidence;
        let share = |events: f64, trials: f64| {
            if trials > 0.0 {
                format!("{}%", short(100.0 * events / trials))
            } else {
                "none".to_owned()
            }
        };
        let ratio = e
            .observed_ratio()
            .map(|r| format!(" ({}×)", short(r)))
            .unwrap_or_default();
        format!(
            "canary requests slower than {}: {} vs stable {}{ratio}, {}, {} canary requests",
            short(edge.le),
            share(e.canary_events, e.canary_trials),
            share(e.stable_events, e.stable_trials),
            evidence_words(e, alpha, e.standing(alpha)),
            grouped(e.canary_trials)
        )
    }
}

/// One side's histogram: cumulative finite buckets and the total.
#[derive(Clone, Copy)]
struct Histogram<'a> {
    buckets: &'a [crate::analysis::sample::Bucket],
    total: f64,
}

fn histogram(m: &Measured) -> Result<Histogram<'_>, InconclusiveReason> {
    if m.buckets.is_empty() {
        return Err(InconclusiveReason::NoData);
    }
    Ok(Histogram {
        buckets: &m.buckets,
        total: count(m.requests)?,
    })
}

fn slow_counts(
    le: f64,
    canary: Histogram<'_>,
    stable: Histogram<'_>,
) -> Result<IntervalCounts, InconclusiveReason> {
    let above = |h: Histogram<'_>| {
        let bucket = h.buckets.iter().find(|b| b.le == le).ok_or_else(|| {
            InconclusiveReason::InvalidQuery(format!("no bucket with le=\"{}\"", short(le)))
        })?;
        let at_or_below = count(Some(bucket.count))?;
        // `increase()` of two series is not exactly monotone: never a negative count.
        Ok::<f64, InconclusiveReason>((h.total - at_or_below).max(0.0))
    };
    Ok(IntervalCounts {
        canary_trials: canary.total,
        canary_events: above(canary)?,
        stable_trials: stable.total,
        stable_events: above(stable)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::analysis::sample::Bucket;

    const EDGES: [f64; 6] = [25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

    /// A histogram of `total` requests with `shares[i]` of them at or below EDGES[i].
    fn hist(total: f64, cdf: [f64; 6]) -> Sample {
        Sample::Value(Measured {
            value: 0.0,
            requests: Some(total),
            buckets: EDGES
                .iter()
                .zip(cdf)
                .map(|(le, share)| Bucket {
                    le: *le,
                    count: (total * share).round(),
                })
                .collect(),
            ..Measured::default()
        })
    }

    const BASE: [f64; 6] = [0.0, 0.08, 0.5, 0.967, 0.9994, 1.0];
    const SLOWER: [f64; 6] = [0.0, 0.05, 0.42, 0.90, 0.99, 1.0];

    fn judge() -> LatencyJudge {
        LatencyJudge::with_default_quantiles(0.01, 0.1)
    }

    #[test]
    fn edges_come_from_stable_then_evidence_starts() {
        let j = judge().judge(
            "latency",
            &LatencyEvidence::default(),
            &hist(100.0, BASE),
            &hist(2000.0, BASE),
        );
        let edges: Vec<f64> = j.state.edges.iter().map(|e| e.le).collect();
        assert_eq!(edges, vec![100.0, 250.0, 500.0]);
        assert!(j
            .state
            .edges
            .iter()
            .all(|e| e.evidence.canary_trials == 0.0));
        assert!(matches!(j.verdict, Verdict::Inconclusive(_)));
        assert!(
            j.explanation.contains("slower than 100, 250, 500"),
            "{}",
            j.explanation
        );
    }

    #[test]
    fn too_few_stable_requests_choose_no_edges() {
        let j = judge().judge(
            "latency",
            &LatencyEvidence::default(),
            &hist(10.0, BASE),
            &hist(20.0, BASE),
        );
        assert!(j.state.edges.is_empty());
        assert!(
            j.explanation.contains("20 stable requests"),
            "{}",
            j.explanation
        );
    }

    #[test]
    fn a_slower_canary_fails_and_names_the_edge() {
        let j = judge();
        let mut state = j
            .judge(
                "latency",
                &LatencyEvidence::default(),
                &hist(1000.0, BASE),
                &hist(9000.0, BASE),
            )
            .state;
        let mut verdict = Verdict::Pass;
        for _ in 0..30 {
            let r = j.judge(
                "latency",
                &state,
                &hist(1000.0, SLOWER),
                &hist(9000.0, BASE),
            );
            state = r.state;
            verdict = r.verdict;
            if matches!(verdict, Verdict::Fail { .. }) {
                break;
            }
        }
        let Verdict::Fail { reason, .. } = verdict else {
            panic!("{verdict:?}");
        };
        assert!(
            reason.starts_with("canary requests slower than "),
            "{reason}"
        );
        assert!(reason.contains(" needed to roll back"), "{reason}");
    }

    #[test]
    fn missing_histograms_are_inconclusive_and_change_nothing() {
        let j = judge();
        let state = j
            .judge(
                "latency",
                &LatencyEvidence::default(),
                &hist(1000.0, BASE),
                &hist(9000.0, BASE),
            )
            .state;
        let no_buckets = Sample::value(120.0);
        let other_edges = Sample::Value(Measured {
            value: 0.0,
            requests: Some(100.0),
            buckets: vec![Bucket {
                le: 0.1,
                count: 50.0,
            }],
            ..Measured::default()
        });
        for (canary, stable) in [
            (Sample::NoData, hist(9000.0, BASE)),
            (hist(1000.0, BASE), Sample::TimedOut),
            (no_buckets, hist(9000.0, BASE)),
            (other_edges, hist(9000.0, BASE)),
        ] {
            let r = j.judge("latency", &state, &canary, &stable);
            assert!(matches!(r.verdict, Verdict::Inconclusive(_)), "{r:?}");
            assert_eq!(r.state, state);
        }
    }

    #[test]
    fn a_like_for_like_canary_is_never_failed() {
        let j = judge();
        let mut state = j
            .judge(
                "latency",
                &LatencyEvidence::default(),
                &hist(10_000.0, BASE),
                &hist(90_000.0, BASE),
            )
            .state;
        for _ in 0..100 {
            let r = j.judge(
                "latency",
                &state,
                &hist(10_000.0, BASE),
                &hist(90_000.0, BASE),
            );
            assert!(!matches!(r.verdict, Verdict::Fail { .. }), "{r:?}");
            state = r.state;
        }
    }
}
