//! The thin tokio loop around [`DueQueue`]: watch events and a shard Lease taken make
//! policies due now, each reconcile says when its policy is due again, and at most
//! `concurrency` reconciles run at once, earliest due first. One loop and one timer
//! for every policy; no task per rollout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::time::Instant;

use crate::observe::metrics::Metrics;
use crate::policy::RolloutPolicy;
use crate::runtime::scheduler::DueQueue;
use crate::runtime::shards::Shards;

/// Drives reconciles until `stop` resolves (or the trigger stream ends), then waits
/// for the reconciles in flight (their writes) and returns. `reconcile` answers when
/// the policy is due again (`None`: only on a change).
#[allow(clippy::too_many_arguments)]
pub(super) async fn drive<Triggers, WatchError, Ready, Gained, Stop, Run, Fut>(
    triggers: Triggers,
    store: Store<RolloutPolicy>,
    store_ready: Ready,
    gained: Gained,
    shards: Shards,
    stop: Stop,
    concurrency: u16,
    metrics: Arc<Metrics>,
    reconcile: Run,
) where
    Triggers: Stream<Item = Result<ObjectRef<RolloutPolicy>, WatchError>>,
    WatchError: std::fmt::Display,
    Ready: Future<Output = ()>,
    Gained: Stream<Item = usize>,
    Stop: Future<Output = ()>,
    Run: Fn(Arc<RolloutPolicy>) -> Fut,
    Fut: Future<Output = Option<Duration>>,
{
    // 0 keeps kube's meaning: no limit.
    let limit = match concurrency {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let mut queue: DueQueue<ObjectRef<RolloutPolicy>, Instant> = DueQueue::new(limit);
    let mut running = FuturesUnordered::new();
    let triggers = triggers.fuse();
    let gained = gained.fuse();
    // The initial list reaches the store only when it is complete (`store_ready`):
    // until then a triggered policy is not in it yet, and nothing starts.
    tokio::pin!(triggers, gained, stop, store_ready);
    let mut stopping = false;
    let mut ready = false;
    loop {
        let now = Instant::now();
        let may_start = ready && !stopping;
        while let Some((key, due)) = may_start.then(|| queue.pop_due(now)).flatten() {
            let Some(policy) = store.get(&key) else {
                // Deleted since it was scheduled.
                queue.finish(&key, None);
                continue;
            };
            metrics.observe_evaluation_lateness(now.saturating_duration_since(due).as_secs_f64());
            let run = reconcile(policy);
            running.push(async move { (key, run.await) });
        }
        if stopping && running.is_empty() {
            return;
        }
        let next_due = queue.next_due().filter(|_| may_start);
        tokio::select! {
            biased;
            () = &mut stop, if !stopping => stopping = true,
            () = &mut store_ready, if !ready => ready = true,
            Some((key, again)) = running.next(), if !running.is_empty() => {
                let next = again.and_then(|after| Instant::now().checked_add(after));
                queue.finish(&key, next);
            }
            trigger = triggers.next(), if !stopping => match trigger {
                Some(Ok(policy)) => queue.schedule(policy, Instant::now()),
                Some(Err(error)) => tracing::debug!(error = %error, "policy watch"),
                None => stopping = true,
            },
            Some(shard) = gained.next(), if !stopping => {
                // A shard taken (or, with several, lost): its policies are due now.
                let now = Instant::now();
                for policy in store.state() {
                    let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
                    let name = policy.metadata.name.as_deref().unwrap_or_default();
                    if shards.of(namespace, name) == shard {
                        queue.schedule(ObjectRef::from_obj(&*policy), now);
                    }
                }
            }
            () = sleep_until(next_due) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
