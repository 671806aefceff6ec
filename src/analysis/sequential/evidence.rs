//! The e-process under both sequential judges: is the rate of some event (a failed
//! request, a request slower than a bucket edge) on the canary more than `ratio0 =
//! 1 + tolerance` times stable's?
//!
//! Per interval each target served `n` requests with `x` events. Given the interval's
//! total events `E = x_canary + x_stable`, the canary's share of them is Binomial(E, p)
//! with `p = ρ·n_c / (ρ·n_c + n_s)` and `ρ` the rate ratio canary/stable (Lindon,
//! Sanden, Shirikian et al., KDD 2022: condition on the total and the baseline rate
//! drops out). Each interval uses its own `n_c`, `n_s`, so a change of weight between
//! steps changes `p` but not `ρ`: nothing is biased by the traffic split.
//!
//! Against H0: ρ ≤ ratio0 the evidence is a mixture of likelihood ratios:
//! - over a fixed grid of alternatives `ratio0 × m` (m from 1.25 to 10), weighted
//!   towards 1.5–2.5: the regressions a rollout most needs to catch early are the
//!   small ones (a 5× regression crosses anyway, its weight matters little). A
//!   conjugate beta prior would need one `p` for the whole run, which a rollout whose
//!   weight moves does not have; a fixed grid keeps the state O(1) and the mixture
//!   exact.
//! - over the interval the regression started: `START_MASS` (¾) on "from the start",
//!   the rest `(1 − ¾)/(s(s+1))` on interval `s ≥ 1`, so 7 minutes of healthy traffic
//!   do not bury a regression that starts at minute 7 under evidence for H0. (Half on
//!   the start cost a regression present from the start ln(3/2) nats more evidence;
//!   one from minute 7 (interval 28) pays ln 3.7 ≈ 1.3 nats more now, which the benchmark
//!   shows it can afford.)
//!
//! Each term is a nonnegative supermartingale under H0 (for ρ < ratio0 the one-sided
//! likelihood ratio only shrinks in expectation), and so is their weighted sum, which
//! starts at 1: by Ville's inequality it ever reaches `1/α` with probability ≤ α, at
//! however many looks. Real counts are binomial rather than Poisson; conditioned on
//! the total the canary's share is then less spread than the binomial used here, which
//! only makes the test more conservative (checked by the validity test in
//! `validity.rs`).
//!
//! The other way, a plain mixture (from the start only) over alternatives
//! `ratio0 / m` against H0': ρ ≥ ratio0 says when the canary is shown no worse than the
//! tolerance: the upper end of the matching confidence sequence is below `ratio0`.

use serde::{Deserialize, Serialize};

/// Alternatives of the mixture, as multiples of the tolerated ratio.
pub const MULTIPLIERS: [f64; 9] = [1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0];

/// Prior weight of each alternative (sums to 1): most on the small regressions.
pub const WEIGHTS: [f64; 9] = [0.1, 0.16, 0.16, 0.16, 0.12, 0.1, 0.08, 0.07, 0.05];

/// Prior mass of "the regression was there from the first interval".
pub const START_MASS: f64 = 0.75;

/// Log values are kept above this, so the state never holds an infinity (JSON has
/// none) and `e^FLOOR` is still exactly 0 in the mixture.
pub(crate) const LOG_FLOOR: f64 = -1.0e6;

/// What one interval brought for one target pair: requests and events per target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntervalCounts {
    pub canary_trials: f64,
    pub canary_events: f64,
    pub stable_trials: f64,
    pub stable_events: f64,
}

impl IntervalCounts {
    /// Counts that can be evidence: finite, nonnegative, events within trials.
    pub fn is_consistent(&self) -> bool {
        let pair_ok = |trials: f64, events: f64| {
            trials.is_finite() && events.is_finite() && events >= 0.0 && events <= trials
        };
        pair_ok(self.canary_trials, self.canary_events)
            && pair_ok(self.stable_trials, self.stable_events)
    }
}

