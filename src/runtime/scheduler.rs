//! When to look at a policy again, and in which order. The daemon never keeps a task or
//! a timer per rollout: each reconcile returns a requeue delay and one [`DueQueue`]
//! holds every policy's next due time.
//!
//! Why our own queue rather than kube's `Controller` scheduler: when every slot of its
//! bounded concurrency is busy, kube keeps the overdue objects in a hash set and takes
//! them in hash order, so the same rollouts are served again and again while the rest
//! wait for minutes. [`DueQueue`] always serves the earliest due time first (ties in
//! the order they were scheduled), so a rollout waits behind its due time only while
//! the slots are busy with rollouts due before it, and under overload every rollout is
//! late by about the same amount.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Duration;

use crate::metrics::freshness::ScrapePhase;
use crate::policy::Timestamp;

/// Never requeue sooner than this: a wake time in the past (a tick that ran late)
/// still leaves the API server room.
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// Delay after a transient error (API server or store unavailable, conflict).
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(5);

/// What one reconcile asks for: look again after a delay, or only on a change.
/// (Ours rather than kube's `Action`, whose delay cannot be read back.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    pub const fn requeue(after: Duration) -> Self {
        Action {
            requeue_after: Some(after),
        }
    }

    pub const fn await_change() -> Self {
        Action {
            requeue_after: None,
        }
    }

    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// The delay until `wake_at`, clamped to `[MIN_REQUEUE, resync]`. With no wake time
/// (only a command or a spec change can change anything) the policy is still looked at
/// every `resync`, so a missed watch event cannot stall a rollout.
pub fn requeue_after(now: Timestamp, wake_at: Option<Timestamp>, resync: Duration) -> Duration {
    let Some(wake_at) = wake_at else {
        return resync;
    };
    let delay = (wake_at - now).to_std().unwrap_or(Duration::ZERO);
    delay.clamp(MIN_REQUEUE, resync.max(MIN_REQUEUE))
}

/// The delay after a failed reconcile: transient errors retry soon, permanent ones
/// wait for the resync (or a change of the object, which requeues at once).
pub fn after_error(transient: bool, resync: Duration) -> Duration {
    if transient {
        TRANSIENT_RETRY.min(resync)
    } else {
        resync
    }
}

/// How long after a scrape starts its samples are taken to be queryable when Prometheus
/// did not say how long its scrapes take (see [`ScrapePhase::ingest`]).
pub const AFTER_SCRAPE: Duration = crate::metrics::freshness::DEFAULT_INGEST;

/// When to wake for an evaluation due at `due`, given when new data lands: just after
/// the first scrape from `due` less the engine's slack on, so the evaluation judges data
/// that is at most [`ScrapePhase::ingest`] old instead of anything up to a scrape
/// interval old, and keeps that phase from one interval to the next. `due` itself when
/// the phase is unknown, or when the interval is shorter than the scrape period (every
/// evaluation cannot have new data then).
pub fn after_fresh_data(
    due: Timestamp,
    phase: Option<&ScrapePhase>,
    interval: chrono::Duration,
) -> Timestamp {
    match phase {
        Some(phase) if !longer_than(phase.period, interval) => next_scrape(due, phase, interval),
        _ => due,
    }
}

/// Whether a scrape `period` is longer than `interval` by more than the jitter of
/// scrape timestamps (5 %): a 1 s scrape learned as 1,004 ms still fits a 1 s interval.
fn longer_than(period: chrono::Duration, interval: chrono::Duration) -> bool {
    period.num_milliseconds().saturating_mul(20) > interval.num_milliseconds().saturating_mul(21)
}

/// When to wake a rollout whose engine asked for `due`. Healthy: [`after_fresh_data`].
/// During a failing trend (`engine::cadence`, which makes the next evaluation due
/// [`crate::engine::cadence::failing_cadence`] after `last_evaluation`): just after
/// the next scrape, whatever the interval, so a failing canary is judged on every new
/// sample. Without a learned phase nothing says when data is new, so the wake stays
/// where the interval puts it (`last_evaluation + interval`): evaluating sooner would
/// only add queries.
pub fn wake_for_evaluation(
    due: Timestamp,
    phase: Option<&ScrapePhase>,
    interval: chrono::Duration,
    failing: Option<Timestamp>,
) -> Timestamp {
    let Some(last_evaluation) = failing else {
        return after_fresh_data(due, phase, interval);
    };
    match phase {
        Some(phase) => next_scrape(due, phase, interval),
        None => due.max(crate::engine::plan::later(last_evaluation, interval)),
    }
}

