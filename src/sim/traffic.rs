//! Traffic with real sampling noise, from a seed: per scrape, how many requests each
//! target served, how many failed, and a Prometheus-style latency histogram. Pure and
//! deterministic: the same model, seed and weights give the same counts.
//!
//! Requests arrive as a Poisson process split by the canary weight. Each request falls
//! in one cell (latency bucket × failed or not) with the target's probabilities, so by
//! Poisson thinning every cell's count is an independent Poisson draw: the requests
//! are Poisson, the errors given the requests binomial, the buckets given the requests
//! multinomial, exactly as if each request were drawn one by one (but at a cost that
//! does not grow with the rate).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::analysis::sample::{Bucket, Measured, Sample};

/// Bucket edges in milliseconds, like a Prometheus histogram's `le` labels (the
/// `+Inf` bucket is the request count).
pub const BUCKETS_MS: [f64; 11] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// A share of requests that is `factor` times slower than the rest.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct SlowTail {
    pub fraction: f64,
    pub factor: f64,
}

/// How one target answers: its error probability and its latency distribution
/// (lognormal with this median and σ of the log, optionally with a slow tail).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Behaviour {
    pub error_rate: f64,
    pub median_ms: f64,
    pub sigma: f64,
    pub slow_tail: Option<SlowTail>,
}

impl Behaviour {
    /// The detection benchmark's healthy target (docs/benchmarks.md): 0.5 % errors,
    /// latency lognormal with median 100 ms and σ 0.5, no slow tail.
    pub const BENCHMARK_BASELINE: Behaviour = Behaviour {
        error_rate: 0.005,
        median_ms: 100.0,
        sigma: 0.5,
        slow_tail: None,
    };

    /// Share of requests at or below `le` milliseconds.
    pub fn latency_cdf(&self, le: f64) -> f64 {
        let lognormal = |median: f64| {
            let z = (le.ln() - median.ln()) / self.sigma;
            0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2)
        };
        match self.slow_tail {
            None => lognormal(self.median_ms),
            Some(t) => {
                (1.0 - t.fraction) * lognormal(self.median_ms)
                    + t.fraction * lognormal(self.median_ms * t.factor)
            }
        }
    }

    /// Probability of each bucket (the finite ones, then above the last edge).
    fn bucket_probabilities(&self) -> [f64; BUCKETS_MS.len() + 1] {
        let mut p = [0.0; BUCKETS_MS.len() + 1];
        let mut below = 0.0;
        for (i, le) in BUCKETS_MS.iter().enumerate() {
            let cdf = self.latency_cdf(*le);
            p[i] = (cdf - below).max(0.0);
            below = cdf;
        }
        p[BUCKETS_MS.len()] = (1.0 - below).max(0.0);
        p
    }
}

/// From `from_secs` on, the canary behaves as `canary`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Change {
    pub from_secs: u64,
    pub canary: Behaviour,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct TrafficModel {
    /// Requests per second to the service, split between the targets by weight.
    pub requests_per_second: f64,
    pub stable: Behaviour,
    pub canary: Behaviour,
    pub change: Option<Change>,
    pub scrape_interval_secs: u64,
}

impl TrafficModel {
    /// The benchmark's traffic: `requests_per_second` in all, stable at the baseline,
    /// the canary behaving as `canary` from the start, a scrape every 15 s.
    pub fn benchmark(requests_per_second: f64, canary: Behaviour) -> Self {
        TrafficModel {
            requests_per_second,
            stable: Behaviour::BENCHMARK_BASELINE,
            canary,
            change: None,
            scrape_interval_secs: 15,
        }
    }

    /// The canary's behaviour at `secs` from the start.
    pub fn canary_at(&self, secs: u64) -> Behaviour {
        match self.change {
            Some(c) if secs >= c.from_secs => c.canary,
            _ => self.canary,
        }
    }
}

/// What one target served in one scrape interval (or several, added up).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TargetCounts {
    pub requests: u64,
    pub errors: u64,
    /// Cumulative: requests at or below each of `BUCKETS_MS`.
    pub buckets: [u64; BUCKETS_MS.len()],
}

impl TargetCounts {
    pub fn add(&mut self, other: &TargetCounts) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (b, o) in self.buckets.iter_mut().zip(other.buckets) {
            *b += o;
        }
    }

    /// The counts as a metric source reports them: `value` is the error rate (NaN
    /// without requests), with requests, errors and the histogram beside it.
    pub fn to_sample(&self) -> Sample {
        Sample::Value(Measured {
            value: self.errors as f64 / self.requests as f64,
            requests: Some(self.requests as f64),
            errors: Some(self.errors as f64),
            series: Vec::new(),
            buckets: BUCKETS_MS
                .iter()
                .zip(self.buckets)
                .map(|(le, count)| Bucket {
                    le: *le,
                    count: count as f64,
                })
                .collect(),
        })
    }
}

/// One scrape interval's counts for both targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scrape {
    /// Seconds from the start at the end of the interval.
    pub end_secs: u64,
    pub canary: TargetCounts,
    pub stable: TargetCounts,
}

/// Draws scrape after scrape from a model and a seed.
pub struct Traffic {
    model: TrafficModel,
    rng: StdRng,
    elapsed_secs: u64,
}

impl Traffic {
    pub fn new(model: TrafficModel, seed: u64) -> Self {
        Traffic {
            model,
            rng: StdRng::seed_from_u64(seed),
            elapsed_secs: 0,
        }
    }

    pub fn elapsed_secs(&self) -> u64 {
        self.elapsed_secs
    }

