//! A scripted metric source for simulation: each metric's canary and stable values over
//! time, traffic split by the live weight, seeded noise, and outages. Deterministic: the
//! same script, seed and call sequence give the same samples.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{MetricSource, PolicyRef};
use crate::analysis::comparison::{count_kind, CountKind};
use crate::analysis::sample::{AnalysisInput, Measured, MetricObservation, Sample};
use crate::policy::{Duration, RolloutSpec, Timestamp};
use crate::router::memory::MemoryRouter;

/// A value from an offset on (until the next segment).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Segment {
    /// Offset from the start of the simulation.
    #[serde(default)]
    pub from: Duration,
    pub value: f64,
}

/// How one metric behaves, per target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricBehaviour {
    #[serde(default)]
    pub canary: Vec<Segment>,
    #[serde(default)]
    pub stable: Vec<Segment>,
    /// Relative noise: each value is multiplied by 1 ± up to this (0.1 = ±10%).
    #[serde(default)]
    pub jitter: f64,
}

/// Total requests per second, split between the targets by the live canary weight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Traffic {
    pub requests_per_second: f64,
    /// Relative noise on request counts.
    #[serde(default)]
    pub jitter: f64,
    /// Share (0..1) of the requests that match the test route: they reach the canary
    /// whenever the test route is installed, whatever the weight.
    #[serde(default)]
    pub test_route_share: f64,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            requests_per_second: 50.0,
            jitter: 0.0,
            test_route_share: 0.0,
        }
    }
}

/// What the metric source does during an outage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OutageKind {
    Unreachable,
    Timeout,
    #[serde(rename = "nan")]
    NotANumber,
    NoData,
    Invalid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outage {
    pub from: Duration,
    /// End of the outage; open-ended when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Duration>,
    pub kind: OutageKind,
}

impl Outage {
    pub fn covers(&self, offset: Duration) -> bool {
        offset >= self.from && self.until.is_none_or(|u| offset < u)
    }
}

/// The whole metric script.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MetricScript {
    pub start: Timestamp,
    pub traffic: Traffic,
    pub metrics: BTreeMap<String, MetricBehaviour>,
    pub outages: Vec<Outage>,
}

impl MetricScript {
    pub fn offset(&self, at: Timestamp) -> Duration {
        Duration::from((at - self.start).to_std().unwrap_or_default())
    }

    pub fn outage_at(&self, at: Timestamp) -> Option<OutageKind> {
        let offset = self.offset(at);
        self.outages
            .iter()
            .find(|o| o.covers(offset))
            .map(|o| o.kind)
    }
}

/// Serves a `MetricScript`, reading the live weight from the in-memory router.
pub struct ScriptedMetrics {
    script: MetricScript,
    router: Arc<MemoryRouter>,
    rng: Mutex<StdRng>,
}

