#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use crate::policy::RolloutSpec;
use crate::runtime::leader::Leadership;
use crate::runtime::shards::Shards;
use kube::runtime::reflector;

const SHARDS: u32 = 3;

/// A policy named so that it lands in `shard` of three, with a status.
fn policy_in(shard: usize, tag: &str) -> RolloutPolicy {
    let shards = Shards::new(SHARDS).unwrap();
    let name = (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|name| shards.of("shop", name) == shard)
        .unwrap();
    let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
        "revision": "v2",
        "router": { "istio": {
            "virtualService": format!("vs-{name}"),
            "stable": { "host": "a" },
            "canary": { "host": "b" }
        }},
        "steps": [0, 100],
        "analysis": { "metrics": [] }
    }))
    .unwrap();
    let mut policy = RolloutPolicy::new(&name, spec);
    policy.metadata.namespace = Some("shop".to_owned());
    policy.metadata.annotations =
        Some([("kubectl/last-applied".to_owned(), "{}".to_owned())].into());
    policy.status = Some(Default::default());
    policy
}

fn json(policy: &RolloutPolicy) -> serde_json::Value {
    serde_json::to_value(policy).unwrap()
}

struct Replica {
    cache: Arc<ShardCache>,
    ready: UnboundedReceiver<usize>,
    writer: reflector::store::Writer<RolloutPolicy>,
    store: Store<RolloutPolicy>,
    hold: Vec<Box<dyn Fn(bool)>>,
    metrics: Arc<Metrics>,
}

impl Replica {
    fn holding(held: &[usize]) -> Self {
        let shards = Shards::new(SHARDS).unwrap();
        let mut leaderships = Vec::new();
        let mut hold: Vec<Box<dyn Fn(bool)>> = Vec::new();
        for shard in 0..shards.count() {
            let (leadership, switch) = Leadership::switched(held.contains(&shard));
            leaderships.push(leadership);
            hold.push(Box::new(switch));
        }
        let (store, writer) = reflector::store();
        let metrics = Arc::new(Metrics::new());
        let (cache, ready) = ShardCache::new(
            ShardLeadership::of_each(shards, leaderships),
            store.clone(),
            metrics.clone(),
        );
        Replica {
            cache,
            ready,
            writer,
            store,
            hold,
            metrics,
        }
    }

    fn event(&mut self, event: watcher::Event<RolloutPolicy>) {
        let kept = self.cache.keep(Ok(event)).unwrap();
        self.writer.apply_watcher_event(&kept);
        if matches!(kept, watcher::Event::InitDone) {
            self.cache.list_done(&self.store.state());
        }
    }

    /// A watch started now lists `policies`.
    fn list(&mut self, policies: &[RolloutPolicy]) {
        self.cache.begin_watch();
        self.event(watcher::Event::Init);
        for policy in policies {
            self.event(watcher::Event::InitApply(policy.clone()));
        }
        self.event(watcher::Event::InitDone);
    }

    fn stored(&self, policy: &RolloutPolicy) -> Arc<RolloutPolicy> {
        self.store.get(&ObjectRef::from_obj(policy)).unwrap()
    }

    fn ready_now(&mut self) -> Vec<usize> {
        let mut ready = Vec::new();
        while let Ok(shard) = self.ready.try_recv() {
            ready.push(shard);
        }
        ready
    }

    fn whole_gauge(&self) -> String {
        let text = self.metrics.encode().unwrap();
        text.lines()
            .find(|line| line.starts_with("shiftgate_policies_whole "))
            .unwrap_or_default()
            .to_owned()
    }
}

#[test]
fn only_the_held_shards_policies_are_kept_whole_and_ready() {
    let mut replica = Replica::holding(&[1]);
    let theirs = policy_in(0, "a");
    let mine = policy_in(1, "b");
    assert!(!replica.cache.ready(1), "nothing is ready before a list");
    replica.list(&[theirs.clone(), mine.clone()]);

    let kept = replica.stored(&theirs);
    assert!(is_spec_only(&kept));
    assert_eq!(kept.status, None);
    assert_eq!(kept.spec, theirs.spec, "the route check needs the spec");
    assert_eq!(
        kept.metadata.creation_timestamp,
        theirs.metadata.creation_timestamp
    );
    assert_eq!(json(&replica.stored(&mine)), json(&mine));
    assert!(replica.cache.ready(1) && !replica.cache.ready(0));
    assert_eq!(replica.ready_now(), vec![1]);
    assert_eq!(replica.whole_gauge(), "shiftgate_policies_whole 1");
}

