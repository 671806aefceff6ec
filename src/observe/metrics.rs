//! The daemon's Prometheus registry (`prometheus-client`).
//!
//! Names follow `shiftgate_<name>[_<unit>][_total]` in base units; ratios go from zero
//! to one. Labels are bounded: a policy's namespace and name, and values from closed enums
//! (phase, verdict, result, target, bound) plus the metric names the policy declares.
//! Never error text, revisions or URLs. The list of exported names is derived from the
//! registry itself ([`Metrics::exported_names`]) so docs and dashboards are tested
//! against what is really served.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::exposition::{openmetrics_to_text, Format};
use super::label_sets::*;
pub use super::labels::{Bound, RolloutResult, Target, VerdictKind, WriteResult, ALL_PHASES};
pub use super::labels::{NotifyChannel, NotifyResult};
use super::labels::{ALL_NOTIFY_CHANNELS, ALL_NOTIFY_RESULTS};
use super::labels::{ALL_RESULTS, ALL_VERDICTS, ALL_WRITE_RESULTS};
use super::policy_families::{PolicyFamily, PolicyFamilyKind};
use super::policy_series::{PolicySeries, RolloutGauges, Slot};
use super::process::{ProcessCollector, PROCESS_METRIC_NAMES};
use super::registrar::{latency_buckets, rollout_duration_buckets, Registrar};
use crate::build_info;
use crate::metrics::PolicyRef;
use crate::policy::Phase;

/// At most this many policies get per-policy counters (`shiftgate_policy_rollouts_total`,
/// `shiftgate_policy_analysis_evaluations_total`): seven series each. Past it, a further
/// policy is counted only in `shiftgate_rollouts_total` and
/// `shiftgate_analysis_evaluations_total`, so a cluster with very many policies cannot
/// blow up the scrape; a deleted policy frees its place.
pub const MAX_POLICIES_WITH_RESULT_SERIES: usize = 1000;

type DurationFamily = Family<ResultLabel, Histogram, fn() -> Histogram>;

/// Every metric the daemon exports, registered once at start.
pub struct Metrics {
    registry: Registry,
    /// Every exported name, as users query it.
    names: Vec<String>,
    rollouts: Family<ResultLabel, Counter>,
    rollout_duration: DurationFamily,
    evaluations: Family<VerdictLabel, Counter>,
    /// Every per-policy series (weight, step, phase, analysis gauges, per-policy
    /// counters), one record per policy, written by the `PolicyFamily`s at scrape time.
    policy_series: PolicySeries,
    prometheus_query_duration: Histogram,
    reconcile_duration: Histogram,
    evaluation_lateness: Histogram,
    router_writes: Family<ResultLabel, Counter>,
    reconcile_errors: Family<ResultLabel, Counter>,
    leader: Gauge,
    shards_held: Gauge,
    policies: Gauge,
    policies_whole: Gauge,
    notifications: Family<NotifyLabels, Counter>,
}

