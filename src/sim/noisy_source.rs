//! The metric source of a scenario with a traffic model: counts drawn scrape by scrape
//! from the seed (`sim::traffic`), at the canary weight live at each scrape, and every
//! query answered from those same draws as Prometheus would answer it from the
//! scraped counters: a built-in template's value over `[at − window, at]` (error rate as
//! 5xx rate over total rate, latency by `histogram_quantile` over the bucket rates,
//! request rate), the requests, errors and buckets beside it, and the canary requests
//! `minRequests` sees over the same window.
//!
//! A scrape counts in a range when its end lies in `(from, to]`, as `increase(x[w])`
//! over counters sampled exactly at the scrape instants gives `value(to) − value(from)`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::analysis::sample::{AnalysisInput, Bucket, Measured, MetricObservation, Sample};
use crate::metrics::builtin::{self, Measure};
use crate::metrics::scripted::{MetricBehaviour, Outage, ScriptedMetrics};
use crate::metrics::{MetricSource, PolicyRef};
use crate::policy::{Duration, MetricSpec, RolloutSpec, Timestamp};
use crate::router::memory::MemoryRouter;
use crate::sim::traffic::{draw, TargetCounts, BUCKETS_MS};
use crate::sim::traffic_spec::NoisyTraffic;

/// One scrape interval's counts, as drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrawnScrape {
    /// Offset from the start at the end of the interval (the scrape instant).
    pub end: Duration,
    /// The canary weight the requests were split by.
    pub canary_weight: u8,
    pub canary: TargetCounts,
    pub stable: TargetCounts,
}

/// The world of a traffic model: its draws so far, and how to make the next ones.
pub struct NoisyWorld {
    start: Timestamp,
    traffic: NoisyTraffic,
    /// Metrics the scenario scripts by value (`metrics:`); they keep their values and
    /// take their request counts from the draws.
    scripted: BTreeMap<String, MetricBehaviour>,
    outages: Vec<Outage>,
    router: Arc<MemoryRouter>,
    /// The counts' stream; nothing else draws from it, so the counts do not depend on
    /// how often or what is queried.
    counts_rng: StdRng,
    /// Jitter of scripted values.
    jitter_rng: StdRng,
    scrapes: Vec<DrawnScrape>,
}

impl NoisyWorld {
    pub fn new(
        start: Timestamp,
        traffic: NoisyTraffic,
        scripted: BTreeMap<String, MetricBehaviour>,
        outages: Vec<Outage>,
        router: Arc<MemoryRouter>,
        seed: u64,
    ) -> Self {
        NoisyWorld {
            start,
            traffic,
            scripted,
            outages,
            router,
            counts_rng: StdRng::seed_from_u64(seed),
            jitter_rng: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            scrapes: Vec::new(),
        }
    }

    /// Every scrape drawn so far, oldest first.
    pub fn scrapes(&self) -> &[DrawnScrape] {
        &self.scrapes
    }

    fn offset(&self, at: Timestamp) -> Duration {
        Duration::from((at - self.start).to_std().unwrap_or_default())
    }

    /// Draws every scrape that ends at or before `at`, at the weight live now. The
    /// simulation calls this before each tick changes the route, so each scrape is
    /// drawn at the weight live at its end.
    pub fn advance_to(&mut self, at: Timestamp) {
        let offset = self.offset(at).std();
        let interval = self.traffic.scrape_interval.std();
        if interval.is_zero() {
            return;
        }
        loop {
            let drawn = u32::try_from(self.scrapes.len()).unwrap_or(u32::MAX);
            let started = interval.saturating_mul(drawn);
            let end = started.saturating_add(interval);
            if end > offset || end == started {
                return;
            }
            let weight = self.router.route().canary_weight.min(100);
            let share = f64::from(weight) / 100.0;
            let expected = self.traffic.requests_per_second * interval.as_secs_f64();
            let behaviour = self.traffic.canary_at(Duration::from(started));
            let canary = draw(&mut self.counts_rng, expected * share, &behaviour);
            let stable = draw(
                &mut self.counts_rng,
                expected * (1.0 - share),
                &self.traffic.stable,
            );
            self.scrapes.push(DrawnScrape {
                end: Duration::from(end),
                canary_weight: weight,
                canary,
                stable,
            });
        }
    }