#[test]
fn a_shard_taken_is_ready_only_after_the_list_that_brings_it_whole() {
    let mut replica = Replica::holding(&[1]);
    let theirs = policy_in(0, "a");
    let mine = policy_in(1, "b");
    replica.list(&[theirs.clone(), mine.clone()]);
    replica.ready_now();

    (replica.hold[0])(true);
    // Taken, but the store still holds the spec-only copy: not ready.
    assert!(!replica.cache.ready(0));
    replica.cache.begin_watch();
    replica.event(watcher::Event::Init);
    replica.event(watcher::Event::InitApply(theirs.clone()));
    assert!(
        !replica.cache.ready(0),
        "not ready before the list is complete"
    );
    assert!(is_spec_only(&replica.stored(&theirs)));
    replica.event(watcher::Event::InitApply(mine.clone()));
    replica.event(watcher::Event::InitDone);
    assert!(replica.cache.ready(0));
    assert_eq!(json(&replica.stored(&theirs)), json(&theirs));
    assert_eq!(replica.ready_now(), vec![0], "shard 1 was ready already");
    assert_eq!(replica.whole_gauge(), "shiftgate_policies_whole 2");
}

#[test]
fn a_shard_given_up_is_cut_to_spec_at_the_next_list() {
    let mut replica = Replica::holding(&[0, 1]);
    let a = policy_in(0, "a");
    let b = policy_in(1, "b");
    replica.list(&[a.clone(), b.clone()]);
    assert_eq!(replica.ready_now(), vec![0, 1]);

    (replica.hold[0])(false);
    replica.list(&[a.clone(), b.clone()]);
    assert!(is_spec_only(&replica.stored(&a)));
    assert!(!replica.cache.ready(0) && replica.cache.ready(1));
    assert!(replica.ready_now().is_empty());
    assert_eq!(replica.whole_gauge(), "shiftgate_policies_whole 1");
}

#[test]
fn watch_events_keep_the_count_of_whole_policies() {
    let mut replica = Replica::holding(&[1]);
    let theirs = policy_in(0, "a");
    let mine = policy_in(1, "b");
    replica.list(&[]);
    replica.event(watcher::Event::Apply(mine.clone()));
    replica.event(watcher::Event::Apply(mine.clone()));
    replica.event(watcher::Event::Apply(theirs.clone()));
    assert_eq!(replica.whole_gauge(), "shiftgate_policies_whole 1");
    assert!(is_spec_only(&replica.stored(&theirs)));
    replica.event(watcher::Event::Delete(theirs));
    assert_eq!(replica.whole_gauge(), "shiftgate_policies_whole 1");
    replica.event(watcher::Event::Delete(mine));
    assert_eq!(replica.whole_gauge(), "shiftgate_policies_whole 0");
}

#[test]
fn one_shard_keeps_every_policy_whole_held_or_not() {
    let (standby, _switch) = Leadership::switched(false);
    let (store, mut writer) = reflector::store();
    let metrics = Arc::new(Metrics::new());
    let (cache, _ready) = ShardCache::new(
        ShardLeadership::of_each(Shards::ONE, vec![standby]),
        store.clone(),
        metrics,
    );
    let policy = policy_in(0, "a");
    cache.begin_watch();
    for event in [
        watcher::Event::Init,
        watcher::Event::InitApply(policy.clone()),
        watcher::Event::InitDone,
    ] {
        writer.apply_watcher_event(&cache.keep(Ok(event)).unwrap());
    }
    cache.list_done(&store.state());
    assert_eq!(
        json(&store.get(&ObjectRef::from_obj(&policy)).unwrap()),
        json(&policy)
    );
    assert!(
        cache.ready(0),
        "the standby takes over from its cache at once"
    );
}

