//! An e-process for "the canary's latencies are shifted slower than stable's", from
//! all histogram buckets at once (a rank test over buckets), not from one edge.
//!
//! Per interval both targets' requests are pooled. Each bucket `j` gets the normal
//! score of its pooled mid-rank, `g_j = Φ⁻¹((requests below j + T_j/2) / N)` (van der
//! Waerden scores: for a shift of log-latency they are nearly as informative as the
//! exact likelihood, 0.0148 of 0.0148 nats per canary request for a 10 % slower
//! median on the benchmark's buckets, where the slow share at one edge gives 0.0055).
//! The statistic is the canary's score sum `S = Σ_j c_j·g_j`.
//!
//! Validity, without any model of the latency distribution: under H0 (canary and
//! stable latencies come from the same distribution, and which target serves a
//! request does not depend on its latency) the canary's `n_c` requests are, given the
//! pooled bucket totals and `n_c`, a uniformly random subset of the interval's `N`
//! requests. For a sample drawn without replacement, Hoeffding (1963, Theorem 4)
//! gives `E[f(S)] ≤ E[f(S')]` for convex `f`, with `S'` the sum of `n_c` draws with
//! replacement. With `f = exp(θ·)`:
//!
//! `E[exp(θS)] ≤ (Σ_j (T_j/N)·e^{θ g_j})^{n_c}`,
//!
//! so `exp(θS) / (Σ_j (T_j/N)·e^{θ g_j})^{n_c}` has expectation at most 1 given the
//! past; the scores depend only on what is conditioned on. Their product over
//! intervals is a test supermartingale for every θ ≥ 0, and so is a mixture over a
//! grid of θ and over the interval the shift started (the same start prior as
//! `evidence.rs`). A canary that is faster makes large scores rarer on the canary
//! and the evidence falls.
//!
//! Two families of scores run side by side, each its own e-process:
//! - *body*: the normal scores themselves, for a shift of the whole distribution;
//! - *tail*: the part of the normal score above stable's p95, `max(0, g_j − 1.645)`,
//!   for a slow tail that leaves the median alone (3 % of requests 3× slower: 0.0088
//!   nats per canary request, where the exact likelihood has 0.0096 and the share
//!   above the best edge 0.0064).
//!
//! The null is "no slower at all": a tolerance cannot be expressed in ranks, so the
//! latency judge uses this test only with tolerance 0 (its default).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::analysis::sequential::evidence::{
    log_add, log_weighted_sum, pending_mass_ln, start_mass_ln, LOG_FLOOR,
};

/// Tilts of the mixture (per unit of normal score). The best tilt for a shift of
/// log-latency by `d` is about `d/σ`: 0.2 for 10 % slower at σ 0.5, 0.45 for 25 %.
pub const THETAS: [f64; 6] = [0.05, 0.1, 0.2, 0.35, 0.6, 1.0];

/// Prior weight of each tilt (sums to 1).
pub const THETA_WEIGHTS: [f64; 6] = [0.15, 0.2, 0.2, 0.2, 0.15, 0.1];

/// Tail scores start at this normal score (stable's p95).
pub const TAIL_FROM: f64 = 1.645;

/// Tilts of the tail scores' mixture (the best for a 3 % tail 3× slower is about 1).
pub const TAIL_THETAS: [f64; 4] = [0.3, 0.6, 1.0, 1.6];

/// Prior weight of each tail tilt (sums to 1).
pub const TAIL_THETA_WEIGHTS: [f64; 4] = [0.2, 0.3, 0.3, 0.2];

/// The evidence of one latency comparison over all buckets: O(1), serialisable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShiftEvidence {
    /// ln of each body tilt's mixture over start intervals.
    worse: [f64; THETAS.len()],
    /// ln of each tail tilt's mixture over start intervals.
    tail: [f64; TAIL_THETAS.len()],
    /// Intervals that could carry evidence (the change-point index).
    pub intervals: u32,
    pub canary_requests: f64,
    /// Sum of the canary's normal scores: their mean is about `(shift of ln latency)/σ`.
    pub canary_score: f64,
    /// Canary requests in buckets above stable's p95 (by pooled rank), and stable's.
    pub canary_beyond_p95: f64,
    pub stable_requests: f64,
    pub stable_beyond_p95: f64,
}

impl Default for ShiftEvidence {
    fn default() -> Self {
        ShiftEvidence {
            worse: [LOG_FLOOR; THETAS.len()],
            tail: [LOG_FLOOR; TAIL_THETAS.len()],
            intervals: 0,
            canary_requests: 0.0,
            canary_score: 0.0,
            canary_beyond_p95: 0.0,
            stable_requests: 0.0,
            stable_beyond_p95: 0.0,
        }
    }
}