/// The whole evidence of one comparison: O(1), serialisable into the status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RatioEvidence {
    /// The tolerated ratio the evidence is measured against; fixed at the first update.
    pub ratio0: f64,
    /// ln of each worse alternative's mixture over start intervals.
    worse: [f64; MULTIPLIERS.len()],
    /// ln of each better alternative's likelihood ratio since the start.
    better: [f64; MULTIPLIERS.len()],
    /// Intervals that carried at least one event (the change-point index).
    pub intervals: u32,
    pub canary_trials: f64,
    pub canary_events: f64,
    pub stable_trials: f64,
    pub stable_events: f64,
    /// The evidence against H0 reached 1/α once: a Fail is final.
    pub crossed: bool,
}

/// Where the evidence stands after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Evidence against H0 reached `1/α` (now or before).
    Worse,
    /// Evidence against H0' (canary at least `ratio0` times worse) reached `1/α`.
    NoWorse,
    Undecided,
}

impl RatioEvidence {
    pub fn new(ratio0: f64) -> Self {
        RatioEvidence {
            ratio0,
            worse: [LOG_FLOOR; MULTIPLIERS.len()],
            better: [0.0; MULTIPLIERS.len()],
            intervals: 0,
            canary_trials: 0.0,
            canary_events: 0.0,
            stable_trials: 0.0,
            stable_events: 0.0,
            crossed: false,
        }
    }

    /// Adds one interval. Inconsistent counts (NaN, negative, more events than
    /// trials) are not evidence and leave the state as it was; so do intervals where
    /// either side served nothing or nothing happened.
    pub fn update(&mut self, counts: IntervalCounts, alpha: f64) -> Standing {
        if counts.is_consistent() {
            self.canary_trials += counts.canary_trials;
            self.canary_events += counts.canary_events;
            self.stable_trials += counts.stable_trials;
            self.stable_events += counts.stable_events;
            let total = counts.canary_events + counts.stable_events;
            if total > 0.0 && counts.canary_trials > 0.0 && counts.stable_trials > 0.0 {
                self.add_interval(counts, total);
            }
        }
        if !self.crossed && self.log_evidence_worse() >= threshold(alpha) {
            self.crossed = true;
        }
        self.standing(alpha)
    }

    fn add_interval(&mut self, c: IntervalCounts, total: f64) {
        let (n_c, n_s, x) = (c.canary_trials, c.stable_trials, c.canary_events);
        let null_ln = (self.ratio0 * n_c + n_s).ln();
        // Mass of "the regression starts with this interval" (s = intervals so far).
        let start_ln = start_mass_ln(self.intervals);
        for (k, m) in MULTIPLIERS.iter().enumerate() {
            let up = log_likelihood_ratio(x, total, n_c, m.ln(), null_ln, self.ratio0 * m, n_s);
            self.worse[k] = (log_add(self.worse[k], start_ln) + up).max(LOG_FLOOR);
            let down = log_likelihood_ratio(x, total, n_c, -m.ln(), null_ln, self.ratio0 / m, n_s);
            self.better[k] = (self.better[k] + down).max(LOG_FLOOR);
        }
        self.intervals = self.intervals.saturating_add(1);
    }

    /// ln of the e-value against H0: ρ ≤ ratio0 (0 before any evidence).
    pub fn log_evidence_worse(&self) -> f64 {
        let terms = self.worse.iter().copied().zip(WEIGHTS);
        log_weighted_sum(std::iter::once((pending_mass_ln(self.intervals), 1.0)).chain(terms))
    }

    /// ln of the e-value against H0': ρ ≥ ratio0 (0 before any evidence).
    pub fn log_evidence_no_worse(&self) -> f64 {
        log_weighted_sum(self.better.iter().copied().zip(WEIGHTS))
    }

