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
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            requests_per_second: 50.0,
            jitter: 0.0,
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

    fn value_at(segments: &[Segment], offset: Duration) -> Option<f64> {
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
    ) -> AnalysisInput {
        if let Some(kind) = self.script.outage_at(at) {
            let sample = Self::outage_sample(kind);
            return AnalysisInput {
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
            };
        }
        let offset = self.script.offset(at);
        let weight = f64::from(self.router.route().canary_weight) / 100.0;
        // The window every query looks back over, as the Prometheus source's queries do.
        let window = spec.analysis.query_window().as_secs_f64();
        let rps = self.script.traffic.requests_per_second;
        let canary_requests =
            (rps * weight * window * self.noise(self.script.traffic.jitter)).round();
        let stable_requests =
            (rps * (1.0 - weight) * window * self.noise(self.script.traffic.jitter)).round();
        let metrics = spec
            .analysis
            .metrics
            .iter()
            .map(|m| {
                let behaviour = self.script.metrics.get(&m.name);
                let sample = |segments: Option<&Vec<Segment>>, requests: f64| {
                    match segments.and_then(|s| Self::value_at(s, offset)) {
                        None => Sample::NoData,
                        // 0/0: a rate over no requests.
                        Some(_) if requests <= 0.0 => Sample::NotANumber,
                        Some(v) => Sample::Value(Measured {
                            value: v * self.noise(behaviour.map_or(0.0, |b| b.jitter)),
                            requests: Some(requests),
                            ..Measured::default()
                        }),
                    }
                };
                MetricObservation {
                    name: m.name.clone(),
                    canary: sample(behaviour.map(|b| &b.canary), canary_requests),
                    stable: m
                        .compare
                        .as_ref()
                        .map(|_| sample(behaviour.map(|b| &b.stable), stable_requests)),
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
