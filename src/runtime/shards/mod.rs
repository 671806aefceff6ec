//! `daemon --shards N`: the policies are split into N shards, one Lease each, and the
//! replicas share the shards out. A policy belongs to shard
//! `fnv1a64("<namespace>/<name>") mod N` ([`Shards::of`]); a replica drives only the
//! policies of the shards whose Lease it holds, and every write for a policy is fenced
//! by its shard's Lease exactly as the one leader Lease fences them (`runtime::leader`).
//!
//! Names, in the lease namespace: with N = 1 the one Lease `<lease-name>` (today's
//! leader election, unchanged); with N > 1 the shard Leases `<lease-name>-shard-<i>`
//! for i in 0..N, and one member Lease per replica `<lease-name>-member-<identity>`
//! ([`members`]) that tells the replicas how many of them are alive, so that each
//! takes its fair share ([`balance`]).

pub mod balance;
mod members;

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::observe::metrics::Metrics;
use crate::runtime::clock::Clock;
use crate::runtime::leader::{LeaderElector, LeaderError, Leadership, LeaseConfig};

pub use members::member_lease_name;

/// FNV-1a, 64 bits, of `bytes`: offset basis `0xcbf29ce484222325`, prime
/// `0x100000001b3` (the published parameters). No key, no seed: the same value in every
/// process, machine and version, which a shard assignment needs (std's `DefaultHasher`
/// is randomly keyed per process).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How many shards there are, and which one a policy is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shards(u32);

impl Shards {
    /// One shard: the whole daemon behind one Lease (the default).
    pub const ONE: Shards = Shards(1);

    /// `None` for zero.
    pub fn new(count: u32) -> Option<Shards> {
        (count > 0).then_some(Shards(count))
    }

    pub fn count(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// The shard of policy `namespace/name`: `fnv1a64("<namespace>/<name>") mod N`.
    pub fn of(self, namespace: &str, name: &str) -> usize {
        if self.0 == 1 {
            return 0;
        }
        let key = format!("{namespace}/{name}");
        let shard = fnv1a64(key.as_bytes()) % u64::from(self.0);
        usize::try_from(shard).unwrap_or(0)
    }

    /// The Lease of shard `shard`: `<lease-name>` for one shard, else
    /// `<lease-name>-shard-<shard>`.
    pub fn lease_name(self, lease_name: &str, shard: usize) -> String {
        if self.0 == 1 {
            lease_name.to_owned()
        } else {
            format!("{lease_name}-shard-{shard}")
        }
    }
}

/// This replica's hold on each shard: one [`Leadership`] per shard.
#[derive(Clone, Debug)]
pub struct ShardLeadership {
    shards: Shards,
    leaderships: Vec<Leadership>,
}

impl ShardLeadership {
    /// Every shard held for ever: a single replica without election.
    pub fn always(shards: Shards) -> Self {
        ShardLeadership {
            shards,
            leaderships: (0..shards.count()).map(|_| Leadership::always()).collect(),
        }
    }

    /// One given [`Leadership`] per shard: tests of what follows a held shard.
    #[cfg(test)]
    pub(crate) fn of_each(shards: Shards, leaderships: Vec<Leadership>) -> Self {
        ShardLeadership {
            shards,
            leaderships,
        }
    }

    pub fn shards(&self) -> Shards {
        self.shards
    }

    /// The Lease that fences the writes for policy `namespace/name`.
    pub fn for_policy(&self, namespace: &str, name: &str) -> &Leadership {
        &self.leaderships[self.shards.of(namespace, name)]
    }

    /// One per shard, by shard index.
    pub fn all(&self) -> &[Leadership] {
        &self.leaderships
    }

    /// Shards whose Lease this replica holds now.
    pub fn held(&self) -> usize {
        self.leaderships.iter().filter(|l| l.is_leading()).count()
    }