    pub fn standing(&self, alpha: f64) -> Standing {
        if self.crossed {
            Standing::Worse
        } else if self.log_evidence_no_worse() >= threshold(alpha) {
            Standing::NoWorse
        } else {
            Standing::Undecided
        }
    }

    /// Canary's event rate over stable's so far, when both are defined.
    pub fn observed_ratio(&self) -> Option<f64> {
        let canary = self.canary_events / self.canary_trials;
        let stable = self.stable_events / self.stable_trials;
        let ratio = canary / stable;
        (canary.is_finite() && stable.is_finite() && ratio.is_finite()).then_some(ratio)
    }
}

/// ln of the prior mass of "the regression starts with interval `s`" (0-based):
/// `START_MASS` for the first, `(1 − START_MASS)/(s(s+1))` after; they sum to 1.
pub(crate) fn start_mass_ln(s: u32) -> f64 {
    if s == 0 {
        START_MASS.ln()
    } else {
        let s = f64::from(s);
        (1.0 - START_MASS).ln() - (s * (s + 1.0)).ln()
    }
}

/// ln of the prior mass of starts not seen yet after `t` intervals: 1 before any,
/// then `Σ_{s ≥ t} (1 − START_MASS)/(s(s+1)) = (1 − START_MASS)/t`. The mixture holds
/// them at their prior value 1 (their likelihood ratio has not started).
pub(crate) fn pending_mass_ln(t: u32) -> f64 {
    if t == 0 {
        0.0
    } else {
        (1.0 - START_MASS).ln() - f64::from(t).ln()
    }
}

/// ln(1/α): where the evidence decides.
pub fn threshold(alpha: f64) -> f64 {
    -alpha.ln()
}

/// ln LR of ρ = ratio0·m against ρ = ratio0 for one interval:
/// `x·ln m + E·(ln(ratio0·n_c + n_s) − ln(ρ·n_c + n_s))`.
fn log_likelihood_ratio(
    x: f64,
    total: f64,
    n_c: f64,
    ln_m: f64,
    null_ln: f64,
    rho: f64,
    n_s: f64,
) -> f64 {
    x * ln_m + total * (null_ln - (rho * n_c + n_s).ln())
}

/// ln(Σ w·e^x) over `(x, w)` pairs, without overflow: one `exp` per term and one `ln`
/// (the judge's hot path: a fold of `log_add` took two transcendental calls a term).
pub(crate) fn log_weighted_sum<I>(terms: I) -> f64
where
    I: Iterator<Item = (f64, f64)> + Clone,
{
    let top = terms.clone().map(|(x, _)| x).fold(LOG_FLOOR, f64::max);
    let sum: f64 = terms.map(|(x, w)| w * (x - top).exp()).sum();
    if sum > 0.0 {
        (top + sum.ln()).max(LOG_FLOOR)
    } else {
        LOG_FLOOR
    }
}

