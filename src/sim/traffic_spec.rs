//! The scenario's `traffic:` section. Without `stable`, it is the old scripted load
//! (a request rate split by weight, optional jitter) beside scripted metric values.
//! With `stable`, it is a traffic model with real sampling noise (`sim::traffic`):
//! Poisson requests, binomial errors and a lognormal latency histogram per target,
//! drawn scrape by scrape from the seed, from which every query is answered.
//! Documented in docs/simulation.md.

use serde::{Deserialize, Serialize};

use crate::metrics::scripted::Traffic as ScriptedTraffic;
use crate::policy::diagnostic::{index, Issue};
use crate::policy::Duration;
use crate::sim::traffic::{Behaviour, SlowTail};

/// Prometheus's usual scrape interval, and the benchmark's.
const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);
/// More scrapes than this in one simulation would hold too much memory.
pub const MAX_SCRAPES: u64 = 200_000;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficSpec {
    /// Requests per second to the service, split between the targets by the live weight.
    pub requests_per_second: f64,
    /// Relative noise on request counts (scripted values only; the model has Poisson noise).
    #[serde(default)]
    pub jitter: f64,
    /// Share of the requests matching the test route (scripted values only).
    #[serde(default)]
    pub test_route_share: f64,
    /// How often Prometheus would scrape: the model draws one set of counts per scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<Duration>,
    /// How stable answers; writing it turns the traffic model on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<TargetBehaviour>,
    /// How the canary answers at first; default: like stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<TargetBehaviour>,
    /// Changes of the canary's behaviour from an offset on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<CanaryChange>,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        TrafficSpec {
            requests_per_second: ScriptedTraffic::default().requests_per_second,
            jitter: 0.0,
            test_route_share: 0.0,
            scrape_interval: None,
            stable: None,
            canary: None,
            changes: Vec::new(),
        }
    }
}

/// The old scripted load (no traffic model).
impl From<ScriptedTraffic> for TrafficSpec {
    fn from(traffic: ScriptedTraffic) -> Self {
        TrafficSpec {
            requests_per_second: traffic.requests_per_second,
            jitter: traffic.jitter,
            test_route_share: traffic.test_route_share,
            ..TrafficSpec::default()
        }
    }
}

/// One target's error probability and latency distribution.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetBehaviour {
    /// Probability that a request fails (counted as a 5xx).
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default)]
    pub latency: Latency,
}

/// Lognormal latency: the median and σ of the logarithm, optionally a slow tail.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Latency {
    pub median_ms: f64,
    pub sigma: f64,
    /// A share of requests that is `factor` times slower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_tail: Option<Tail>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            median_ms: 100.0,
            sigma: 0.5,
            slow_tail: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tail {
    pub fraction: f64,
    pub factor: f64,
}

/// From `from` on, the canary's error rate and/or latency change; what is not written
/// stays as it was.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryChange {
    pub from: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

impl TargetBehaviour {
    pub fn to_model(self) -> Behaviour {
        Behaviour {
            error_rate: self.error_rate,
            median_ms: self.latency.median_ms,
            sigma: self.latency.sigma,
            slow_tail: self.latency.slow_tail.map(|t| SlowTail {
                fraction: t.fraction,
                factor: t.factor,
            }),
        }
    }
}

/// The traffic model of a scenario, ready to draw from.
#[derive(Clone, Debug, PartialEq)]
pub struct NoisyTraffic {
    pub requests_per_second: f64,
    pub scrape_interval: Duration,
    pub stable: Behaviour,
    /// The canary's behaviour from each offset on, in offset order (the first from 0).
    pub canary: Vec<(Duration, Behaviour)>,
}

impl NoisyTraffic {
    /// The canary's behaviour during the scrape that starts at `offset`.
    pub fn canary_at(&self, offset: Duration) -> Behaviour {
        self.canary
            .iter()
            .rev()
            .find(|(from, _)| *from <= offset)
            .or(self.canary.first())
            .map_or(self.stable, |(_, b)| *b)
    }
}

impl TrafficSpec {
    /// The old scripted load, for scenarios without a traffic model.
    pub fn scripted(&self) -> ScriptedTraffic {
        ScriptedTraffic {
            requests_per_second: self.requests_per_second,
            jitter: self.jitter,
            test_route_share: self.test_route_share,
        }
    }

