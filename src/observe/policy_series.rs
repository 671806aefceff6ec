//! The per-policy series (canary weight, step, phase, analysis values, thresholds,
//! evidence, and the per-policy result counters), kept as one compact record per policy
//! and written out at scrape time by the families in `policy_families.rs`.
//!
//! Why not prometheus-client's `Family`: a family keeps one hash-map entry per series,
//! each with its own `String` copies of the policy's namespace and name and its own
//! `Arc`'d atomic, in tables grown by doubling that never shrink. A holding rollout of
//! the scale bench (two metrics) has 18 such series (25 with result counters): 3.4 KiB
//! per policy at 10,000 policies. Here a policy is one B-tree entry (its name once, its
//! namespace shared by the namespace's policies) with its values inline, and the ten
//! phase series are derived from the one current phase. The exported text is the same:
//! the same families, label names and values, written by the same encoder calls.

use std::collections::BTreeMap;
use std::ops::Bound as Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::labels::{Bound, RolloutResult, Target, VerdictKind, ALL_RESULTS, ALL_VERDICTS};
use super::metrics::MAX_POLICIES_WITH_RESULT_SERIES;
use crate::metrics::PolicyRef;
use crate::policy::Phase;

/// The shared store; cloning it shares it (the registry's families read it).
#[derive(Clone, Debug, Default)]
pub(super) struct PolicySeries {
    store: Arc<Mutex<Store>>,
}

#[derive(Debug, Default)]
pub(super) struct Store {
    /// By namespace, then name: one copy of each namespace, and a scrape writes the
    /// policies in a stable order.
    pub(super) namespaces: BTreeMap<String, BTreeMap<String, PolicyRecord>>,
    /// Policies whose record has result counters (at most
    /// [`MAX_POLICIES_WITH_RESULT_SERIES`]).
    with_results: usize,
}

/// Everything exported about one policy.
#[derive(Debug, Default)]
pub(super) struct PolicyRecord {
    /// Set by `set_rollout`: the weight, step and phase gauges exist from then on.
    pub(super) rollout: Option<RolloutGauges>,
    /// The per-policy result counters, boxed: past the bound most policies have none.
    pub(super) results: Option<Box<ResultCounts>>,
    /// The analysis metrics the policy has published, sorted by name.
    pub(super) metrics: Vec<MetricSeries>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct RolloutGauges {
    pub(super) phase: Phase,
    pub(super) step: u32,
    /// Percent, as confirmed by the router.
    pub(super) canary_weight: u8,
}

/// Counts per result and per verdict, indexed like [`ALL_RESULTS`] and [`ALL_VERDICTS`].
#[derive(Debug, Default)]
pub(super) struct ResultCounts {
    pub(super) rollouts: [u64; ALL_RESULTS.len()],
    pub(super) evaluations: [u64; ALL_VERDICTS.len()],
}

/// One analysis metric's gauges: a value per target, the evidence share and a
/// threshold per bound, each present or not.
#[derive(Debug)]
pub(super) struct MetricSeries {
    pub(super) name: Box<str>,
    values: [f64; SLOTS],
    /// Bit `i` set: `values[i]` is exported.
    present: u8,
}

/// Which gauge of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Value(Target),
    Evidence,
    Threshold(Bound),
}

const SLOTS: usize = 7;

/// The orders the series of a metric are written in.
pub(super) const TARGETS: [Target; 2] = [Target::Canary, Target::Stable];
pub(super) const BOUNDS: [Bound; 4] = [Bound::Min, Bound::Max, Bound::MaxIncrease, Bound::MaxRatio];

impl Slot {
    fn index(self) -> usize {
        match self {
            Slot::Value(Target::Canary) => 0,
            Slot::Value(Target::Stable) => 1,
            Slot::Evidence => 2,
            Slot::Threshold(Bound::Min) => 3,
            Slot::Threshold(Bound::Max) => 4,
            Slot::Threshold(Bound::MaxIncrease) => 5,
            Slot::Threshold(Bound::MaxRatio) => 6,
        }
    }
}

impl MetricSeries {
    fn new(name: &str) -> Self {
        MetricSeries {
            name: name.into(),
            values: [0.0; SLOTS],
            present: 0,
        }
    }

    pub(super) fn get(&self, slot: Slot) -> Option<f64> {
        let i = slot.index();
        (self.present & (1 << i) != 0).then(|| self.values[i])
    }

    fn set(&mut self, slot: Slot, value: Option<f64>) {
        let i = slot.index();
        match value {
            Some(value) => {
                self.values[i] = value;
                self.present |= 1 << i;
            }
            None => self.present &= !(1 << i),
        }
    }
}