/// ln(e^a + e^b) without overflow.
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counts(n_c: f64, x_c: f64, n_s: f64, x_s: f64) -> IntervalCounts {
        IntervalCounts {
            canary_trials: n_c,
            canary_events: x_c,
            stable_trials: n_s,
            stable_events: x_s,
        }
    }

    #[test]
    fn starts_at_one_and_round_trips_through_json() {
        let e = RatioEvidence::new(1.2);
        assert!(e.log_evidence_worse().abs() < 1e-12);
        let mut e = e;
        e.update(counts(100.0, 3.0, 1900.0, 10.0), 0.01);
        let json = serde_json::to_string(&e).unwrap();
        let back: RatioEvidence = serde_json::from_str(&json).unwrap();
        // JSON keeps the numbers to the last bit or one ulp off: the same evidence.
        assert!((back.log_evidence_worse() - e.log_evidence_worse()).abs() < 1e-12);
        assert!((back.log_evidence_no_worse() - e.log_evidence_no_worse()).abs() < 1e-12);
        assert_eq!(
            (back.intervals, back.canary_events),
            (e.intervals, e.canary_events)
        );
    }

    #[test]
    fn the_priors_are_normalised() {
        assert!((WEIGHTS.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Starts 0..t plus the pending mass after t sum to 1 for every t.
        for t in [1_u32, 2, 7, 28, 500] {
            let seen: f64 = (0..t).map(|s| start_mass_ln(s).exp()).sum();
            let total = seen + pending_mass_ln(t).exp();
            assert!((total - 1.0).abs() < 1e-12, "{t}: {total}");
        }
    }

    #[test]
    fn weighted_sums_match_the_plain_formula() {
        let terms = [(0.5_f64, 0.25_f64), (-3.0, 0.5), (2.0, 0.25)];
        let plain: f64 = terms.iter().map(|(x, w)| w * x.exp()).sum::<f64>().ln();
        let fast = log_weighted_sum(terms.iter().copied());
        assert!((plain - fast).abs() < 1e-12, "{plain} {fast}");
        // Far apart values neither overflow nor vanish.
        let big = log_weighted_sum([(5000.0, 0.5), (0.0, 0.5)].into_iter());
        assert!((big - (5000.0 + 0.5_f64.ln())).abs() < 1e-9, "{big}");
    }

    #[test]
    fn a_clear_regression_crosses_and_stays_crossed() {
        let mut e = RatioEvidence::new(1.2);
        let mut standing = Standing::Undecided;
        for _ in 0..20 {
            standing = e.update(counts(1000.0, 50.0, 1000.0, 5.0), 0.01);
        }
        assert_eq!(standing, Standing::Worse);
        // Healthy intervals afterwards do not undo a decision already made.
        for _ in 0..50 {
            standing = e.update(counts(1000.0, 5.0, 1000.0, 5.0), 0.01);
        }
        assert_eq!(standing, Standing::Worse);
    }

    #[test]
    fn equal_rates_with_much_data_show_no_worse() {
        let mut e = RatioEvidence::new(1.2);
        let mut standing = Standing::Undecided;
        for _ in 0..200 {
            standing = e.update(counts(10_000.0, 500.0, 10_000.0, 500.0), 0.01);
        }
        assert_eq!(standing, Standing::NoWorse);
        assert!((e.observed_ratio().unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn inconsistent_or_empty_intervals_are_no_evidence() {
        let mut e = RatioEvidence::new(1.2);
        let before = e.clone();
        for bad in [
            counts(f64::NAN, 1.0, 10.0, 1.0),
            counts(10.0, 11.0, 10.0, 1.0),
            counts(10.0, -1.0, 10.0, 1.0),
            counts(10.0, 1.0, f64::INFINITY, 1.0),
        ] {
            assert_eq!(e.update(bad, 0.01), Standing::Undecided);
            assert_eq!(e, before);
        }
        // No events: the counts are kept, the evidence does not move.
        e.update(counts(100.0, 0.0, 100.0, 0.0), 0.01);
        assert_eq!(e.intervals, 0);
        assert!(e.log_evidence_worse().abs() < 1e-12);
        // Only the canary served (100%): p = 1 whatever ρ, no evidence either way.
        e.update(counts(100.0, 5.0, 0.0, 0.0), 0.01);
        assert!(e.log_evidence_worse().abs() < 1e-12);
    }

    #[test]
    fn the_traffic_split_does_not_bias_the_evidence() {
        // The same rates (ρ = 1) seen at a 5 % and at a 50 % split: expected counts,
        // so the evidence against H0 must fall in both.
        for share in [0.05, 0.5] {
            let mut e = RatioEvidence::new(1.2);
            let (n_c, n_s) = (10_000.0 * share, 10_000.0 * (1.0 - share));
            e.update(counts(n_c, n_c * 0.01, n_s, n_s * 0.01), 0.01);
            assert!(e.log_evidence_worse() < 0.0, "share {share}");
        }
    }
}