    /// Counts of the scrapes that end in `(from, to]` (offsets from the start).
    fn counts(&self, from: Duration, to: Duration) -> (TargetCounts, TargetCounts) {
        let first = self.scrapes.partition_point(|s| s.end <= from);
        let mut canary = TargetCounts::default();
        let mut stable = TargetCounts::default();
        for s in self.scrapes.iter().skip(first).take_while(|s| s.end <= to) {
            canary.add(&s.canary);
            stable.add(&s.stable);
        }
        (canary, stable)
    }

    /// What one evaluation at `at` sees: values, requests and `minRequests` over the
    /// query window; `Measured.requests/errors/buckets` over `[counts_since, at]` when
    /// given (cumulative evidence), else over the window.
    pub fn observe_between(
        &mut self,
        spec: &RolloutSpec,
        counts_since: Option<Timestamp>,
        at: Timestamp,
    ) -> AnalysisInput {
        self.advance_to(at);
        let offset = self.offset(at);
        if let Some(kind) = self
            .outages
            .iter()
            .find(|o| o.covers(offset))
            .map(|o| o.kind)
        {
            return ScriptedMetrics::outage_input(spec, kind, at);
        }
        let window = spec.analysis.query_window();
        let window_start = Duration::from(offset.std().saturating_sub(window.std()));
        let windowed = self.counts(window_start, offset);
        let counted = match counts_since {
            Some(since) => self.counts(self.offset(since), offset),
            None => windowed,
        };
        let window_secs = window.as_secs_f64();
        let metrics =
            spec.analysis
                .metrics
                .iter()
                .map(|m| {
                    let canary = self.sample(m, offset, window_secs, &windowed.0, &counted.0, true);
                    let stable = m.compare.as_ref().map(|_| {
                        self.sample(m, offset, window_secs, &windowed.1, &counted.1, false)
                    });
                    MetricObservation {
                        name: m.name.clone(),
                        canary,
                        stable,
                    }
                })
                .collect();
        AnalysisInput {
            at,
            canary_requests: Sample::value(windowed.0.requests as f64),
            metrics,
        }
    }

    fn sample(
        &mut self,
        metric: &MetricSpec,
        offset: Duration,
        window_secs: f64,
        windowed: &TargetCounts,
        counted: &TargetCounts,
        canary: bool,
    ) -> Sample {
        let value = if let Some(behaviour) = self.scripted.get(&metric.name) {
            let segments = if canary {
                &behaviour.canary
            } else {
                &behaviour.stable
            };
            let Some(v) = ScriptedMetrics::value_at(segments, offset) else {
                return Sample::NoData;
            };
            if windowed.requests == 0 {
                return Sample::NotANumber;
            }
            let jitter = behaviour.jitter;
            if jitter > 0.0 {
                v * (1.0 + jitter * self.jitter_rng.random_range(-1.0..=1.0))
            } else {
                v
            }
        } else {
            let Some(measure) = metric
                .template
                .as_deref()
                .and_then(builtin::lookup)
                .map(|b| b.measure)
            else {
                // A custom query the scenario does not script: Prometheus would find no data.
                return Sample::NoData;
            };
            builtin_value(measure, windowed, window_secs)
        };
        if value.is_nan() {
            return Sample::NotANumber;
        }
        Sample::Value(Measured {
            value,
            requests: Some(counted.requests as f64),
            errors: Some(counted.errors as f64),
            series: Vec::new(),
            buckets: BUCKETS_MS
                .iter()
                .zip(counted.buckets)
                .map(|(le, count)| Bucket {
                    le: *le,
                    count: count as f64,
                })
                .collect(),
        })
    }
}