impl Store {
    /// The records in (namespace, name) order, from just after `after` (from the
    /// first with `None`).
    pub(super) fn after<'a>(
        &'a self,
        after: Option<&'a (String, String)>,
    ) -> impl Iterator<Item = (&'a String, &'a String, &'a PolicyRecord)> + 'a {
        let from = after.map_or(Range::Unbounded, |(namespace, _)| {
            Range::Included(namespace.as_str())
        });
        self.namespaces
            .range::<str, _>((from, Range::Unbounded))
            .flat_map(move |(namespace, names)| {
                let from = match after {
                    Some((at, name)) if at == namespace => Range::Excluded(name.as_str()),
                    _ => Range::Unbounded,
                };
                names
                    .range::<str, _>((from, Range::Unbounded))
                    .map(move |(name, record)| (namespace, name, record))
            })
    }
}

impl PolicyRecord {
    /// Creates the result counters at 0 the first time, within the bound; `None` when
    /// the policy has none.
    fn results(&mut self, with_results: &mut usize) -> Option<&mut ResultCounts> {
        if self.results.is_none() && *with_results < MAX_POLICIES_WITH_RESULT_SERIES {
            self.results = Some(Box::default());
            *with_results += 1;
        }
        self.results.as_deref_mut()
    }

    /// Sets (or with `None` forgets) one gauge of a metric; a metric is added on its
    /// first value, never for a forget.
    fn set_slot(&mut self, metric: &str, slot: Slot, value: Option<f64>) {
        match self.metrics.binary_search_by(|m| (*m.name).cmp(metric)) {
            Ok(found) => self.metrics[found].set(slot, value),
            Err(at) => {
                if value.is_some() {
                    let mut series = MetricSeries::new(metric);
                    series.set(slot, value);
                    // Exact growth: a policy has a handful of metrics, added once.
                    self.metrics.reserve_exact(1);
                    self.metrics.insert(at, series);
                }
            }
        }
    }
}

impl PolicySeries {
    pub(super) fn lock(&self) -> MutexGuard<'_, Store> {
        // The store holds plain values: one a panicking writer left half-set is still
        // worth exporting.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the policy's record (created if missing) and the count of records
    /// with result counters.
    fn with_record<R>(
        &self,
        policy: &PolicyRef,
        f: impl FnOnce(&mut PolicyRecord, &mut usize) -> R,
    ) -> R {
        let mut store = self.lock();
        let Store {
            namespaces,
            with_results,
        } = &mut *store;
        if let Some(record) = namespaces
            .get_mut(policy.namespace.as_str())
            .and_then(|names| names.get_mut(policy.name.as_str()))
        {
            return f(record, with_results);
        }
        let record = namespaces
            .entry(policy.namespace.clone())
            .or_default()
            .entry(policy.name.clone())
            .or_default();
        f(record, with_results)
    }

    /// Runs `f` on the policy's record if it has one.
    fn with_existing(&self, policy: &PolicyRef, f: impl FnOnce(&mut PolicyRecord)) {
        let mut store = self.lock();
        if let Some(record) = store
            .namespaces
            .get_mut(policy.namespace.as_str())
            .and_then(|names| names.get_mut(policy.name.as_str()))
        {
            f(record);
        }
    }

    /// Counts a rollout that ended, if the policy has result counters (created at 0
    /// the first time the bound allows).
    pub(super) fn count_rollout(&self, policy: &PolicyRef, result: RolloutResult) {
        self.with_record(policy, |record, with_results| {
            if let Some(counts) = record.results(with_results) {
                if let Some(i) = ALL_RESULTS.iter().position(|r| *r == result) {
                    counts.rollouts[i] = counts.rollouts[i].wrapping_add(1);
                }
            }
        });
    }

    pub(super) fn count_evaluation(&self, policy: &PolicyRef, verdict: VerdictKind) {
        self.with_record(policy, |record, with_results| {
            if let Some(counts) = record.results(with_results) {
                if let Some(i) = ALL_VERDICTS.iter().position(|v| *v == verdict) {
                    counts.evaluations[i] = counts.evaluations[i].wrapping_add(1);
                }
            }
        });
    }

    pub(super) fn set_rollout(&self, policy: &PolicyRef, rollout: RolloutGauges) {
        self.with_record(policy, |record, with_results| {
            record.results(with_results);
            record.rollout = Some(rollout);
        });
    }

    /// Sets one gauge of a metric, or with `None` forgets it.
    pub(super) fn set_metric(
        &self,
        policy: &PolicyRef,
        metric: &str,
        slot: Slot,
        value: Option<f64>,
    ) {
        match value {
            Some(_) => self.with_record(policy, |record, _| record.set_slot(metric, slot, value)),
            None => self.with_existing(policy, |record| record.set_slot(metric, slot, None)),
        }
    }

    /// Drops everything of the policy, freeing its place among those with result
    /// counters.
    pub(super) fn forget(&self, policy: &PolicyRef) {
        let mut store = self.lock();
        let Store {
            namespaces,
            with_results,
        } = &mut *store;
        let Some(names) = namespaces.get_mut(policy.namespace.as_str()) else {
            return;
        };
        if let Some(record) = names.remove(policy.name.as_str()) {
            if record.results.is_some() {
                *with_results = with_results.saturating_sub(1);
            }
        }
        if names.is_empty() {
            namespaces.remove(policy.namespace.as_str());
        }
    }
}
