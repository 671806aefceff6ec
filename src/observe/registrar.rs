//! Where the daemon's metrics are registered: the histogram buckets, and the registry
//! that records every exported name as it registers a metric.

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};

/// Latency buckets in seconds, from 1 ms to 30 s: a Prometheus query or a reconcile
/// that takes longer is already past every timeout shiftgate uses.
pub(super) fn latency_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Rollout durations in seconds, from a minute to three days: step pauses make rollouts
/// last minutes to days.
pub(super) fn rollout_duration_buckets() -> Histogram {
    Histogram::new([
        60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 259200.0,
    ])
}

/// The registry plus the names it exports. prometheus-client omits families that have
/// no series yet from its output, so the names are recorded at registration: the one
/// place a metric comes into being. The registry has no prefix (the standard
/// `process_*` metrics have none); shiftgate's own names get theirs here.
pub(super) struct Registrar {
    pub(super) registry: Registry,
    pub(super) names: Vec<String>,
}

impl Registrar {
    pub(super) fn new() -> Self {
        Registrar {
            registry: Registry::default(),
            names: Vec::new(),
        }
    }

    pub(super) fn register<M: Metric>(&mut self, name: &str, help: &str, metric: M) {
        self.record(name, None, metric.metric_type());
        self.registry
            .register(format!("{PREFIX}_{name}"), help, metric);
    }

    pub(super) fn register_seconds<M: Metric>(&mut self, name: &str, help: &str, metric: M) {
        self.record(name, Some(Unit::Seconds), metric.metric_type());
        self.registry
            .register_with_unit(format!("{PREFIX}_{name}"), help, Unit::Seconds, metric);
    }

    /// Records the name users query: the type is the metric's own (`metric_type`), so
    /// the per-policy families, whose type is a value, are named like the others.
    fn record(&mut self, name: &str, unit: Option<Unit>, metric_type: MetricType) {
        let mut full = format!("{PREFIX}_{name}");
        if let Some(unit) = unit {
            full.push('_');
            full.push_str(unit.as_str());
        }
        if matches!(metric_type, MetricType::Counter) {
            full.push_str("_total");
        }
        self.names.push(full);
    }
}

pub(super) const PREFIX: &str = "shiftgate";
