//! What a sharded replica keeps of each policy. With `--shards N` (N > 1) a replica
//! drives only the policies of the shards it holds, so only those need their whole
//! object (status, command annotations) in the watch cache; of every other policy it
//! keeps the spec alone, which the one-rollout-per-route check needs
//! ([`crate::runtime::route_index`]): two policies on one route can be in different
//! shards, so the check must see every policy's routes, whoever drives it.
//!
//! The policy watch still sees every policy; the cut is made before the reflector
//! stores an event. When the set of held shards changes the watch is started again,
//! so the re-list brings the whole objects of the shards just taken (and drops those of
//! the shards given up). A shard's policies are reconciled only once such a list is
//! complete ([`ShardCache::ready`]): never from a spec-only copy, whose missing status
//! would look like a rollout that has not started.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::stream::{BoxStream, Fuse};
use futures::{FutureExt, Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::observe::metrics::Metrics;
use crate::policy::RolloutPolicy;
use crate::runtime::shards::ShardLeadership;

/// The annotation that marks a spec-only copy in this replica's memory. It never
/// leaves the process: nothing writes a cached object back.
pub(super) const SPEC_ONLY: &str = "shiftgate.dev/cached-spec-only";

/// Whether `policy` is a spec-only copy (a policy of a shard this replica does not
/// hold, or did not hold when it was listed).
pub(super) fn is_spec_only(policy: &RolloutPolicy) -> bool {
    policy
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(SPEC_ONLY))
}

/// `policy` without what only its driver reads: status, annotations, labels, managed
/// fields, owner references. Name, namespace, creation and deletion times, generation
/// and spec stay (the route check ranks by creation time and skips policies being
/// deleted).
pub(super) fn spec_only(mut policy: RolloutPolicy) -> RolloutPolicy {
    policy.status = None;
    let metadata = &mut policy.metadata;
    metadata.managed_fields = None;
    metadata.labels = None;
    metadata.owner_references = None;
    metadata.finalizers = None;
    metadata.annotations = Some([(SPEC_ONLY.to_owned(), "true".to_owned())].into());
    policy
}

type PolicyEvent = Result<watcher::Event<RolloutPolicy>, watcher::Error>;

/// Which shards' policies the watch cache holds whole.
pub(super) struct ShardCache {
    leadership: ShardLeadership,
    /// Off with one shard: the one replica (or the standby that takes over from it)
    /// keeps every policy whole, as before shards.
    active: bool,
    /// The shards held when the current watch was started: its events keep these whole.
    listing: Mutex<Vec<bool>>,
    /// The shards whose whole objects a complete list brought into the store.
    listed: Vec<AtomicBool>,
    /// Per shard: a policy of it was due but not reconciled (the shard not held, or
    /// not ready), so dropped from the queue; its policies are due again when it is.
    passed_over: Vec<AtomicBool>,
    /// Policies the store holds whole.
    whole: AtomicI64,
    store: Store<RolloutPolicy>,
    metrics: Arc<Metrics>,
    ready_tx: UnboundedSender<usize>,
}

impl ShardCache {
    /// The cache's bookkeeping over `store`, and the stream of shards whose policies
    /// became ready to reconcile (each after the list that brought them whole).
    pub(super) fn new(
        leadership: ShardLeadership,
        store: Store<RolloutPolicy>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, UnboundedReceiver<usize>) {
        let count = leadership.shards().count();
        let (ready_tx, ready_rx) = unbounded();
        let cache = ShardCache {
            active: count > 1,
            listing: Mutex::new(vec![false; count]),
            listed: (0..count).map(|_| AtomicBool::new(false)).collect(),
            passed_over: (0..count).map(|_| AtomicBool::new(false)).collect(),
            whole: AtomicI64::new(0),
            leadership,
            store,
            metrics,
            ready_tx,
        };
        (Arc::new(cache), ready_rx)
    }

    /// Whether the policies of `shard` are in the store whole, so may be reconciled.
    pub(super) fn ready(&self, shard: usize) -> bool {
        !self.active
            || self
                .listed
                .get(shard)
                .is_some_and(|listed| listed.load(Ordering::Acquire))
    }

    /// A policy of `shard` was due but not reconciled: the shard was not held (or not
    /// ready) at that moment.
    pub(super) fn passed_over(&self, shard: usize) {
        if let Some(flag) = self.passed_over.get(shard) {
            flag.store(true, Ordering::Release);
        }
    }

    /// Whether a policy of `shard` was passed over since the last call.
    pub(super) fn take_passed_over(&self, shard: usize) -> bool {
        self.passed_over
            .get(shard)
            .is_some_and(|flag| flag.swap(false, Ordering::AcqRel))
    }

    /// A watch is (re)started: its events keep whole the policies of the shards held now.
    fn begin_watch(&self) {
        let held: Vec<bool> = self
            .leadership
            .all()
            .iter()
            .map(|shard| shard.is_leading())
            .collect();
        *self.listing.lock().unwrap_or_else(PoisonError::into_inner) = held;
    }

