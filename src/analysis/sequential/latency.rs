//! Sequential judge of latency from histogram buckets: "the canary is slower than
//! stable", from two kinds of evidence, averaged (an average of e-processes is an
//! e-process, so α is not split further):
//!
//! - a rank test over all buckets (`shift.rs`), which sees a shift of the whole
//!   distribution (a 10 % slower median) with nearly all the information the buckets
//!   hold; used only with tolerance 0, half of the weight;
//! - the share of canary requests slower than a bucket edge against `1 + tolerance`
//!   times stable's, at the edges nearest above stable's p90 and p99 (p50 too with a
//!   tolerance, where there is no rank test), which sees a slow tail that leaves the
//!   median alone. The edges share the rest of the weight.
//!
//! The edges are chosen once, from the first interval in which stable served enough
//! requests, and their evidence starts with the interval after it: choosing edges from
//! the same counts that are then judged would bias the test. A bucket edge is where the
//! counts are exact; a quantile read between edges (`histogram_quantile`) is not.

use serde::{Deserialize, Serialize};

use crate::analysis::sample::Sample;
use crate::analysis::sequential::evidence::{log_weighted_sum, threshold, RatioEvidence, Standing};
use crate::analysis::sequential::histogram::{histogram, per_bucket, slow_counts, Histogram};
use crate::analysis::sequential::shift::ShiftEvidence;
use crate::analysis::sequential::{evidence_words, grouped, measured, short, verdict, Judged};
use crate::analysis::verdict::{InconclusiveReason, Verdict};

/// With tolerance 0 "no slower than stable at all" cannot be shown: a healthy canary
/// *is* stable. The early Pass then shows, at every watched edge, that the canary's
/// share of requests slower than it is below `PASS_RATIO` times stable's (1.5 at the
/// edge near stable's p99, where slow requests are few and 1.25 would take most of a
/// rollout to show; 1.25 at the others), while the rollback evidence has not crossed:
/// the upper end of a confidence sequence for the ratio falls below it. A regression
/// that moves these shares less (a 1 % tail 1.3× slower) may pass early; the rank test
/// still rolls it back if the evidence later crosses. The benchmark's regressions (10 %
/// slower: 1.35× above the p90 edge; a 3 % tail 3× slower: 8× above the p99 edge) are
/// well past them.
pub const PASS_RATIO: f64 = 1.25;
/// The early-Pass ratio at edges near stable's p99 and above.
pub const PASS_RATIO_TAIL: f64 = 1.5;

/// Stable requests needed in one interval before edges are chosen from it.
pub const MIN_STABLE_REQUESTS_FOR_EDGES: f64 = 50.0;

/// Share of the evidence's weight on the rank test's body scores and on its tail
/// scores, when it runs (tolerance 0); the edges share the rest.
pub const SHIFT_WEIGHT: f64 = 0.4;
pub const TAIL_WEIGHT: f64 = 0.4;

/// The parameters of one latency comparison.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LatencyJudge {
    /// This metric's share of the false-rollback budget (not split again: the edges and
    /// the rank test are averaged).
    pub alpha: f64,
    /// The canary's share of slow requests may be up to `1 + tolerance` times stable's.
    /// With 0 (the default) the rank test over all buckets runs too.
    pub tolerance: f64,
    /// Stable's quantiles whose bucket edges are watched, e.g. `[0.5, 0.9, 0.99]`.
    pub quantiles: Vec<f64>,
}

/// The evidence at each chosen edge (empty until the edges are chosen; at most one
/// entry per quantile) and of the rank test. O(1): bounded by the number of quantiles.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LatencyEvidence {
    pub edges: Vec<EdgeEvidence>,
    /// The rank test over all buckets (tolerance 0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<ShiftEvidence>,
    /// The combined evidence reached 1/α once: a Fail is final.
    #[serde(default)]
    pub crossed: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeEvidence {
    /// The bucket edge: a request above it is slow.
    pub le: f64,
    pub evidence: RatioEvidence,
    /// With tolerance 0: the same counts against `PASS_RATIO`, for the early Pass only
    /// (its own α per edge: a wrong Pass advances a step early, it rolls nothing back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<RatioEvidence>,
}

impl LatencyJudge {
    /// The default edges: near stable's p90 and p99, and p50 with a tolerance (without
    /// one the rank test sees shifts of the body better than the p50 edge does).
    pub fn with_default_quantiles(alpha: f64, tolerance: f64) -> Self {
        let quantiles = if tolerance == 0.0 {
            vec![0.9, 0.99]
        } else {
            vec![0.5, 0.9, 0.99]
        };
        LatencyJudge {
            alpha,
            tolerance,
            quantiles,
        }
    }

    /// Whether the rank test over all buckets runs: only for "no slower at all".
    pub fn uses_shift_test(&self) -> bool {
        self.tolerance == 0.0
    }