impl ShiftEvidence {
    /// Adds one interval: per bucket (the same buckets on both sides, the last one
    /// above the highest edge), the requests each target served in it. Buckets that
    /// do not line up, negative or non-finite counts are no evidence and change nothing.
    pub fn update(&mut self, canary: &[f64], stable: &[f64]) {
        if canary.len() != stable.len()
            || canary
                .iter()
                .chain(stable)
                .any(|c| !c.is_finite() || *c < 0.0)
        {
            return;
        }
        let n_c: f64 = canary.iter().sum();
        let n_s: f64 = stable.iter().sum();
        let total = n_c + n_s;
        if n_c <= 0.0 || n_s <= 0.0 {
            return;
        }
        let Ok(normal) = Normal::new(0.0, 1.0) else {
            return;
        };
        let mut below = 0.0;
        let (mut canary_score, mut canary_tail) = (0.0, 0.0);
        let (mut canary_beyond, mut stable_beyond) = (0.0, 0.0);
        // (share of the pooled requests, score) per non-empty bucket.
        let mut pooled = [(0.0, 0.0); 32];
        let mut used = 0;
        for (c, s) in canary.iter().zip(stable) {
            let t = c + s;
            if t <= 0.0 {
                continue;
            }
            let score = normal.inverse_cdf((below + t / 2.0) / total);
            below += t;
            canary_score += c * score;
            canary_tail += c * tail_score(score);
            if score > TAIL_FROM {
                canary_beyond += c;
                stable_beyond += s;
            }
            match pooled.get_mut(used) {
                Some(slot) => *slot = (t / total, score),
                // More buckets than any histogram has: not evidence.
                None => return,
            }
            used += 1;
        }
        let pooled = &pooled[..used];
        let start_ln = start_mass_ln(self.intervals);
        for (k, theta) in THETAS.iter().enumerate() {
            let mgf: f64 = pooled.iter().map(|(p, g)| p * (theta * g).exp()).sum();
            let up = theta * canary_score - n_c * mgf.ln();
            self.worse[k] = (log_add(self.worse[k], start_ln) + up).max(LOG_FLOOR);
        }
        for (k, theta) in TAIL_THETAS.iter().enumerate() {
            // Most buckets score 0 in the tail: e^0 = 1 needs no `exp`.
            let mgf: f64 = pooled
                .iter()
                .map(|(p, g)| match tail_score(*g) {
                    0.0 => *p,
                    h => p * (theta * h).exp(),
                })
                .sum();
            let up = theta * canary_tail - n_c * mgf.ln();
            self.tail[k] = (log_add(self.tail[k], start_ln) + up).max(LOG_FLOOR);
        }
        self.intervals = self.intervals.saturating_add(1);
        self.canary_requests += n_c;
        self.canary_score += canary_score;
        self.canary_beyond_p95 += canary_beyond;
        self.stable_requests += n_s;
        self.stable_beyond_p95 += stable_beyond;
    }

    /// ln of the body scores' e-value against H0 (0 before any evidence).
    pub fn log_evidence_worse(&self) -> f64 {
        mixture(&self.worse, &THETA_WEIGHTS, self.intervals)
    }

    /// ln of the tail scores' e-value against H0 (0 before any evidence).
    pub fn log_evidence_tail(&self) -> f64 {
        mixture(&self.tail, &TAIL_THETA_WEIGHTS, self.intervals)
    }

    /// The canary's mean normal score: 0 like stable, +0.2 about a tenth slower.
    pub fn mean_score(&self) -> Option<f64> {
        (self.canary_requests > 0.0).then(|| self.canary_score / self.canary_requests)
    }
}

/// The part of a normal score beyond stable's p95.
fn tail_score(score: f64) -> f64 {
    (score - TAIL_FROM).max(0.0)
}

/// ln of a mixture over tilts (`weights`) and start intervals, after `intervals`.
fn mixture(terms: &[f64], weights: &[f64], intervals: u32) -> f64 {
    let terms = terms.iter().copied().zip(weights.iter().copied());
    log_weighted_sum(std::iter::once((pending_mass_ln(intervals), 1.0)).chain(terms))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tilts_are_normalised_and_the_state_round_trips() {
        assert!((THETA_WEIGHTS.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((TAIL_THETA_WEIGHTS.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let mut e = ShiftEvidence::default();
        assert!(e.log_evidence_worse().abs() < 1e-12);
        e.update(&[1.0, 20.0, 15.0, 2.0], &[30.0, 400.0, 260.0, 20.0]);
        let back: ShiftEvidence =
            serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert!((back.log_evidence_worse() - e.log_evidence_worse()).abs() < 1e-12);
    }

    #[test]
    fn slower_canaries_gain_evidence_like_ones_lose_it() {
        let (mut slower, mut same) = (ShiftEvidence::default(), ShiftEvidence::default());
        for _ in 0..20 {
            slower.update(&[5.0, 40.0, 45.0, 10.0], &[100.0, 500.0, 350.0, 50.0]);
            same.update(&[10.0, 50.0, 35.0, 5.0], &[100.0, 500.0, 350.0, 50.0]);
        }
        assert!(slower.log_evidence_worse() > 10.0, "{slower:?}");
        assert!(same.log_evidence_worse() < 0.0, "{same:?}");
        assert!(slower.mean_score().unwrap() > 0.2);
    }

    #[test]
    fn a_slow_tail_shows_in_the_tail_scores() {
        // Same body, but 3 of 100 canary requests in the slowest bucket instead of 0.3.
        let mut e = ShiftEvidence::default();
        for _ in 0..20 {
            e.update(&[10.0, 50.0, 37.0, 3.0], &[100.0, 500.0, 397.0, 3.0]);
        }
        assert!(e.log_evidence_tail() > 10.0, "{e:?}");
        assert!(e.log_evidence_tail() > e.log_evidence_worse(), "{e:?}");
        assert_eq!(e.canary_beyond_p95, 60.0);
    }

    #[test]
    fn unusable_buckets_change_nothing() {
        let mut e = ShiftEvidence::default();
        let before = e.clone();
        e.update(&[1.0, 2.0], &[1.0, 2.0, 3.0]);
        e.update(&[1.0, f64::NAN], &[1.0, 2.0]);
        e.update(&[1.0, -2.0], &[1.0, 2.0]);
        e.update(&[0.0, 0.0], &[1.0, 2.0]);
        assert_eq!(e, before);
    }
}