/// A built-in's value computed from counts as its PromQL computes it from the rates of
/// counters sampled at the scrape instants (so a backtest over the same counts in a real
/// Prometheus gives the same number, to the last bit where the arithmetic allows).
pub fn builtin_value(measure: Measure, counts: &TargetCounts, window_secs: f64) -> f64 {
    let rate = |count: u64| count as f64 / window_secs;
    let ok = counts.requests.saturating_sub(counts.errors);
    match measure {
        Measure::RequestRate => rate(ok) + rate(counts.errors),
        Measure::ErrorRate => rate(counts.errors) / (rate(ok) + rate(counts.errors)),
        Measure::Latency(q) => {
            let q: f64 = q.parse().unwrap_or(f64::NAN);
            let mut buckets: Vec<(f64, f64)> = BUCKETS_MS
                .iter()
                .zip(counts.buckets)
                .map(|(le, count)| (*le, rate(count)))
                .collect();
            buckets.push((f64::INFINITY, rate(counts.requests)));
            histogram_quantile(q, &buckets)
        }
    }
}

/// PromQL's `histogram_quantile` over cumulative `(le, count)` buckets sorted by `le`,
/// the last `+Inf`: linear interpolation inside the bucket that holds the rank; the
/// highest finite edge when the rank falls in `+Inf`; NaN without observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let Some(&(last_le, observations)) = buckets.last() else {
        return f64::NAN;
    };
    if buckets.len() < 2 || last_le != f64::INFINITY || observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets.partition_point(|(_, count)| *count < rank);
    if b >= buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    let (end, mut count) = buckets[b];
    if b == 0 && end <= 0.0 {
        return end;
    }
    let mut start = 0.0;
    if b > 0 {
        let (previous_le, previous_count) = buckets[b - 1];
        start = previous_le;
        count -= previous_count;
        rank -= previous_count;
    }
    start + (end - start) * (rank / count)
}

/// A [`NoisyWorld`] as a metric source.
pub struct NoisyMetrics {
    world: Mutex<NoisyWorld>,
}