/// The first instant new data is queryable (`latest + k·period + ingest`) at or after
/// `due` less the engine's slack for `interval`.
fn next_scrape(due: Timestamp, phase: &ScrapePhase, interval: chrono::Duration) -> Timestamp {
    let period = phase.period.num_milliseconds();
    if period <= 0 {
        return due;
    }
    let slack = crate::engine::plan::evaluation_slack(interval).num_milliseconds();
    let base = phase
        .latest
        .timestamp_millis()
        .saturating_add(phase.ingest.num_milliseconds());
    let earliest = due.timestamp_millis().saturating_sub(slack);
    // The first `base + k·period` at or after `earliest` (k may be negative).
    let steps = earliest.saturating_sub(base).div_euclid(period);
    let mut slot = base.saturating_add(steps.saturating_mul(period));
    if slot < earliest {
        slot = slot.saturating_add(period);
    }
    chrono::DateTime::from_timestamp_millis(slot).unwrap_or(due)
}

/// Every key's next due time, and which keys are running, with at most `limit`
/// running at once. Pure: time `T` is passed in (an `Instant` in the daemon, a number
/// in simulations). A key is never running twice; a due time that arrives while it
/// runs is kept and merged with the one its run asks for when it finishes.
#[derive(Debug)]
pub struct DueQueue<K, T> {
    /// Waiting keys by (due, order of scheduling): the first entry is served first.
    order: BTreeMap<(T, u64), K>,
    waiting: HashMap<K, (T, u64)>,
    /// Running keys, with the earliest due time asked for while they ran.
    running: HashMap<K, Option<T>>,
    next_sequence: u64,
    limit: usize,
}

impl<K: Hash + Eq + Clone, T: Ord + Copy> DueQueue<K, T> {
    /// A queue running at most `limit` keys at once (0 is taken as 1).
    pub fn new(limit: usize) -> Self {
        DueQueue {
            order: BTreeMap::new(),
            waiting: HashMap::new(),
            running: HashMap::new(),
            next_sequence: 0,
            limit: limit.max(1),
        }
    }

    /// Asks for `key` to run at `due`; the earliest request wins.
    pub fn schedule(&mut self, key: K, due: T) {
        if let Some(asked) = self.running.get_mut(&key) {
            *asked = Some(asked.map_or(due, |a| a.min(due)));
            return;
        }
        if let Some(&(current, sequence)) = self.waiting.get(&key) {
            if current <= due {
                return;
            }
            self.order.remove(&(current, sequence));
        }
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.order.insert((due, sequence), key.clone());
        self.waiting.insert(key, (due, sequence));
    }

    /// The next key to start at `now`, with the time it was due: the earliest due
    /// time that has come, if a slot is free.
    pub fn pop_due(&mut self, now: T) -> Option<(K, T)> {
        if self.running.len() >= self.limit {
            return None;
        }
        let (&(due, sequence), _) = self.order.first_key_value()?;
        if due > now {
            return None;
        }
        let key = self.order.remove(&(due, sequence))?;
        self.waiting.remove(&key);
        self.running.insert(key.clone(), None);
        Some((key, due))
    }

    /// When the next key may start: the earliest due time if a slot is free.
    pub fn next_due(&self) -> Option<T> {
        if self.running.len() >= self.limit {
            return None;
        }
        self.order.first_key_value().map(|(&(due, _), _)| due)
    }

    /// `key` finished; it runs again at `next` (`None`: only when scheduled again),
    /// or earlier if that was asked for while it ran.
    pub fn finish(&mut self, key: &K, next: Option<T>) {
        let Some(asked) = self.running.remove(key) else {
            return;
        };
        let due = match (asked, next) {
            (Some(a), Some(n)) => Some(a.min(n)),
            (a, n) => a.or(n),
        };
        if let Some(due) = due {
            self.schedule(key.clone(), due);
        }
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
