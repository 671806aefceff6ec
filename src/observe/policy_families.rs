//! The per-policy metric families as the registry sees them: each is registered by
//! name and help like any other metric, and writes its series from the records in
//! [`PolicySeries`] when scraped. The labels and values are those the former
//! prometheus-client families wrote (label structs with these fields in this order,
//! `Gauge<i64>`, `Gauge<f64>` and `Counter<u64>` values), through the same encoder calls.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::labels::{ALL_PHASES, ALL_RESULTS, ALL_VERDICTS};
use super::policy_series::{MetricSeries, PolicyRecord, PolicySeries, Slot, BOUNDS, TARGETS};

/// Which per-policy family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PolicyFamilyKind {
    /// `canary_weight_ratio{namespace,name}`
    CanaryWeight,
    /// `rollout_step{namespace,name}`
    Step,
    /// `rollout_phase{namespace,name,phase}`: one series per phase.
    Phase,
    /// `analysis_metric_value{namespace,name,metric,target}`
    MetricValue,
    /// `analysis_metric_threshold{namespace,name,metric,bound}`
    MetricThreshold,
    /// `analysis_evidence_ratio{namespace,name,metric}`
    Evidence,
    /// `policy_rollouts_total{namespace,name,result}`
    Rollouts,
    /// `policy_analysis_evaluations_total{namespace,name,verdict}`
    Evaluations,
}

/// How many policies a scrape writes per taking of the store's lock.
const POLICIES_PER_LOCK: usize = 256;

/// One per-policy family, reading the shared records.
pub(super) struct PolicyFamily {
    series: PolicySeries,
    kind: PolicyFamilyKind,
}

