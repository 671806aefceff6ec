//! What the status page shows, kept in memory: per rollout its last status (history,
//! last analysis, evidence) and a bounded ring of samples (weight, and each metric's
//! canary and stable value against its limit at each evaluation), fed from the tick
//! outcomes of the daemon, `run` or the demo.
//!
//! Memory is bounded: at most [`MAX_ROLLOUTS`] rollouts (the least recently updated is
//! dropped for a new one), [`MAX_SAMPLES`] samples per rollout (oldest dropped first)
//! and [`MAX_METRICS`] metrics per sample. The status itself is bounded by the engine
//! (`HISTORY_LIMIT` transitions).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::metrics::PolicyRef;
use crate::policy::status::{MetricSummary, VerdictKind};
use crate::policy::{MetricSpec, Phase, RolloutSpec, RolloutStatus, Timestamp};

/// Rollouts kept; a new one beyond this drops the least recently updated.
pub const MAX_ROLLOUTS: usize = 500;
/// Samples kept per rollout (at one evaluation every 10s: the last hour).
pub const MAX_SAMPLES: usize = 360;
/// Metrics kept per sample (a policy with more shows its first ones).
pub const MAX_METRICS: usize = 16;

/// The shared, bounded read model of the page. Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct Board {
    inner: Arc<Mutex<Rollouts>>,
}

#[derive(Default)]
struct Rollouts {
    by_policy: BTreeMap<(String, String), Entry>,
    /// Bumped at every record: orders entries by recency for eviction.
    sequence: u64,
    /// The sequence the last list answer showed, and the last detail answer (once a
    /// page asked for one): what [`Board::linger`] waits for.
    rows_served: Option<u64>,
    detail_served: Option<u64>,
}

struct Entry {
    status: RolloutStatus,
    limits: Vec<MetricLimits>,
    samples: VecDeque<Sample>,
    updated_at: Timestamp,
    sequence: u64,
}

/// A metric's limits as the policy writes them.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricLimits {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_increase: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
}

impl MetricLimits {
    fn of(metric: &MetricSpec) -> Self {
        let compare = metric.compare.as_ref();
        MetricLimits {
            name: metric.name.clone(),
            max: metric.max,
            min: metric.min,
            max_increase: compare.and_then(|c| c.max_increase),
            max_ratio: compare.and_then(|c| c.max_ratio),
        }
    }

    /// The highest canary value that passes, given stable's value: the tightest of
    /// `max`, stable + `maxIncrease` and stable × `maxRatio`.
    fn upper(&self, stable: Option<f64>) -> Option<f64> {
        let relative = stable.into_iter().flat_map(|s| {
            [
                self.max_increase.map(|d| s + d),
                self.max_ratio.map(|r| s * r),
            ]
        });
        [self.max]
            .into_iter()
            .chain(relative)
            .flatten()
            .filter(|v| v.is_finite())
            .reduce(f64::min)
    }
}

/// The rollout at one instant: a move, a phase change or an evaluation.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub at: Timestamp,
    pub phase: Phase,
    pub canary_weight: u8,
    /// The evaluation's verdict; absent for a sample that is only a move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictKind>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricPoint>,
}

/// One metric of one evaluation, with the limits the canary was judged against.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricPoint {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    /// The highest canary value that passes (`max`, or stable plus its allowance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// The lowest canary value that passes (`min`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    /// A sequential judge's evidence as a share of what rolls back (1: rolled back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f64>,
    pub verdict: VerdictKind,
}

/// One line of the list of rollouts.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRow {
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub phase: Phase,
    pub canary_weight: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<VerdictKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub updated_at: Timestamp,
}

/// One rollout in full: its row, its status, its limits and its samples (oldest first).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutDetail {
    #[serde(flatten)]
    pub row: RolloutRow,
    pub status: RolloutStatus,
    pub limits: Vec<MetricLimits>,
    pub samples: Vec<Sample>,
}

impl Board {
    pub fn new() -> Self {
        Board::default()
    }