    /// The traffic model, when `stable` is written (and the section is valid).
    pub fn model(&self) -> Option<NoisyTraffic> {
        let stable = self.stable?;
        let mut current = self.canary.unwrap_or(stable);
        let mut canary = vec![(Duration::ZERO, current.to_model())];
        let mut changes = self.changes.clone();
        changes.sort_by_key(|c| c.from);
        for change in changes {
            current.error_rate = change.error_rate.unwrap_or(current.error_rate);
            current.latency = change.latency.unwrap_or(current.latency);
            canary.push((change.from, current.to_model()));
        }
        Some(NoisyTraffic {
            requests_per_second: self.requests_per_second,
            scrape_interval: self.scrape_interval.unwrap_or(DEFAULT_SCRAPE_INTERVAL),
            stable: stable.to_model(),
            canary,
        })
    }

    /// Every problem of the section, at its field path under `traffic`.
    pub fn issues(&self, max_duration: Duration) -> Vec<Issue> {
        let mut issues = Vec::new();
        let rps = self.requests_per_second;
        if !(rps.is_finite() && (0.0..=1e7).contains(&rps)) {
            issues.push(
                Issue::error(
                    "traffic.requestsPerSecond",
                    format!("{rps} is not a request rate"),
                )
                .with_hint("write a number from 0 to 10000000"),
            );
        }
        if !(self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter)) {
            issues.push(
                Issue::error(
                    "traffic.jitter",
                    format!("{} is outside 0..=1", self.jitter),
                )
                .with_hint("0.1 means ±10 %"),
            );
        }
        let modelled = self.stable.is_some();
        if modelled && self.jitter != 0.0 {
            issues.push(
                Issue::error(
                    "traffic.jitter",
                    "jitter has no effect with a traffic model",
                )
                .with_hint("the model's counts are Poisson draws already; remove `jitter`"),
            );
        }
        if !modelled {
            let orphan = [
                ("traffic.canary", self.canary.is_some()),
                ("traffic.changes", !self.changes.is_empty()),
                ("traffic.scrapeInterval", self.scrape_interval.is_some()),
            ];
            for (path, written) in orphan {
                if written {
                    issues.push(
                        Issue::error(path, "belongs to the traffic model, which needs `stable`")
                            .with_hint("write `traffic.stable: { errorRate: …, latency: … }`"),
                    );
                }
            }
        }
        if let Some(interval) = self.scrape_interval {
            if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
                issues.push(
                    Issue::error(
                        "traffic.scrapeInterval",
                        format!("{interval} is outside 1s..=1h"),
                    )
                    .with_hint("Prometheus usually scrapes every 15s or 30s"),
                );
            } else if max_duration.std().as_secs() / interval.std().as_secs().max(1) > MAX_SCRAPES {
                issues.push(
                    Issue::error(
                        "traffic.scrapeInterval",
                        format!("{interval} over maxDuration {max_duration} is more than {MAX_SCRAPES} scrapes"),
                    )
                    .with_hint("scrape less often or shorten maxDuration"),
                );
            }
        } else if modelled
            && max_duration.std().as_secs() / DEFAULT_SCRAPE_INTERVAL.std().as_secs() > MAX_SCRAPES
        {
            issues.push(
                Issue::error(
                    "maxDuration",
                    format!(
                        "{max_duration} at one scrape every 15s is more than {MAX_SCRAPES} scrapes"
                    ),
                )
                .with_hint("set a longer `traffic.scrapeInterval` or a shorter maxDuration"),
            );
        }
        if let Some(stable) = &self.stable {
            behaviour_issues("traffic.stable", stable, &mut issues);
        }
        if let Some(canary) = &self.canary {
            behaviour_issues("traffic.canary", canary, &mut issues);
        }
        for (i, change) in self.changes.iter().enumerate() {
            let path = index("traffic.changes", i);
            if let Some(rate) = change.error_rate {
                error_rate_issues(&format!("{path}.errorRate"), rate, &mut issues);
            }
            if let Some(latency) = &change.latency {
                latency_issues(&format!("{path}.latency"), latency, &mut issues);
            }
            if change.error_rate.is_none() && change.latency.is_none() {
                issues.push(
                    Issue::error(path, "changes nothing")
                        .with_hint("write `errorRate` and/or `latency`"),
                );
            }
        }
        issues
    }
}