/// The watch restarts once per burst of shard changes, and not without one.
#[tokio::test]
async fn the_watch_restarts_once_for_a_burst_of_shard_changes() {
    let replica = Replica::holding(&[]);
    let (changes_tx, changes_rx) = unbounded::<()>();
    let (events_tx, events_rx) = unbounded::<(usize, u32)>();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = started.clone();
    // Each watch yields its own number, then waits on the shared events channel.
    let events_rx = Arc::new(tokio::sync::Mutex::new(events_rx));
    let stream = replica.cache.restarting(
        move || {
            let watch = counted.fetch_add(1, Ordering::SeqCst);
            let events = events_rx.clone();
            futures::stream::unfold(events, move |events| async move {
                let item = events.lock().await.next().await?;
                Some(((watch, item.1), events))
            })
            .boxed()
        },
        changes_rx,
        std::future::ready(()),
    );
    tokio::pin!(stream);
    events_tx.unbounded_send((0, 1)).unwrap();
    assert_eq!(stream.next().await, Some((0, 1)));
    for _ in 0..3 {
        changes_tx.unbounded_send(()).unwrap();
    }
    events_tx.unbounded_send((0, 2)).unwrap();
    assert_eq!(
        stream.next().await,
        Some((1, 2)),
        "one restart for three changes"
    );
    events_tx.unbounded_send((0, 3)).unwrap();
    assert_eq!(stream.next().await, Some((1, 3)));
    assert_eq!(started.load(Ordering::SeqCst), 2);
}

/// A shard given up and taken back before the next list completes: its policies were
/// passed over meanwhile (dropped from the queue), so it is announced again.
#[test]
fn a_shard_whose_policies_were_passed_over_is_announced_at_the_next_list() {
    let mut replica = Replica::holding(&[1]);
    let mine = policy_in(1, "b");
    replica.list(std::slice::from_ref(&mine));
    assert_eq!(replica.ready_now(), vec![1]);
    replica.list(std::slice::from_ref(&mine));
    assert!(replica.ready_now().is_empty(), "nothing was passed over");
    replica.cache.passed_over(1);
    replica.list(std::slice::from_ref(&mine));
    assert_eq!(replica.ready_now(), vec![1]);
}

/// A renewal that finds a shard's policy passed over (the Lease lapsed for a moment, a
/// renewal late) makes the shard due again; a renewal without one does not.
#[test]
fn a_renewal_after_a_policy_was_passed_over_makes_the_shard_due() {
    let (leadership, switch) = Leadership::switched(false);
    let passed = Arc::new(AtomicBool::new(false));
    let taken = passed.clone();
    let changes = super::super::hand_over::leadership_changes(leadership, false, true, move || {
        taken.swap(false, Ordering::AcqRel)
    });
    futures::pin_mut!(changes);
    switch(true);
    assert_eq!(
        changes.next().now_or_never(),
        None,
        "a gain is announced by the list"
    );
    switch(true);
    assert_eq!(changes.next().now_or_never(), None, "a renewal alone");
    passed.store(true, Ordering::Release);
    switch(true);
    assert_eq!(changes.next().now_or_never(), Some(Some(())));
    switch(false);
    assert_eq!(changes.next().now_or_never(), Some(Some(())), "given up");
}

/// The first watch waits for the first election round, and the shards taken in it
/// make no second list right after.
#[tokio::test]
async fn the_first_watch_starts_after_the_first_election_round_with_one_list() {
    let replica = Replica::holding(&[]);
    let (changes_tx, changes_rx) = unbounded::<()>();
    let (settled_tx, settled_rx) = futures::channel::oneshot::channel::<()>();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = started.clone();
    let stream = replica.cache.restarting(
        move || {
            let watch = counted.fetch_add(1, Ordering::SeqCst);
            futures::stream::iter([watch])
                .chain(futures::stream::pending())
                .boxed()
        },
        changes_rx,
        async move {
            let _ = settled_rx.await;
        },
    );
    tokio::pin!(stream);
    assert_eq!(stream.next().now_or_never(), None);
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "no watch before the round"
    );
    (replica.hold[1])(true);
    changes_tx.unbounded_send(()).unwrap();
    settled_tx.send(()).unwrap();
    assert_eq!(stream.next().await, Some(0));
    assert_eq!(stream.next().now_or_never(), None);
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "one list for the first round"
    );
    assert_eq!(*replica.cache.listing.lock().unwrap(), [false, true, false]);
}