    /// Every shard's elector decided once.
    pub fn is_settled(&self) -> bool {
        self.leaderships.iter().all(Leadership::is_settled)
    }
}

/// Waits until any of `leaderships` changes.
pub async fn any_changed(leaderships: &mut [Leadership]) {
    if leaderships.is_empty() {
        return std::future::pending().await;
    }
    let changes = leaderships.iter_mut().map(|l| Box::pin(l.changed()));
    futures::future::select_all(changes).await;
}

/// Keeps `shiftgate_shards_held` (and, with several shards, `shiftgate_leader`: 1 while
/// at least one shard is held) current.
pub async fn export_metrics(leadership: ShardLeadership, metrics: Arc<Metrics>) {
    let several = leadership.shards.count() > 1;
    let mut watched = leadership.leaderships.clone();
    loop {
        let held = leadership.held();
        metrics.set_shards_held(held);
        if several {
            metrics.set_leader(held > 0);
        }
        any_changed(&mut watched).await;
    }
}

/// Runs the election of every shard of one replica.
pub struct ShardElector {
    electors: Vec<LeaderElector>,
    members: Option<members::Members>,
    config: LeaseConfig,
}

impl ShardElector {
    /// With one shard, the one leader elector of `config` (its metrics as before);
    /// with more, one gated elector per shard Lease and the member Lease loop.
    pub fn new(
        client: Client,
        config: LeaseConfig,
        shards: Shards,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, ShardLeadership), LeaderError> {
        if shards.count() == 1 {
            let (elector, leadership) =
                LeaderElector::new(client, config.clone(), clock, Some(metrics))?;
            let elector = ShardElector {
                electors: vec![elector],
                members: None,
                config,
            };
            return Ok((
                elector,
                ShardLeadership {
                    shards,
                    leaderships: vec![leadership],
                },
            ));
        }
        let names: Vec<String> = (0..shards.count())
            .map(|shard| shards.lease_name(&config.name, shard))
            .collect();
        let mut electors = Vec::with_capacity(names.len());
        let mut leaderships = Vec::with_capacity(names.len());
        for name in &names {
            let shard_config = LeaseConfig {
                name: name.clone(),
                ..config.clone()
            };
            let (elector, leadership) =
                LeaderElector::new(client.clone(), shard_config, clock.clone(), None)?;
            electors.push(elector);
            leaderships.push(leadership);
        }
        let balance =
            balance::Balance::new(&config.identity, config.lease_duration, leaderships.clone());
        let electors = electors
            .into_iter()
            .enumerate()
            .map(|(shard, elector)| elector.with_gate(balance.gate(shard)))
            .collect();
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let members = members::Members::new(api, config.clone(), names, balance, clock);
        Ok((
            ShardElector {
                electors,
                members: Some(members),
                config,
            },
            ShardLeadership {
                shards,
                leaderships,
            },
        ))
    }

    /// Acquires, renews and follows until `shutdown` resolves; then stops leading every
    /// shard, releases their Leases and leaves the members.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let ShardElector {
            electors,
            members,
            config,
        } = self;
        let Some(mut members) = members else {
            if let Some(elector) = electors.into_iter().next() {
                elector.run(shutdown).await;
            }
            return;
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (viewed_tx, viewed_rx) = watch::channel(false);
        let stop = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let retry = config.retry_period;
        let member_loop = {
            let mut stop_rx = stop_rx.clone();
            async move {
                // Announce, and give the replicas that start with this one a round to
                // announce too, before taking any shard: fewer shards change hands.
                members.round().await;
                for round in 0.. {
                    tokio::select! {
                        _ = stop_rx.wait_for(|stop| *stop) => break,
                        () = tokio::time::sleep(retry) => {}
                    }
                    members.round().await;
                    if round == 0 {
                        let _ = viewed_tx.send(true);
                    }
                }
                members.leave().await;
            }
        };
        let shard_loops = futures::future::join_all(electors.into_iter().map(|elector| {
            let mut stop_rx = stop_rx.clone();
            let mut viewed_rx = viewed_rx.clone();
            async move {
                tokio::select! {
                    _ = stop_rx.wait_for(|stop| *stop) => return,
                    _ = viewed_rx.wait_for(|viewed| *viewed) => {}
                }
                elector
                    .run(async move {
                        let _ = stop_rx.wait_for(|stop| *stop).await;
                    })
                    .await;
            }
        }));
        futures::future::join3(stop, member_loop, shard_loops).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    /// The assignment must never change between versions: these values are pinned.
    #[test]
    fn the_shard_function_is_fnv1a_of_namespace_slash_name_and_never_changes() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64(b"shop/checkout"), 0x70a2_b89f_d6bf_5646);
        let three = Shards::new(3).unwrap();
        // 0x70a2b89fd6bf5646 mod 3
        assert_eq!(three.of("shop", "checkout"), 2);
        let pinned: Vec<usize> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|name| three.of("shop", name))
            .collect();
        assert_eq!(pinned, vec![1, 1, 2, 1, 2, 2]);
        assert_eq!(Shards::ONE.of("shop", "checkout"), 0);
    }

    #[test]
    fn one_shard_keeps_the_lease_name_and_several_get_a_suffix() {
        assert_eq!(Shards::ONE.lease_name("shiftgate", 0), "shiftgate");
        let three = Shards::new(3).unwrap();
        assert_eq!(three.lease_name("shiftgate", 2), "shiftgate-shard-2");
        assert_eq!(
            member_lease_name("shiftgate", "pod-a"),
            "shiftgate-member-pod-a"
        );
        assert_eq!(Shards::new(0), None);
    }
}
