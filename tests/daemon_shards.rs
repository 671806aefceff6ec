//! `shiftgate daemon --shards 3` as three processes against the in-repo test API server
//! (issue 12 §5, at CI size): the shards are shared out one per replica; `kill -9` of
//! one mid-rollout, and its shards are taken over within the lease duration (plus a
//! renewal margin), every rollout reaches its end, and every route saw each step
//! exactly once, in order. Every wait polls a condition with a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use shiftgate::runtime::shards::Shards;
use support::sharded::{shard_of, Replica, ShardCluster, LEASE, NS};
use tokio::time::Instant;

const SHARDS: u32 = 3;
const ROLLOUTS: usize = 30;
const STEPS: [u8; 6] = [0, 20, 40, 60, 80, 100];
/// Beyond the lease duration: the survivors poll every retry period (a fifth of it) and
/// see the dead replica's member Lease go stale one round later at worst.
const RENEWAL_MARGIN: Duration = Duration::from_millis(1_500);

fn distinct_and_all_held(holders: &[Option<String>], among: &BTreeSet<String>) -> bool {
    let held: BTreeSet<&String> = holders.iter().flatten().collect();
    holders
        .iter()
        .all(|h| h.as_ref().is_some_and(|h| among.contains(h)))
        && held.len() == holders.len().min(among.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sharded_daemons_survive_a_kill_9_without_repeating_or_skipping_a_step() {
    let cluster = ShardCluster::start().await;
    let mut replicas: Vec<Replica> = ["pod-a", "pod-b", "pod-c"]
        .iter()
        .map(|name| cluster.replica(name, SHARDS))
        .collect();
    let everyone: BTreeSet<String> = replicas.iter().map(|r| r.name.clone()).collect();
    // The fair share: one shard each, none left free.
    cluster
        .wait_for_holders(
            SHARDS,
            "one shard per replica",
            Duration::from_secs(20),
            |h| distinct_and_all_held(h, &everyone),
        )
        .await;
    for i in 0..ROLLOUTS {
        cluster.rollout(&format!("r{i:02}"), &STEPS).await;
    }
    // Mid-rollout: a third of the rollouts past their second step, none finished.
    let started = Instant::now();
    loop {
        let phases = cluster.phases().await;
        let moving = phases.values().filter(|(_, step)| *step >= 2).count();
        if moving >= ROLLOUTS / 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the rollouts do not move: {phases:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holders = cluster.shard_holders(SHARDS).await;
    wait_whole_only_for_held(&cluster, &replicas).await;
    let victim = holders[0].clone().unwrap();
    let survivors: BTreeSet<String> = everyone.iter().filter(|n| **n != victim).cloned().collect();
    let before_kill = cluster.phases().await;
    replicas
        .iter_mut()
        .find(|r| r.name == victim)
        .unwrap()
        .kill_9();
    let took = cluster
        .wait_for_holders(SHARDS, "the takeover", LEASE * 5, |h| {
            h.iter()
                .all(|h| h.as_ref().is_some_and(|h| survivors.contains(h)))
        })
        .await;
    assert!(
        took <= LEASE + RENEWAL_MARGIN,
        "{victim}'s shards were taken over after {took:?}, more than the lease duration \
         {LEASE:?} plus {RENEWAL_MARGIN:?}"
    );
    eprintln!("{victim} killed; its shards taken over after {took:?}");
    // The survivors' shiftgate_shards_held add up to every shard again.
    let started = Instant::now();
    loop {
        let mut held = 0.0;
        for replica in replicas.iter().filter(|r| r.name != victim) {
            held += replica.gauge("shiftgate_shards_held").await.unwrap_or(0.0);
        }
        if held == f64::from(SHARDS) {
            break;
        }
        assert!(
            started.elapsed() < LEASE,
            "the survivors' shiftgate_shards_held add up to {held}, not {SHARDS}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survivors_only: Vec<&Replica> = replicas.iter().filter(|r| r.name != victim).collect();
    wait_whole_only_for_held(&cluster, &survivors_only).await;
    // The victim's shards had rollouts under way: the survivors finished them.
    let shards = Shards::new(SHARDS).unwrap();
    assert!(before_kill
        .keys()
        .all(|name| shards.of(NS, name) == shard_of(NS, name, SHARDS)));
    let orphaned: Vec<&String> = before_kill
        .iter()
        .filter(|(name, (phase, _))| {
            phase != "Promoted" && holders[shards.of(NS, name)].as_deref() == Some(&victim)
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        !orphaned.is_empty(),
        "the kill was not mid-rollout for {victim}'s shards: {before_kill:?}"
    );

    let started = Instant::now();
    loop {
        let phases = cluster.phases().await;
        if phases.len() == ROLLOUTS && phases.values().all(|(phase, _)| phase == "Promoted") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not every rollout reached its end: {phases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes = cluster.route_writes();
    let expected: Vec<u64> = STEPS
        .iter()
        .filter(|w| **w != 0)
        .map(|w| u64::from(*w))
        .collect();
    let wrong: BTreeMap<&String, &Vec<u64>> =
        writes.iter().filter(|(_, w)| **w != expected).collect();
    assert_eq!(writes.len(), ROLLOUTS, "{writes:?}");
    assert!(
        wrong.is_empty(),
        "routes whose steps were repeated or skipped (each must be {expected:?}): {wrong:?}"
    );
    for replica in &mut replicas {
        assert!(
            replica.name == victim || replica.is_running(),
            "{} exited",
            replica.name
        );
    }
    // A replica stopped gracefully releases its shards: the last one takes them at
    // once, without waiting for them to expire.
    let mut survivors: Vec<&mut Replica> =
        replicas.iter_mut().filter(|r| r.name != victim).collect();
    let last = survivors[1].name.clone();
    assert_eq!(survivors[0].terminate().await, Some(0));
    let took = cluster
        .wait_for_holders(SHARDS, "the release", LEASE * 5, |h| {
            h.iter().all(|h| h.as_deref() == Some(last.as_str()))
        })
        .await;
    assert!(
        took < LEASE,
        "released shards were taken after {took:?}, not at once"
    );
    assert_lease_calls_are_granted(&cluster);
}

/// Each replica keeps whole (status included) exactly the policies of the shards it
/// holds, and the others as spec only (`shiftgate_policies_whole`, against
/// `shiftgate_policies`: every policy).
async fn wait_whole_only_for_held<R: std::borrow::Borrow<Replica>>(
    cluster: &ShardCluster,
    replicas: &[R],
) {
    let started = Instant::now();
    loop {
        let holders = cluster.shard_holders(SHARDS).await;
        let names: Vec<String> = cluster.phases().await.into_keys().collect();
        let mut wrong = Vec::new();
        for replica in replicas.iter().map(|r| r.borrow()) {
            let held = names
                .iter()
                .filter(|name| {
                    holders[shard_of(NS, name, SHARDS)].as_deref() == Some(replica.name.as_str())
                })
                .count();
            let whole = replica.gauge("shiftgate_policies_whole").await;
            let all = replica.gauge("shiftgate_policies").await;
            if whole != Some(held as f64) || all != Some(ROLLOUTS as f64) {
                wrong.push(format!(
                    "{}: {whole:?} whole of {all:?}, holding {held} of {ROLLOUTS}",
                    replica.name
                ));
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a replica keeps whole other policies than those of its shards: {wrong:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every call on Leases is granted by deploy/role.yaml with the sharding component's
/// Role, and every verb they grant was used (delete: the stopped replica's member
/// Lease).
fn assert_lease_calls_are_granted(cluster: &ShardCluster) {
    let mut used = BTreeSet::new();
    for request in cluster.server.requests() {
        let path = request.path.split('?').next().unwrap_or_default();
        let Some((_, rest)) = path.split_once("/leases") else {
            continue;
        };
        let named = rest.starts_with('/');
        let verb = match (request.method.as_str(), named) {
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("DELETE", _) => "delete",
            (other, _) => panic!("unexpected {other} {path}"),
        };
        used.insert(verb.to_owned());
    }
    let mut granted = BTreeSet::new();
    for file in ["deploy/role.yaml", "deploy/components/sharding/role.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let role: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for rule in role["rules"].as_array().unwrap() {
            assert_eq!(rule["resources"][0], "leases", "{file}");
            for verb in rule["verbs"].as_array().unwrap() {
                granted.insert(verb.as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(used, granted, "Lease verbs used vs granted");
}

/// Shards are shared out through Leases: `--shards 2` without one, or `--shards 0`, is
/// an invalid flag (exit 2) that says what to do, before anything is contacted.
#[test]
fn shards_without_a_lease_or_zero_shards_are_refused() {
    for (args, says) in [
        (
            vec!["--shards", "2", "--lease-name", ""],
            "set --lease-name",
        ),
        (vec!["--shards", "0"], "--shards"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shiftgate"))
            .arg("daemon")
            .args(&args)
            .env("KUBECONFIG", "/nonexistent")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// The fair share: a replica alone takes every shard; as two more start it hands two
/// over (releasing them, so they change hands at once), and each ends with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_alone_takes_every_shard_and_hands_them_over_as_others_start() {
    let cluster = ShardCluster::start().await;
    let _a = cluster.replica("pod-a", SHARDS);
    cluster
        .wait_for_holders(
            SHARDS,
            "pod-a holding every shard",
            Duration::from_secs(20),
            |h| h.iter().all(|h| h.as_deref() == Some("pod-a")),
        )
        .await;
    let _b = cluster.replica("pod-b", SHARDS);
    let _c = cluster.replica("pod-c", SHARDS);
    let everyone: BTreeSet<String> = ["pod-a", "pod-b", "pod-c"].map(String::from).into();
    cluster
        .wait_for_holders(
            SHARDS,
            "one shard per replica",
            Duration::from_secs(20),
            |h| distinct_and_all_held(h, &everyone),
        )
        .await;
    // And it stays so: nobody takes a second shard while everyone holds one.
    let settled = cluster.shard_holders(SHARDS).await;
    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(cluster.shard_holders(SHARDS).await, settled);
}