impl NoisyMetrics {
    pub fn new(world: NoisyWorld) -> Self {
        NoisyMetrics {
            world: Mutex::new(world),
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, NoisyWorld> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn advance_to(&self, at: Timestamp) {
        self.world().advance_to(at);
    }

    /// Every scrape drawn so far (e.g. to write them as Prometheus history).
    pub fn scrapes(&self) -> Vec<DrawnScrape> {
        self.world().scrapes().to_vec()
    }
}

#[async_trait]
impl MetricSource for NoisyMetrics {
    async fn observe(
        &self,
        _policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        self.world().observe_between(spec, counts_since, at)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::router::ManagedRoute;
    use crate::sim::scenario::Scenario;

    const SPEC: &str = "revision: v2\nrouter: { istio: { virtualService: vs, stable: { host: s }, canary: { host: c } } }\nsteps: [{ weight: 20, hold: 10m }, 100]\nanalysis:\n  interval: 30s\n  window: 1m\n  metrics:\n    - { name: errors, template: istio-error-rate, compare: { maxIncrease: 0.01 }, judge: threshold }\n    - { name: p99, template: istio-latency-p99, max: 500 }\n    - { name: rate, template: istio-request-rate, min: 1 }\n    - { name: custom, query: 'sum(up)', max: 1 }\n";

    fn world(seed: u64) -> NoisyWorld {
        let scenario = Scenario::parse(
            "kind: Scenario\ntraffic:\n  requestsPerSecond: 100\n  stable: { errorRate: 0.01, latency: { medianMs: 100, sigma: 0.5 } }\n  changes: [{ from: 2m, errorRate: 0.2 }]\n",
            "t.yaml",
        )
        .unwrap();
        let router = Arc::new(MemoryRouter::new(ManagedRoute {
            canary_weight: 20,
            test_route: false,
        }));
        NoisyWorld::new(
            scenario.start,
            scenario.traffic.model().unwrap(),
            BTreeMap::new(),
            Vec::new(),
            router,
            seed,
        )
    }

    fn spec() -> RolloutSpec {
        serde_yaml_ng::from_str(SPEC).unwrap()
    }

    fn at(world: &NoisyWorld, secs: i64) -> Timestamp {
        world.start + chrono::Duration::seconds(secs)
    }

    #[test]
    fn histogram_quantile_interpolates_like_promql() {
        let buckets = [(10.0, 50.0), (20.0, 90.0), (f64::INFINITY, 100.0)];
        assert_eq!(histogram_quantile(0.5, &buckets), 10.0);
        assert_eq!(histogram_quantile(0.7, &buckets), 15.0);
        assert_eq!(histogram_quantile(0.25, &buckets), 5.0);
        // The rank in +Inf: the highest finite edge.
        assert_eq!(histogram_quantile(0.99, &buckets), 20.0);
        assert!(histogram_quantile(0.5, &[(10.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        assert!(histogram_quantile(0.5, &[(10.0, 3.0)]).is_nan());
        assert_eq!(histogram_quantile(1.5, &buckets), f64::INFINITY);
    }

    #[test]
    fn every_answer_comes_from_the_same_draws_over_the_same_window() {
        let mut w = world(1);
        let spec = spec();
        let now = at(&w, 150);
        let input = w.observe_between(&spec, None, now);
        // The window (1m) holds the four scrapes ending at 1m45s, 2m, 2m15s, 2m30s.
        let window: Vec<&DrawnScrape> = w
            .scrapes()
            .iter()
            .filter(|s| s.end > Duration::from_secs(90) && s.end <= Duration::from_secs(150))
            .collect();
        assert_eq!(window.len(), 4);
        let mut canary = TargetCounts::default();
        for s in &window {
            canary.add(&s.canary);
        }
        assert_eq!(input.canary_requests, Sample::value(canary.requests as f64));
        let errors = input.metrics[0].canary.measured().unwrap();
        assert_eq!(errors.requests, Some(canary.requests as f64));
        assert_eq!(errors.errors, Some(canary.errors as f64));
        assert_eq!(
            errors.value,
            builtin_value(Measure::ErrorRate, &canary, 60.0)
        );
        assert!(input.metrics[0].stable.is_some());
        let p99 = input.metrics[1].canary.measured().unwrap();
        assert_eq!(
            p99.value,
            builtin_value(Measure::Latency("0.99"), &canary, 60.0)
        );
        assert_eq!(p99.buckets.len(), BUCKETS_MS.len());
        let rate = input.metrics[2].canary.measured().unwrap();
        assert_eq!(rate.value, canary.requests as f64 / 60.0);
        assert_eq!(input.metrics[3].canary, Sample::NoData);

        // Counts since an instant: the scrapes after it, the value still over the window.
        let since = w.observe_between(&spec, Some(at(&w, 30)), now);
        let mut counted = TargetCounts::default();
        for s in w
            .scrapes()
            .iter()
            .filter(|s| s.end > Duration::from_secs(30))
        {
            counted.add(&s.canary);
        }
        let errors_since = since.metrics[0].canary.measured().unwrap();
        assert_eq!(errors_since.requests, Some(counted.requests as f64));
        assert_eq!(errors_since.value, errors.value);
        assert_eq!(since.canary_requests, input.canary_requests);
    }

    #[test]
    fn draws_depend_on_the_seed_and_the_weight_not_on_the_queries() {
        let spec = spec();
        let mut queried = world(4);
        for secs in [30, 60, 75, 300] {
            let t = at(&queried, secs);
            queried.observe_between(&spec, None, t);
        }
        let mut quiet = world(4);
        let t = at(&quiet, 300);
        quiet.advance_to(t);
        assert_eq!(queried.scrapes(), quiet.scrapes());
        let mut other = world(5);
        other.advance_to(t);
        assert_ne!(other.scrapes(), quiet.scrapes());
        // 20 % of 100 requests/s over 15 s: about 300 canary requests a scrape; the
        // change at 2m raises the canary's errors, not stable's.
        let (before, after): (Vec<_>, Vec<_>) = quiet
            .scrapes()
            .iter()
            .partition(|s| s.end <= Duration::from_secs(120));
        let share = |list: &[&DrawnScrape], canary: bool| {
            let (mut e, mut r) = (0, 0);
            for s in list {
                let c = if canary { s.canary } else { s.stable };
                e += c.errors;
                r += c.requests;
            }
            e as f64 / r as f64
        };
        assert!(share(&before, true) < 0.05);
        assert!(share(&after, true) > 0.1);
        assert!(share(&after, false) < 0.05);
        assert!(quiet.scrapes().iter().all(|s| s.canary_weight == 20));
    }
}
