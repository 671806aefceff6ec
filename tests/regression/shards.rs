//! Issue 12 §5: shards across replicas (`daemon --shards N`).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::support::sharded::{shard_of, ShardCluster, NS};

/// Before `--shards`, a second replica only waited for the one leader Lease: it drove
/// nothing while the first one drove every rollout. With two shards, each replica
/// takes one and drives the rollouts of its own shard, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_cannot_share_the_work() {
    let cluster = ShardCluster::start().await;
    let replicas = [cluster.replica("pod-a", 2), cluster.replica("pod-b", 2)];
    cluster
        .wait_for_holders(2, "one shard per replica", Duration::from_secs(20), |h| {
            let held: BTreeSet<&String> = h.iter().flatten().collect();
            h.iter().all(Option::is_some) && held.len() == 2
        })
        .await;
    let holders = cluster.shard_holders(2).await;
    let names: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    for name in &names {
        cluster.rollout(name, &[0, 50, 100]).await;
    }
    let started = Instant::now();
    loop {
        let phases = cluster.phases().await;
        if phases.len() == names.len() && phases.values().all(|(p, _)| p == "Promoted") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "not every rollout was promoted: {phases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reporters = cluster.event_reporters().await;
    let mut drivers = BTreeSet::new();
    for name in &names {
        let holder = holders[shard_of(NS, name, 2)].clone().unwrap();
        let by = reporters.get(name).cloned().unwrap_or_default();
        assert_eq!(
            by,
            BTreeSet::from([holder.clone()]),
            "{name} is in shard {} held by {holder}; its Events came from {by:?}",
            shard_of(NS, name, 2)
        );
        drivers.insert(holder);
    }
    assert_eq!(
        drivers.len(),
        2,
        "both replicas drove rollouts: {drivers:?}"
    );
    // Each replica exports the per-policy series of its own shard's rollouts only.
    for replica in &replicas {
        let metrics = replica.metrics().await;
        let exported: BTreeSet<&str> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix("shiftgate_canary_weight_ratio{"))
            .filter_map(|l| l.split("name=\"").nth(1)?.split('"').next())
            .collect();
        let own: BTreeSet<&str> = names
            .iter()
            .filter(|n| holders[shard_of(NS, n, 2)].as_deref() == Some(replica.name.as_str()))
            .map(String::as_str)
            .collect();
        assert_eq!(exported, own, "{}'s per-policy series", replica.name);
    }
}