impl ScriptedMetrics {
    pub fn new(script: MetricScript, router: Arc<MemoryRouter>, seed: u64) -> Self {
        ScriptedMetrics {
            script,
            router,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    fn noise(&self, jitter: f64) -> f64 {
        if jitter <= 0.0 {
            return 1.0;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        1.0 + jitter * rng.random_range(-1.0..=1.0)
    }

    /// What every query of an outage of this kind answers.
    pub fn outage_sample(kind: OutageKind) -> Sample {
        match kind {
            OutageKind::Unreachable => Sample::Unreachable {
                message: "connection refused (scripted outage)".to_owned(),
            },
            OutageKind::Timeout => Sample::TimedOut,
            OutageKind::NotANumber => Sample::NotANumber,
            OutageKind::NoData => Sample::NoData,
            OutageKind::Invalid => Sample::Invalid {
                message: "parse error (scripted)".to_owned(),
            },
        }
    }

    /// What a whole evaluation answers during an outage of this kind: every query,
    /// `minRequests`' count included, gets the outage's sample.
    pub fn outage_input(spec: &RolloutSpec, kind: OutageKind, at: Timestamp) -> AnalysisInput {
        let sample = Self::outage_sample(kind);
        AnalysisInput {
            at,
            canary_requests: sample.clone(),
            metrics: spec
                .analysis
                .metrics
                .iter()
                .map(|m| MetricObservation {
                    name: m.name.clone(),
                    canary: sample.clone(),
                    stable: m.compare.as_ref().map(|_| sample.clone()),
                })
                .collect(),
        }
    }

    /// The scripted value at `offset`: the latest segment that has begun.
    pub fn value_at(segments: &[Segment], offset: Duration) -> Option<f64> {
        segments
            .iter()
            .filter(|s| s.from <= offset)
            .max_by_key(|s| s.from)
            .map(|s| s.value)
    }
}

#[async_trait]
impl MetricSource for ScriptedMetrics {
    async fn observe(
        &self,
        _policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        if let Some(kind) = self.script.outage_at(at) {
            return Self::outage_input(spec, kind, at);
        }
        let offset = self.script.offset(at);
        let route = self.router.route();
        let weight = f64::from(route.canary_weight) / 100.0;
        // Test-route requests go to the canary; the weight splits the rest.
        let share = match route.test_route {
            true => self.script.traffic.test_route_share.clamp(0.0, 1.0),
            false => 0.0,
        };
        let weight = share + (1.0 - share) * weight;
        // The window every query looks back over, as the Prometheus source's queries do.
        let window = spec.analysis.query_window().as_secs_f64();
        let rps = self.script.traffic.requests_per_second;
        let canary_requests =
            (rps * weight * window * self.noise(self.script.traffic.jitter)).round();
        let stable_requests =
            (rps * (1.0 - weight) * window * self.noise(self.script.traffic.jitter)).round();
        // The sequential judges' range: requests at the live weight, and the errors (or
        // the histogram) the scripted value implies.
        let counted = counts_since.map(|since| {
            let secs = at.signed_duration_since(since).num_milliseconds().max(0) as f64 / 1000.0;
            let jitter = self.script.traffic.jitter;
            (
                (rps * weight * secs * self.noise(jitter)).round(),
                (rps * (1.0 - weight) * secs * self.noise(jitter)).round(),
            )
        });
        let metrics = spec
            .analysis
            .metrics
            .iter()
            .map(|m| {
                let behaviour = self.script.metrics.get(&m.name);
                let kind = count_kind(m).filter(|_| m.sequential().is_some());
                let sample =
                    |segments: Option<&Vec<Segment>>, requests: f64, range: Option<f64>| {
                        let value = segments.and_then(|s| Self::value_at(s, offset));
                        match (value, range.filter(|_| kind.is_some())) {
                            (None, _) => Sample::NoData,
                            (Some(v), Some(counted)) => Sample::Value(Measured {
                                value: if requests > 0.0 { v } else { f64::NAN },
                                requests: Some(counted),
                                errors: (kind == Some(CountKind::Errors))
                                    .then(|| (v.clamp(0.0, 1.0) * counted).round()),
                                buckets: match kind {
                                    Some(CountKind::Latency) => {
                                        scripted_histogram(v, quantile_of(m), counted)
                                    }
                                    _ => Vec::new(),
                                },
                                ..Measured::default()
                            }),
                            // 0/0: a rate over no requests.
                            (Some(_), None) if requests <= 0.0 => Sample::NotANumber,
                            (Some(v), None) => Sample::Value(Measured {
                                value: v * self.noise(behaviour.map_or(0.0, |b| b.jitter)),
                                requests: Some(requests),
                                ..Measured::default()
                            }),
                        }
                    };
                MetricObservation {
                    name: m.name.clone(),
                    canary: sample(
                        behaviour.map(|b| &b.canary),
                        canary_requests,
                        counted.map(|c| c.0),
                    ),
                    stable: m.compare.as_ref().map(|_| {
                        sample(
                            behaviour.map(|b| &b.stable),
                            stable_requests,
                            counted.map(|c| c.1),
                        )
                    }),
                }
            })
            .collect();
        AnalysisInput {
            at,
            canary_requests: Sample::value(canary_requests),
            metrics,
        }
    }
}

/// Histogram edges of the scripted latency (Prometheus-style, milliseconds).
const SCRIPTED_EDGES_MS: [f64; 11] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Spread (σ of the log) of the scripted latency distribution.
const SCRIPTED_SIGMA: f64 = 0.5;

/// The quantile a latency metric's value stands for (`…-latency-p90` is 0.9); 0.99 for
/// a raw query.
fn quantile_of(metric: &crate::policy::MetricSpec) -> f64 {
    let name = metric.template.as_deref().unwrap_or_default();
    match name.rsplit_once("-p").map(|(_, q)| q) {
        Some("50") => 0.5,
        Some("90") => 0.9,
        _ => 0.99,
    }
}

/// The expected cumulative bucket counts of `requests` lognormal latencies (σ 0.5)
/// whose `quantile` is `value` ms: what a histogram would count if the scripted value
/// were read from it.
fn scripted_histogram(
    value: f64,
    quantile: f64,
    requests: f64,
) -> Vec<crate::analysis::sample::Bucket> {
    use statrs::distribution::{ContinuousCDF, Normal};
    let Ok(normal) = Normal::new(0.0, 1.0) else {
        return Vec::new();
    };
    if !(value.is_finite() && value > 0.0) {
        return Vec::new();
    }
    let median = value / (SCRIPTED_SIGMA * normal.inverse_cdf(quantile)).exp();
    SCRIPTED_EDGES_MS
        .iter()
        .map(|le| crate::analysis::sample::Bucket {
            le: *le,
            count: (requests * normal.cdf((le / median).ln() / SCRIPTED_SIGMA)).round(),
        })
        .collect()
}