fn behaviour_issues(path: &str, behaviour: &TargetBehaviour, issues: &mut Vec<Issue>) {
    error_rate_issues(&format!("{path}.errorRate"), behaviour.error_rate, issues);
    latency_issues(&format!("{path}.latency"), &behaviour.latency, issues);
}

fn error_rate_issues(path: &str, rate: f64, issues: &mut Vec<Issue>) {
    if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
        issues.push(
            Issue::error(path, format!("{rate} is not a probability"))
                .with_hint("write a share of requests from 0 to 1, e.g. 0.005 for 0.5 %"),
        );
    }
}

fn latency_issues(path: &str, latency: &Latency, issues: &mut Vec<Issue>) {
    if !(latency.median_ms.is_finite() && latency.median_ms > 0.0 && latency.median_ms <= 1e6) {
        issues.push(
            Issue::error(
                format!("{path}.medianMs"),
                format!("{} is not a median latency", latency.median_ms),
            )
            .with_hint("write milliseconds above 0, e.g. 100"),
        );
    }
    if !(latency.sigma.is_finite() && latency.sigma > 0.0 && latency.sigma <= 5.0) {
        issues.push(
            Issue::error(
                format!("{path}.sigma"),
                format!("{} is outside (0, 5]", latency.sigma),
            )
            .with_hint("σ of the log of the latency; 0.5 is typical"),
        );
    }
    if let Some(tail) = &latency.slow_tail {
        if !(tail.fraction.is_finite() && (0.0..=1.0).contains(&tail.fraction)) {
            issues.push(
                Issue::error(
                    format!("{path}.slowTail.fraction"),
                    format!("{} is not a share of requests", tail.fraction),
                )
                .with_hint("write a number from 0 to 1, e.g. 0.03"),
            );
        }
        if !(tail.factor.is_finite() && (1.0..=1000.0).contains(&tail.factor)) {
            issues.push(
                Issue::error(
                    format!("{path}.slowTail.factor"),
                    format!("{} is outside 1..=1000", tail.factor),
                )
                .with_hint("how many times slower the tail is, e.g. 3"),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> TrafficSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn changes_keep_what_they_do_not_write_and_apply_in_offset_order() {
        let model = spec(
            "requestsPerSecond: 10\nstable: { errorRate: 0.01 }\nchanges:\n  - { from: 5m, latency: { medianMs: 300, sigma: 0.4 } }\n  - { from: 2m, errorRate: 0.2 }\n",
        )
        .model()
        .unwrap();
        assert_eq!(model.scrape_interval, Duration::from_secs(15));
        let at = |secs| model.canary_at(Duration::from_secs(secs));
        assert_eq!(at(0), model.stable);
        assert_eq!((at(120).error_rate, at(120).median_ms), (0.2, 100.0));
        assert_eq!((at(300).error_rate, at(300).median_ms), (0.2, 300.0));
        assert!(spec("requestsPerSecond: 10\n").model().is_none());
    }

    #[test]
    fn every_problem_names_its_field() {
        let paths = |yaml: &str| -> Vec<String> {
            spec(yaml)
                .issues(Duration::from_secs(3600))
                .into_iter()
                .map(|i| i.path)
                .collect()
        };
        assert_eq!(
            paths("requestsPerSecond: -1\nstable: { errorRate: 2, latency: { medianMs: 0, sigma: 9, slowTail: { fraction: 3, factor: 0.5 } } }\n"),
            [
                "traffic.requestsPerSecond",
                "traffic.stable.errorRate",
                "traffic.stable.latency.medianMs",
                "traffic.stable.latency.sigma",
                "traffic.stable.latency.slowTail.fraction",
                "traffic.stable.latency.slowTail.factor",
            ]
        );
        assert_eq!(
            paths("requestsPerSecond: 1\njitter: 0.1\ncanary: { errorRate: 0 }\nscrapeInterval: 15s\n"),
            ["traffic.canary", "traffic.scrapeInterval"]
        );
        assert_eq!(
            paths("requestsPerSecond: 1\njitter: 0.1\nstable: {}\nscrapeInterval: 1s\nchanges: [{ from: 1m }]\n"),
            ["traffic.jitter", "traffic.changes[0]"]
        );
        assert_eq!(
            spec("requestsPerSecond: 1\nstable: {}\nscrapeInterval: 1s\n")
                .issues(Duration::from_secs(30 * 86_400))[0]
                .path,
            "traffic.scrapeInterval"
        );
    }
}