    /// The next scrape interval with `canary_weight` percent of requests on the canary.
    pub fn next_scrape(&mut self, canary_weight: u8) -> Scrape {
        let interval = self.model.scrape_interval_secs;
        let share = f64::from(canary_weight.min(100)) / 100.0;
        let expected = self.model.requests_per_second * interval as f64;
        let canary_behaviour = self.model.canary_at(self.elapsed_secs);
        let canary = draw(&mut self.rng, expected * share, &canary_behaviour);
        let stable = draw(&mut self.rng, expected * (1.0 - share), &self.model.stable);
        self.elapsed_secs += interval;
        Scrape {
            end_secs: self.elapsed_secs,
            canary,
            stable,
        }
    }
}

/// One target's counts for one interval with `expected_requests` requests on average.
pub fn draw(rng: &mut StdRng, expected_requests: f64, behaviour: &Behaviour) -> TargetCounts {
    let mut counts = TargetCounts::default();
    let error_rate = behaviour.error_rate.clamp(0.0, 1.0);
    let mut cumulative = 0;
    for (i, p) in behaviour.bucket_probabilities().iter().enumerate() {
        let mean = expected_requests * p;
        let errors = poisson(rng, mean * error_rate);
        let ok = poisson(rng, mean * (1.0 - error_rate));
        counts.errors += errors;
        counts.requests += errors + ok;
        cumulative += errors + ok;
        if let Some(b) = counts.buckets.get_mut(i) {
            *b = cumulative;
        }
    }
    counts
}

/// A Poisson draw with mean `mean` (0 for a mean that is not a positive number).
/// Multiplication of uniforms below 10; Hörmann's transformed rejection (PTRS, 1993)
/// above, which is exact and takes a bounded number of tries.
pub fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    if mean < 10.0 {
        let limit = (-mean).exp();
        let mut product: f64 = rng.random();
        let mut k = 0;
        while product > limit {
            product *= rng.random::<f64>();
            k += 1;
        }
        return k;
    }
    let sqrt_mean = mean.sqrt();
    let ln_mean = mean.ln();
    let b = 0.931 + 2.53 * sqrt_mean;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let v_r = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u: f64 = rng.random::<f64>() - 0.5;
        let v: f64 = rng.random();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + mean + 0.43).floor();
        if us >= 0.07 && v <= v_r {
            return k as u64;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        let lhs = v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln();
        let rhs = -mean + k * ln_mean - statrs::function::gamma::ln_gamma(k + 1.0);
        if lhs <= rhs {
            return k as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Behaviour {
        Behaviour::BENCHMARK_BASELINE
    }

    fn model() -> TrafficModel {
        TrafficModel::benchmark(2000.0, base())
    }

    #[test]
    fn poisson_draws_have_the_right_mean_and_variance() {
        let mut rng = StdRng::seed_from_u64(7);
        for mean in [0.3, 4.0, 25.0, 3000.0] {
            let n = 20_000;
            let draws: Vec<f64> = (0..n).map(|_| poisson(&mut rng, mean) as f64).collect();
            let m = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (n - 1) as f64;
            // Five standard errors of the mean; the variance within 5 %.
            assert!(
                (m - mean).abs() < 5.0 * (mean / n as f64).sqrt(),
                "{mean}: {m}"
            );
            assert!((var / mean - 1.0).abs() < 0.05, "{mean}: {var}");
        }
        assert_eq!(poisson(&mut rng, 0.0), 0);
        assert_eq!(poisson(&mut rng, f64::NAN), 0);
    }

    #[test]
    fn the_same_seed_gives_the_same_counts() {
        let draw = |seed| {
            let mut t = Traffic::new(model(), seed);
            (0..10).map(|i| t.next_scrape(5 * i)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn counts_follow_the_weight_the_error_rate_and_the_latency() {
        let mut t = Traffic::new(model(), 1);
        let (mut canary, mut stable) = (TargetCounts::default(), TargetCounts::default());
        for _ in 0..40 {
            let s = t.next_scrape(25);
            canary.add(&s.canary);
            stable.add(&s.stable);
        }
        let total = (canary.requests + stable.requests) as f64;
        assert!((total / (2000.0 * 600.0) - 1.0).abs() < 0.01, "{total}");
        assert!((canary.requests as f64 / total - 0.25).abs() < 0.01);
        let error_rate = stable.errors as f64 / stable.requests as f64;
        assert!((error_rate - 0.005).abs() < 0.0005, "{error_rate}");
        // Median 100 ms: half the requests at or below the 100 ms edge.
        let at_100 = stable.buckets[4] as f64 / stable.requests as f64;
        assert!((at_100 - 0.5).abs() < 0.01, "{at_100}");
        assert!(stable.buckets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(t.elapsed_secs(), 600);
    }

    #[test]
    fn a_change_applies_from_its_offset_and_a_slow_tail_slows_the_tail() {
        let mut slow = base();
        slow.slow_tail = Some(SlowTail {
            fraction: 0.03,
            factor: 3.0,
        });
        let m = TrafficModel {
            change: Some(Change {
                from_secs: 420,
                canary: slow,
            }),
            ..model()
        };
        assert_eq!(m.canary_at(419), base());
        assert_eq!(m.canary_at(420), slow);
        // Share above 500 ms: about 0.06 % without the tail, about 0.5 % with it.
        assert!(1.0 - base().latency_cdf(500.0) < 0.001);
        assert!(1.0 - slow.latency_cdf(500.0) > 0.004);
    }
}