    /// The edges' share of the weight, split evenly across them.
    fn edge_weight(&self, edges: usize) -> f64 {
        let share = if self.uses_shift_test() {
            1.0 - SHIFT_WEIGHT - TAIL_WEIGHT
        } else {
            1.0
        };
        share / edges.max(1) as f64
    }

    /// The α at which one edge's own evidence alone decides (`edge weight × e ≥ 1/α`):
    /// its Fail implies the combined one; its Pass shows that edge no worse.
    fn alpha_per_edge(&self, edges: usize) -> f64 {
        self.alpha * self.edge_weight(edges)
    }

    /// The α of one edge's early-Pass evidence (tolerance 0): the metric's whole α.
    /// A Pass needs every edge to show it (an intersection–union test), so a wrong
    /// Pass needs the edge whose null holds to reject: probability ≤ α, no split.
    fn alpha_per_pass(&self, _edges: usize) -> f64 {
        self.alpha
    }

    /// ln of the combined e-value: the weighted average of the rank test's and the
    /// edges' (an edge not chosen yet counts as 1, its starting value).
    pub fn log_evidence_worse(&self, state: &LatencyEvidence) -> f64 {
        let shift = state.shift.as_ref().filter(|_| self.uses_shift_test());
        let rank_tests = [
            shift.map(|s| (s.log_evidence_worse(), SHIFT_WEIGHT)),
            shift.map(|s| (s.log_evidence_tail(), TAIL_WEIGHT)),
            // Before any evidence the rank test stands at 1 too.
            (self.uses_shift_test() && shift.is_none())
                .then_some((0.0, SHIFT_WEIGHT + TAIL_WEIGHT)),
            state.edges.is_empty().then(|| (0.0, self.edge_weight(1))),
        ];
        let w = self.edge_weight(state.edges.len());
        let edges = state
            .edges
            .iter()
            .map(move |e| (e.evidence.log_evidence_worse(), w));
        log_weighted_sum(rank_tests.into_iter().flatten().chain(edges))
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
        // Everything that can make the interval unusable is checked before the state
        // moves: evidence is taken from a whole interval or not at all.
        let edge_counts = match state
            .edges
            .iter()
            .map(|edge| slow_counts(edge.le, c, s))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(counts) => counts,
            Err(reason) => return self.unchanged(state, reason),
        };
        let per_bucket = match self.uses_shift_test() {
            true => match per_bucket(c, s) {
                Ok(buckets) => Some(buckets),
                Err(reason) => return self.unchanged(state, reason),
            },
            false => None,
        };
        let mut next = state.clone();
        if let Some((canary_buckets, stable_buckets)) = per_bucket {
            next.shift
                .get_or_insert_with(ShiftEvidence::default)
                .update(&canary_buckets, &stable_buckets);
        }
        let mut note = None;
        if next.edges.is_empty() {
            note = Some(self.choose_edges(&mut next, s));
        }
        let alpha_edge = self.alpha_per_edge(next.edges.len());
        let alpha_pass = self.alpha_per_pass(next.edges.len());
        let mut standings = Vec::with_capacity(next.edges.len());
        for (edge, counts) in next.edges.iter_mut().zip(edge_counts) {
            let mut standing = edge.evidence.update(counts, alpha_edge);
            if let Some(pass) = edge.pass.as_mut() {
                pass.update(counts, alpha_pass);
                // Only the "below PASS_RATIO" side decides here; Worse comes from
                // `evidence` and the rank test.
                let shown = pass.log_evidence_no_worse() >= threshold(alpha_pass);
                if standing != Standing::Worse {
                    standing = if shown {
                        Standing::NoWorse
                    } else {
                        Standing::Undecided
                    };
                }
            }
            standings.push(standing);
        }
        if self.log_evidence_worse(&next) >= threshold(self.alpha)
            || standings.contains(&Standing::Worse)
        {
            next.crossed = true;
        }
        let standing = if next.crossed {
            Standing::Worse
        } else if !standings.is_empty() && standings.iter().all(|s| *s == Standing::NoWorse) {
            Standing::NoWorse
        } else {
            Standing::Undecided
        };
        let mut explanation = self.explain(&next);
        if standing == Standing::NoWorse && self.uses_shift_test() {
            explanation = format!(
                "{explanation}; shown below {}× stable's share of slow requests at every watched edge ({}× near p99)",
                short(PASS_RATIO),
                short(PASS_RATIO_TAIL)
            );
        }
        if let Some(note) = note {
            explanation = format!("{explanation}; {note}");
        }
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
        let explanation = match state.edges.is_empty() && state.shift.is_none() {
            true => reason.to_string(),
            false => format!("{reason}; {}", self.explain(state)),
        };
        Judged {
            verdict: Verdict::Inconclusive(reason),
            state: state.clone(),
            explanation,
        }
    }

    /// Chooses the edges from stable's histogram of this interval (their evidence
    /// starts with the next one) and says what it did.
    fn choose_edges(&self, state: &mut LatencyEvidence, stable: Histogram<'_>) -> String {
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
                        pass: self.uses_shift_test().then(|| {
                            RatioEvidence::new(if *q >= 0.99 {
                                PASS_RATIO_TAIL
                            } else {
                                PASS_RATIO
                            })
                        }),
                    });
                }
            }
        }
        if state.edges.is_empty() {
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
        }
    }

    /// Names what carries the most evidence against the canary: the whole distribution
    /// ("canary latencies rank slower than stable's …") or an edge ("canary requests
    /// slower than 250: 5.1 % vs stable 3.3 % (1.5×) …"), with the combined evidence:
    /// "evidence 48 of 100 needed to roll back, 1,240 canary requests".
    pub fn explain(&self, state: &LatencyEvidence) -> String {
        let w = self.edge_weight(state.edges.len());
        let worst = state.edges.iter().max_by(|a, b| {
            let key = |e: &EdgeEvidence| (e.evidence.crossed, e.evidence.log_evidence_worse());
            key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let shift = state.shift.as_ref().filter(|_| self.uses_shift_test());
        let edge_ln = worst.map_or(f64::MIN, |e| w.ln() + e.evidence.log_evidence_worse());
        let evidence = self.combined_words(state);
        if let Some(s) = shift {
            let body_ln = SHIFT_WEIGHT.ln() + s.log_evidence_worse();
            let tail_ln = TAIL_WEIGHT.ln() + s.log_evidence_tail();
            let requests = grouped(s.canary_requests);
            if tail_ln >= body_ln && tail_ln >= edge_ln && s.canary_beyond_p95 > 0.0 {
                let share = |part: f64, whole: f64| match whole > 0.0 {
                    true => format!("{}%", short(100.0 * part / whole)),
                    false => "none".to_owned(),
                };
                return format!(
                    "canary requests beyond stable's p95: {} vs stable {}, {evidence}, {requests} canary requests",
                    share(s.canary_beyond_p95, s.canary_requests),
                    share(s.stable_beyond_p95, s.stable_requests),
                );
            }
            if body_ln >= edge_ln {
                let (how, score) = match s.mean_score() {
                    Some(m) => (
                        if m > 0.0 {
                            "slower than"
                        } else {
                            "no slower than"
                        },
                        format!("mean normal score {m:+.2}; +0.2 is about a tenth slower"),
                    ),
                    None => ("no slower than", "no canary requests yet".to_owned()),
                };
                return format!(
                    "canary latencies rank {how} stable's ({score}), {evidence}, {requests} canary requests"
                );
            }
        }
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
        let alpha = self.alpha_per_edge(state.edges.len());
        let evidence = match e.standing(alpha) {
            Standing::NoWorse => evidence_words(e, alpha, Standing::NoWorse),
            _ => evidence,
        };
        format!(
            "canary requests slower than {}: {} vs stable {}{ratio}, {evidence}, {} canary requests",
            short(edge.le),
            share(e.canary_events, e.canary_trials),
            share(e.stable_events, e.stable_trials),
            grouped(e.canary_trials)
        )
    }

    /// "evidence 48 of 100 needed to roll back", from the combined e-value.
    fn combined_words(&self, state: &LatencyEvidence) -> String {
        super::rollback_words(self.log_evidence_worse(state), 1.0 / self.alpha)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::analysis::sample::{Bucket, Measured};

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
    fn without_a_tolerance_the_rank_test_fails_a_slower_canary_from_the_first_interval() {
        let j = LatencyJudge::with_default_quantiles(0.01, 0.0);
        assert!(j.uses_shift_test());
        let mut state = LatencyEvidence::default();
        let mut verdict = Verdict::Pass;
        let mut explanation = String::new();
        for _ in 0..30 {
            let r = j.judge(
                "latency",
                &state,
                &hist(1000.0, SLOWER),
                &hist(9000.0, BASE),
            );
            (state, verdict, explanation) = (r.state, r.verdict, r.explanation);
            if matches!(verdict, Verdict::Fail { .. }) {
                break;
            }
        }
        assert!(matches!(verdict, Verdict::Fail { .. }), "{verdict:?}");
        // The rank test counted every interval, the first one included.
        let shift = state.shift.as_ref().unwrap();
        assert_eq!(shift.intervals, state.edges[0].evidence.intervals + 1);
        // 10 % of the canary beyond stable's p95 (3.3 %): the tail scores lead.
        assert!(
            explanation.starts_with("canary requests beyond stable's p95: 10% vs stable 3.3%"),
            "{explanation}"
        );
        assert!(
            explanation.contains(", past the 100 needed to roll back, ")
                || explanation.contains("far past the 100 needed to roll back, "),
            "{explanation}"
        );
        // The state survives the status: JSON and back.
        let back: LatencyEvidence =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back.crossed, state.crossed);
        assert_eq!(back.edges.len(), state.edges.len());
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