    /// A poisoned lock only means a panic elsewhere mid-record: the data is still
    /// a consistent snapshot of plain values, so the page keeps serving it.
    fn lock(&self) -> MutexGuard<'_, Rollouts> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one tick's outcome: the status always, a sample when it evaluated or
    /// when the weight or phase moved. A new revision starts a new timeline.
    pub fn record(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        status: &RolloutStatus,
        evaluated: bool,
        now: Timestamp,
    ) {
        let mut rollouts = self.lock();
        rollouts.sequence = rollouts.sequence.wrapping_add(1);
        let sequence = rollouts.sequence;
        let key = (policy.namespace.clone(), policy.name.clone());
        if !rollouts.by_policy.contains_key(&key) && rollouts.by_policy.len() >= MAX_ROLLOUTS {
            let oldest = rollouts
                .by_policy
                .iter()
                .min_by_key(|(_, entry)| entry.sequence)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                rollouts.by_policy.remove(&oldest);
            }
        }
        let limits: Vec<MetricLimits> = spec
            .analysis
            .metrics
            .iter()
            .take(MAX_METRICS)
            .map(MetricLimits::of)
            .collect();
        let entry = rollouts.by_policy.entry(key).or_insert_with(|| Entry {
            status: status.clone(),
            limits: limits.clone(),
            samples: VecDeque::new(),
            updated_at: now,
            sequence,
        });
        if entry.status.revision != status.revision {
            entry.samples.clear();
        }
        let moved = entry.samples.back().is_none_or(|last| {
            last.canary_weight != status.canary_weight || last.phase != status.phase
        });
        let analysis = status.last_analysis.as_ref().filter(|_| evaluated);
        if moved || analysis.is_some() {
            if entry.samples.len() >= MAX_SAMPLES {
                entry.samples.pop_front();
            }
            entry.samples.push_back(Sample {
                at: analysis.map_or(now, |a| a.at),
                phase: status.phase,
                canary_weight: status.canary_weight,
                verdict: analysis.map(|a| a.verdict),
                metrics: analysis
                    .map(|a| points(&a.metrics, &limits))
                    .unwrap_or_default(),
            });
        }
        entry.status = status.clone();
        entry.limits = limits;
        entry.updated_at = now;
        entry.sequence = sequence;
    }

    /// [`Board::record`] for a tick of a local run (`run`, the demo).
    pub fn record_tick(&self, policy: &PolicyRef, tick: &crate::runtime::local::TickReport<'_>) {
        let outcome = tick.outcome;
        self.record(
            policy,
            tick.spec,
            &outcome.status,
            outcome.evaluated,
            tick.now,
        );
    }

    /// Drops a rollout whose policy was deleted.
    pub fn forget(&self, policy: &PolicyRef) {
        self.lock()
            .by_policy
            .remove(&(policy.namespace.clone(), policy.name.clone()));
    }

    /// Every rollout, by namespace then name.
    pub fn rows(&self) -> Vec<RolloutRow> {
        let mut rollouts = self.lock();
        rollouts.rows_served = Some(rollouts.sequence);
        rollouts
            .by_policy
            .iter()
            .map(|((namespace, name), entry)| row(namespace, name, entry))
            .collect()
    }

    /// One rollout in full.
    pub fn detail(&self, namespace: &str, name: &str) -> Option<RolloutDetail> {
        let mut rollouts = self.lock();
        rollouts.detail_served = Some(rollouts.sequence);
        let entry = rollouts
            .by_policy
            .get(&(namespace.to_owned(), name.to_owned()))?;
        Some(RolloutDetail {
            row: row(namespace, name, entry),
            status: entry.status.clone(),
            limits: entry.limits.clone(),
            samples: entry.samples.iter().cloned().collect(),
        })
    }
}

impl Board {
    /// Whether the pages that poll have been served the last record (true when no
    /// page ever polled).
    fn seen_everything(&self) -> bool {
        let rollouts = self.lock();
        match (rollouts.detail_served, rollouts.rows_served) {
            (Some(served), _) | (None, Some(served)) => served >= rollouts.sequence,
            (None, None) => true,
        }
    }

    /// Waits, at most `limit`, until the pages that poll have fetched the last
    /// record: a run or demo that ends must not take its final state (the rollback)
    /// with it. Returns at once when no page is watching.
    pub async fn linger(&self, limit: std::time::Duration) {
        let started = tokio::time::Instant::now();
        while !self.seen_everything() && started.elapsed() < limit {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

fn row(namespace: &str, name: &str, entry: &Entry) -> RolloutRow {
    let status = &entry.status;
    RolloutRow {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        revision: status.revision.clone(),
        phase: status.phase,
        canary_weight: status.canary_weight,
        current_step: status.current_step.clone(),
        last_verdict: status.last_analysis.as_ref().map(|a| a.verdict),
        reason: status.reason.as_deref().map(str::to_owned),
        message: status.message.clone(),
        updated_at: entry.updated_at,
    }
}

fn points(metrics: &[MetricSummary], limits: &[MetricLimits]) -> Vec<MetricPoint> {
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    metrics
        .iter()
        .take(MAX_METRICS)
        .map(|metric| {
            let limit = limits.iter().find(|l| l.name == metric.name);
            let stable = finite(metric.stable);
            MetricPoint {
                name: metric.name.clone(),
                canary: finite(metric.canary),
                stable,
                upper: limit.and_then(|l| l.upper(stable)),
                lower: limit.and_then(|l| l.min).filter(|v| v.is_finite()),
                evidence: finite(metric.evidence),
                verdict: metric.verdict,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "board_tests.rs"]
mod tests;