    fn keeps_whole(&self, policy: &RolloutPolicy) -> bool {
        if !self.active {
            return true;
        }
        let shard = self.leadership.shards().of(
            policy.metadata.namespace.as_deref().unwrap_or_default(),
            policy.metadata.name.as_deref().unwrap_or_default(),
        );
        let listing = self.listing.lock().unwrap_or_else(PoisonError::into_inner);
        listing.get(shard).copied().unwrap_or(false)
    }

    fn whole_in_store(&self, policy: &RolloutPolicy) -> bool {
        self.store
            .get(&ObjectRef::from_obj(policy))
            .is_some_and(|stored| !is_spec_only(&stored))
    }

    /// One watch event on its way to the reflector: a policy of a shard not held is cut
    /// to its spec. Counts the whole objects as the store will hold them.
    pub(super) fn keep(&self, event: PolicyEvent) -> PolicyEvent {
        let event = event?;
        let cut = |policy: RolloutPolicy| {
            if self.keeps_whole(&policy) {
                policy
            } else {
                spec_only(policy)
            }
        };
        Ok(match event {
            watcher::Event::Apply(policy) => {
                let policy = cut(policy);
                let before = i64::from(self.whole_in_store(&policy));
                let after = i64::from(!is_spec_only(&policy));
                self.count_whole(after - before);
                watcher::Event::Apply(policy)
            }
            watcher::Event::Delete(policy) => {
                if self.whole_in_store(&policy) {
                    self.count_whole(-1);
                }
                watcher::Event::Delete(policy)
            }
            watcher::Event::InitApply(policy) => watcher::Event::InitApply(cut(policy)),
            other => other,
        })
    }

    fn count_whole(&self, delta: i64) {
        if delta != 0 {
            let now = self.whole.fetch_add(delta, Ordering::AcqRel) + delta;
            self.metrics.set_policies_whole(now);
        }
    }

    /// A list is complete and the store holds exactly `listed`: the shards it kept whole are
    /// ready, and announced when they just became so or a policy of theirs was passed
    /// over meanwhile (a shard given up and taken back between two lists).
    pub(super) fn list_done(&self, listed: &[Arc<RolloutPolicy>]) {
        let whole = listed.iter().filter(|policy| !is_spec_only(policy)).count();
        let whole = i64::try_from(whole).unwrap_or(i64::MAX);
        self.whole.store(whole, Ordering::Release);
        self.metrics.set_policies_whole(whole);
        if !self.active {
            return;
        }
        let listing = self
            .listing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (shard, (kept, listed)) in listing.iter().zip(&self.listed).enumerate() {
            let was = listed.swap(*kept, Ordering::AcqRel);
            let passed_over = self.take_passed_over(shard);
            if *kept && (!was || passed_over) {
                let _ = self.ready_tx.unbounded_send(shard);
            }
        }
    }

    /// `watch()` run again from a fresh list each time `changes` fires (a shard taken
    /// or given up), a burst of changes making one restart. The first watch starts once
    /// `start_after` resolves (the first election round: so the first list already
    /// keeps whole the shards taken at start, instead of a second list right after).
    /// With one shard, `watch()` once, at once.
    pub(super) fn restarting<W, Event>(
        self: &Arc<Self>,
        watch: W,
        changes: impl Stream<Item = ()> + Send + 'static,
        start_after: impl Future<Output = ()> + Send + 'static,
    ) -> impl Stream<Item = Event> + Send
    where
        W: Fn() -> BoxStream<'static, Event> + Send + 'static,
        Event: Send + 'static,
    {
        let (changes, start_after) = if self.active {
            (changes.boxed(), start_after.boxed())
        } else {
            (
                futures::stream::pending().boxed(),
                std::future::ready(()).boxed(),
            )
        };
        let cache = self.clone();
        futures::stream::once(async move {
            start_after.await;
            let mut changes = changes.fuse();
            // Changes so far are what the first list will see.
            let current = cache.start_watch(&mut changes, &watch);
            futures::stream::unfold(
                (current, changes, cache, watch),
                |(mut current, mut changes, cache, watch)| async move {
                    loop {
                        tokio::select! {
                            biased;
                            Some(()) = changes.next() => {
                                current = cache.start_watch(&mut changes, &watch);
                            }
                            event = current.next() => {
                                let event = event?;
                                return Some((event, (current, changes, cache, watch)));
                            }
                        }
                    }
                },
            )
        })
        .flatten()
    }

    /// Every change already waiting taken (one restart for a burst), the shards held
    /// now noted, and a new watch.
    fn start_watch<Event>(
        &self,
        changes: &mut Fuse<BoxStream<'static, ()>>,
        watch: &impl Fn() -> BoxStream<'static, Event>,
    ) -> BoxStream<'static, Event> {
        while let Some(Some(())) = changes.next().now_or_never() {}
        self.begin_watch();
        watch()
    }
}

#[cfg(test)]
#[path = "shard_cache_tests.rs"]
mod tests;