/// Lateness buckets in seconds, from 10 ms to 5 min: the on-time goal is under 1 s,
/// and a daemon short of CPU is minutes late.
fn lateness_buckets() -> Histogram {
    Histogram::new([
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registrar::new();
        let policy_series = PolicySeries::default();
        let family = |kind| PolicyFamily::new(&policy_series, kind);
        let rollouts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "rollouts",
            "Rollouts that ended, by result (promoted, rolled_back, aborted, held)",
            rollouts.clone(),
        );
        registry.register(
            "policy_rollouts",
            "Rollouts that ended, per policy and result (series start at 0 when the daemon first sees the policy)",
            family(PolicyFamilyKind::Rollouts),
        );
        registry.register(
            "policy_analysis_evaluations",
            "Analysis evaluations, per policy and verdict (series start at 0 when the daemon first sees the policy)",
            family(PolicyFamilyKind::Evaluations),
        );
        let rollout_duration: DurationFamily =
            Family::new_with_constructor(rollout_duration_buckets);
        registry.register_seconds(
            "rollout_duration",
            "Time from a rollout's start to its end, by result",
            rollout_duration.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the labels say which version and commit of shiftgate runs",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: build_info::VERSION,
                commit: build_info::COMMIT,
            })
            .set(1);
        let evaluations = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "analysis_evaluations",
            "Analysis evaluations, by verdict (pass, fail, inconclusive)",
            evaluations.clone(),
        );
        registry.register(
            "canary_weight_ratio",
            "Share of requests routed to the canary, as last confirmed by the router (0 to 1)",
            family(PolicyFamilyKind::CanaryWeight),
        );
        registry.register(
            "rollout_step",
            "Index of the current step in spec.steps (changes mark step transitions)",
            family(PolicyFamilyKind::Step),
        );
        registry.register(
            "rollout_phase",
            "1 for the rollout's current phase, 0 for every other phase",
            family(PolicyFamilyKind::Phase),
        );
        registry.register(
            "analysis_metric_value",
            "Last measured value of an analysis metric, per target (canary, stable)",
            family(PolicyFamilyKind::MetricValue),
        );
        registry.register(
            "analysis_metric_threshold",
            "Criterion of an analysis metric from the policy, per bound (min, max, max_increase, max_ratio)",
            family(PolicyFamilyKind::MetricThreshold),
        );
        registry.register(
            "analysis_evidence_ratio",
            "A sequential comparison's evidence that the canary is worse, as a share of what rolls back (1: rolled back)",
            family(PolicyFamilyKind::Evidence),
        );
        let prometheus_query_duration = latency_buckets();
        registry.register_seconds(
            "prometheus_query_duration",
            "Time taken by the Prometheus queries of one analysis evaluation",
            prometheus_query_duration.clone(),
        );
        let reconcile_duration = latency_buckets();
        registry.register_seconds(
            "reconcile_duration",
            "Time taken by one reconcile of one policy",
            reconcile_duration.clone(),
        );
        let evaluation_lateness = lateness_buckets();
        registry.register_seconds(
            "evaluation_lateness",
            "How long after its due time a policy's reconcile started",
            evaluation_lateness.clone(),
        );
        let router_writes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "router_writes",
            "Writes to a traffic router, by result (ok, conflict, invalid, unavailable)",
            router_writes.clone(),
        );
        let reconcile_errors = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error reason (a CamelCase constant)",
            reconcile_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this daemon holds the leader Lease and may write, else 0",
            leader.clone(),
        );
        let shards_held = Gauge::default();
        registry.register(
            "shards_held",
            "Shard Leases this daemon holds (--shards; 1 or 0 with one shard)",
            shards_held.clone(),
        );
        let policies = Gauge::default();
        registry.register(
            "policies",
            "RolloutPolicies this daemon currently watches",
            policies.clone(),
        );
        let policies_whole = Gauge::default();
        registry.register(
            "policies_whole",
            "RolloutPolicies this daemon keeps whole in its watch cache (status included); \
             with --shards, those of the shards it holds, the others as spec only",
            policies_whole.clone(),
        );
        let notifications = Family::<NotifyLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications (spec.notify webhooks, Grafana annotations), by channel (webhook, grafana) and result (delivered, failed, dropped)",
            notifications.clone(),
        );
        for (channel, result) in ALL_NOTIFY_CHANNELS
            .iter()
            .flat_map(|c| ALL_NOTIFY_RESULTS.iter().map(move |r| (c, r)))
        {
            notifications
                .get_or_create(&NotifyLabels {
                    channel: channel.as_str(),
                    result: result.as_str(),
                })
                .inc_by(0);
        }
        let Registrar {
            mut registry,
            mut names,
        } = registry;
        registry.register_collector(Box::new(ProcessCollector));
        names.extend(PROCESS_METRIC_NAMES.iter().map(|n| (*n).to_owned()));
        // Every closed label set starts at 0, so the first event is an increase that
        // `increase()`/`rate()` see (a series born at 1 reads as no change).
        for result in ALL_RESULTS {
            rollouts
                .get_or_create(&ResultLabel {
                    result: result.as_str(),
                })
                .inc_by(0);
        }
        for verdict in ALL_VERDICTS {
            evaluations
                .get_or_create(&VerdictLabel {
                    verdict: verdict.as_str(),
                })
                .inc_by(0);
        }
        for result in ALL_WRITE_RESULTS {
            router_writes
                .get_or_create(&ResultLabel {
                    result: result.as_str(),
                })
                .inc_by(0);
        }
        Metrics {
            registry,
            names,
            rollouts,
            rollout_duration,
            evaluations,
            policy_series,
            prometheus_query_duration,
            reconcile_duration,
            evaluation_lateness,
            router_writes,
            reconcile_errors,
            leader,
            shards_held,
            policies,
            policies_whole,
            notifications,
        }
    }

    /// [`Metrics::rollout_finished`] when `transition` ends the rollout that started at
    /// `started_at`; nothing for any other transition.
    pub fn transition_observed(
        &self,
        policy: &PolicyRef,
        transition: &crate::engine::Transition,
        started_at: Option<crate::policy::Timestamp>,
    ) {
        let Some(result) = RolloutResult::of(transition.kind) else {
            return;
        };
        let took = started_at.map(|started| {
            transition
                .at
                .signed_duration_since(started)
                .num_milliseconds() as f64
                / 1000.0
        });
        self.rollout_finished(policy, result, took);
    }

    /// Counts a rollout that ended, overall and for its policy, and observes how long
    /// it took (`None` when its start is unknown).
    pub fn rollout_finished(
        &self,
        policy: &PolicyRef,
        result: RolloutResult,
        duration_seconds: Option<f64>,
    ) {
        let label = ResultLabel {
            result: result.as_str(),
        };
        self.rollouts.get_or_create(&label).inc();
        if let Some(seconds) = duration_seconds.filter(|s| s.is_finite() && *s >= 0.0) {
            self.rollout_duration.get_or_create(&label).observe(seconds);
        }
        self.policy_series.count_rollout(policy, result);
    }

    pub fn analysis_evaluated(&self, policy: &PolicyRef, verdict: VerdictKind) {
        self.evaluations
            .get_or_create(&VerdictLabel {
                verdict: verdict.as_str(),
            })
            .inc();
        self.policy_series.count_evaluation(policy, verdict);
    }

    /// Records the rollout's phase, step and confirmed canary weight (percent).
    pub fn set_rollout(&self, policy: &PolicyRef, phase: Phase, step: u32, canary_weight: u8) {
        self.policy_series.set_rollout(
            policy,
            RolloutGauges {
                phase,
                step,
                canary_weight,
            },
        );
    }

    pub fn set_metric_value(&self, policy: &PolicyRef, metric: &str, target: Target, value: f64) {
        self.policy_series
            .set_metric(policy, metric, Slot::Value(target), Some(value));
    }

    /// Forgets a value that was not measured this time (no data, NaN, unreachable), so
    /// a dashboard shows a gap rather than a stale number.
    pub fn clear_metric_value(&self, policy: &PolicyRef, metric: &str, target: Target) {
        self.policy_series
            .set_metric(policy, metric, Slot::Value(target), None);
    }

    /// A sequential comparison's evidence share; `None` forgets it (no comparison).
    pub fn set_evidence(&self, policy: &PolicyRef, metric: &str, share: Option<f64>) {
        self.policy_series
            .set_metric(policy, metric, Slot::Evidence, share);
    }

    pub fn set_metric_threshold(&self, policy: &PolicyRef, metric: &str, bound: Bound, value: f64) {
        self.policy_series
            .set_metric(policy, metric, Slot::Threshold(bound), Some(value));
    }

    /// Publishes every criterion of the policy's metrics.
    pub fn set_thresholds(&self, policy: &PolicyRef, spec: &crate::policy::RolloutSpec) {
        for metric in &spec.analysis.metrics {
            let criteria = [
                (Bound::Min, metric.min),
                (Bound::Max, metric.max),
                (
                    Bound::MaxIncrease,
                    metric.compare.as_ref().and_then(|c| c.max_increase),
                ),
                (
                    Bound::MaxRatio,
                    metric.compare.as_ref().and_then(|c| c.max_ratio),
                ),
            ];
            for (bound, value) in criteria {
                if let Some(value) = value {
                    self.set_metric_threshold(policy, &metric.name, bound, value);
                }
            }
        }
    }

    pub fn observe_prometheus_query(&self, seconds: f64) {
        self.prometheus_query_duration.observe(seconds);
    }

    pub fn observe_reconcile(&self, seconds: f64) {
        self.reconcile_duration.observe(seconds);
    }

    pub fn observe_evaluation_lateness(&self, seconds: f64) {
        self.evaluation_lateness.observe(seconds);
    }

    pub fn router_write(&self, result: WriteResult) {
        self.router_writes
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    /// Counts a failed reconcile; `reason` is the error's CamelCase constant.
    pub fn reconcile_failed(&self, reason: &'static str) {
        self.reconcile_errors
            .get_or_create(&ResultLabel { result: reason })
            .inc();
    }

    /// Counts one notification's outcome.
    pub fn notification(&self, channel: NotifyChannel, result: NotifyResult) {
        self.notifications
            .get_or_create(&NotifyLabels {
                channel: channel.as_str(),
                result: result.as_str(),
            })
            .inc();
    }

    pub fn set_shards_held(&self, held: usize) {
        self.shards_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn set_policies(&self, count: usize) {
        self.policies.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn set_policies_whole(&self, count: i64) {
        self.policies_whole.set(count);
    }

    /// Drops every per-policy series of a deleted policy, so the registry stays bounded
    /// by the policies that exist, and frees its place among the policies with result
    /// counters.
    pub fn forget_policy(&self, policy: &PolicyRef) {
        self.policy_series.forget(policy);
    }

    /// The registry in the OpenMetrics format (what prometheus-client writes).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The registry in the format asked for (see [`super::exposition`]).
    pub fn encode_as(&self, format: Format) -> Result<String, std::fmt::Error> {
        let openmetrics = self.encode()?;
        Ok(match format {
            Format::OpenMetrics => openmetrics,
            Format::Text => openmetrics_to_text(&openmetrics),
        })
    }

    /// The metric names as users query them: counters with `_total`, histograms by
    /// their base name (`…_bucket`, `…_sum` and `…_count` are its series). Sorted.
    pub fn exported_names(&self) -> Vec<String> {
        let mut names = self.names.clone();
        names.sort();
        names
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