impl std::fmt::Debug for PolicyFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFamily")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl PolicyFamily {
    pub(super) fn new(series: &PolicySeries, kind: PolicyFamilyKind) -> Self {
        PolicyFamily {
            series: series.clone(),
            kind,
        }
    }

    /// Whether the record has a series in this family.
    fn has_series(&self, record: &PolicyRecord) -> bool {
        let any_metric = |has: &dyn Fn(&MetricSeries) -> bool| record.metrics.iter().any(has);
        match self.kind {
            PolicyFamilyKind::CanaryWeight | PolicyFamilyKind::Step | PolicyFamilyKind::Phase => {
                record.rollout.is_some()
            }
            PolicyFamilyKind::Rollouts | PolicyFamilyKind::Evaluations => record.results.is_some(),
            PolicyFamilyKind::MetricValue => {
                any_metric(&|m| TARGETS.iter().any(|t| m.get(Slot::Value(*t)).is_some()))
            }
            PolicyFamilyKind::MetricThreshold => {
                any_metric(&|m| BOUNDS.iter().any(|b| m.get(Slot::Threshold(*b)).is_some()))
            }
            PolicyFamilyKind::Evidence => any_metric(&|m| m.get(Slot::Evidence).is_some()),
        }
    }

    /// Writes the record's series of this family.
    fn encode_record(
        &self,
        encoder: &mut MetricEncoder,
        namespace: &str,
        name: &str,
        record: &PolicyRecord,
    ) -> Result<(), std::fmt::Error> {
        let policy = [("namespace", namespace), ("name", name)];
        match self.kind {
            PolicyFamilyKind::CanaryWeight => {
                if let Some(rollout) = &record.rollout {
                    let ratio = f64::from(rollout.canary_weight) / 100.0;
                    encoder.encode_family(&policy)?.encode_gauge(&ratio)?;
                }
            }
            PolicyFamilyKind::Step => {
                if let Some(rollout) = &record.rollout {
                    let step = i64::from(rollout.step);
                    encoder.encode_family(&policy)?.encode_gauge(&step)?;
                }
            }
            PolicyFamilyKind::Phase => {
                if let Some(rollout) = &record.rollout {
                    for candidate in ALL_PHASES {
                        let labels = with(policy, ("phase", candidate.as_str()));
                        let current = i64::from(candidate == rollout.phase);
                        encoder.encode_family(&labels)?.encode_gauge(&current)?;
                    }
                }
            }
            PolicyFamilyKind::Rollouts => {
                if let Some(counts) = &record.results {
                    for (result, count) in ALL_RESULTS.iter().zip(counts.rollouts) {
                        let labels = with(policy, ("result", result.as_str()));
                        encode_counter(encoder, &labels, count)?;
                    }
                }
            }
            PolicyFamilyKind::Evaluations => {
                if let Some(counts) = &record.results {
                    for (verdict, count) in ALL_VERDICTS.iter().zip(counts.evaluations) {
                        let labels = with(policy, ("verdict", verdict.as_str()));
                        encode_counter(encoder, &labels, count)?;
                    }
                }
            }
            PolicyFamilyKind::MetricValue => {
                for metric in &record.metrics {
                    for target in TARGETS {
                        if let Some(value) = metric.get(Slot::Value(target)) {
                            let labels = with_metric(policy, metric, ("target", target.as_str()));
                            encoder.encode_family(&labels)?.encode_gauge(&value)?;
                        }
                    }
                }
            }
            PolicyFamilyKind::MetricThreshold => {
                for metric in &record.metrics {
                    for bound in BOUNDS {
                        if let Some(value) = metric.get(Slot::Threshold(bound)) {
                            let labels = with_metric(policy, metric, ("bound", bound.as_str()));
                            encoder.encode_family(&labels)?.encode_gauge(&value)?;
                        }
                    }
                }
            }
            PolicyFamilyKind::Evidence => {
                for metric in &record.metrics {
                    if let Some(share) = metric.get(Slot::Evidence) {
                        let labels = with(policy, ("metric", &*metric.name));
                        encoder.encode_family(&labels)?.encode_gauge(&share)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The policy's labels followed by one more.
fn with<'a>(policy: [(&'a str, &'a str); 2], last: (&'a str, &'a str)) -> [(&'a str, &'a str); 3] {
    [policy[0], policy[1], last]
}

/// The policy's labels, the metric's name, then one more.
fn with_metric<'a>(
    policy: [(&'a str, &'a str); 2],
    metric: &'a MetricSeries,
    last: (&'a str, &'a str),
) -> [(&'a str, &'a str); 4] {
    [policy[0], policy[1], ("metric", &*metric.name), last]
}

/// A counter series, written as `Counter::encode` writes one (no exemplar).
fn encode_counter(
    encoder: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    count: u64,
) -> Result<(), std::fmt::Error> {
    encoder
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&count, None)
}

impl EncodeMetric for PolicyFamily {
    /// Writes the policies in chunks, taking the store's lock once per chunk: every
    /// reconcile's metric update takes that lock, and a whole family at 10,000 policies
    /// is 100,000 lines; a scrape would hold it for milliseconds.
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut after: Option<(String, String)> = None;
        loop {
            let store = self.series.lock();
            let mut last = None;
            for (written, (namespace, name, record)) in store.after(after.as_ref()).enumerate() {
                self.encode_record(&mut encoder, namespace, name, record)?;
                if written + 1 == POLICIES_PER_LOCK {
                    last = Some((namespace.clone(), name.clone()));
                    break;
                }
            }
            match last {
                Some(last) => after = Some(last),
                None => return Ok(()),
            }
        }
    }

    fn metric_type(&self) -> MetricType {
        match self.kind {
            PolicyFamilyKind::Rollouts | PolicyFamilyKind::Evaluations => MetricType::Counter,
            _ => MetricType::Gauge,
        }
    }

    /// An empty family writes nothing, not even its `# HELP`/`# TYPE` (as
    /// prometheus-client's `Family` without series).
    fn is_empty(&self) -> bool {
        let store = self.series.lock();
        !store
            .namespaces
            .values()
            .flat_map(|names| names.values())
            .any(|record| self.has_series(record))
    }
}
