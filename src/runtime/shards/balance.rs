//! How many shard Leases one replica may hold: its fair share of the shards among the
//! live replicas, `ceil(shards / live)`. A replica takes a free shard while it holds
//! fewer than its share, or when the shard has been free for a whole lease duration
//! (nobody under their share took it: better one replica too many than a shard nobody
//! drives). It gives a shard up (releases the Lease, so another takes it at once) only
//! while it holds more than its share *and* some live replica holds less; so a
//! replica that took a long-free shard beyond its share keeps it when nobody else
//! could drive it, and there is no back and forth.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::runtime::leader::{Leadership, LeaseGate};

/// `ceil(shards / live)`, with at least one live replica (this one).
pub fn fair_share(shards: usize, live: usize) -> usize {
    shards.div_ceil(live.max(1))
}

/// Whether a replica holding `held` shards may take one more free shard.
pub fn may_take(held: usize, share: usize, free_for: Duration, lease_duration: Duration) -> bool {
    held < share || free_for >= lease_duration
}

/// Whether a replica holding `held` shards gives one up, given the shards each other
/// live replica holds (`others`: one count per live replica, zero included).
pub fn should_give_up(held: usize, share: usize, others: &[usize]) -> bool {
    held > share && others.iter().any(|load| *load < share)
}

/// What the member loop last saw: the live replicas (this one included) and the holder
/// of each shard Lease.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub live: BTreeSet<String>,
    pub holders: Vec<Option<String>>,
}

#[derive(Default)]
struct InFlight {
    taking: BTreeSet<usize>,
    giving_up: BTreeSet<usize>,
}

/// The fair-share state shared by the electors of one replica's shards.
pub struct Balance {
    identity: String,
    shards: usize,
    lease_duration: Duration,
    leaderships: Vec<Leadership>,
    view: Mutex<View>,
    in_flight: Mutex<InFlight>,
}

impl Balance {
    pub fn new(
        identity: &str,
        lease_duration: Duration,
        leaderships: Vec<Leadership>,
    ) -> Arc<Self> {
        let mut live = BTreeSet::new();
        live.insert(identity.to_owned());
        Arc::new(Balance {
            identity: identity.to_owned(),
            shards: leaderships.len(),
            lease_duration,
            view: Mutex::new(View {
                live,
                holders: vec![None; leaderships.len()],
            }),
            leaderships,
            in_flight: Mutex::new(InFlight::default()),
        })
    }

    /// The member loop's latest view; this replica always counts as live.
    pub fn update(&self, mut view: View) {
        view.live.insert(self.identity.clone());
        *self.view.lock().unwrap_or_else(PoisonError::into_inner) = view;
    }

    /// The gate of shard `shard`'s elector.
    pub fn gate(self: &Arc<Self>, shard: usize) -> Arc<dyn LeaseGate> {
        Arc::new(ShardGate {
            balance: self.clone(),
            shard,
        })
    }

    /// Shards held now, counting takes in flight and not gives in flight.
    fn held(&self, in_flight: &InFlight) -> usize {
        (0..self.shards)
            .filter(|i| {
                let leading = self.leaderships[*i].is_leading() || in_flight.taking.contains(i);
                leading && !in_flight.giving_up.contains(i)
            })
            .count()
    }

    fn share_and_others(&self) -> (usize, Vec<usize>) {
        let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let mut load: BTreeMap<&str, usize> = view
            .live
            .iter()
            .filter(|m| **m != self.identity)
            .map(|m| (m.as_str(), 0))
            .collect();
        for holder in view.holders.iter().flatten() {
            if let Some(count) = load.get_mut(holder.as_str()) {
                *count += 1;
            }
        }
        (
            fair_share(self.shards, view.live.len()),
            load.into_values().collect(),
        )
    }
}

struct ShardGate {
    balance: Arc<Balance>,
    shard: usize,
}

impl LeaseGate for ShardGate {
    fn may_take(&self, free_for: Duration) -> bool {
        let (share, _) = self.balance.share_and_others();
        let mut in_flight = self
            .balance
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = self.balance.held(&in_flight);
        let allowed = may_take(held, share, free_for, self.balance.lease_duration);
        if allowed {
            in_flight.taking.insert(self.shard);
        }
        allowed
    }

    fn should_give_up(&self) -> bool {
        let (share, others) = self.balance.share_and_others();
        let mut in_flight = self
            .balance
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = self.balance.held(&in_flight);
        let give_up = should_give_up(held, share, &others);
        if give_up {
            in_flight.giving_up.insert(self.shard);
        }
        give_up
    }

    fn settled(&self) {
        let mut in_flight = self
            .balance
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.taking.remove(&self.shard);
        in_flight.giving_up.remove(&self.shard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(3);

    #[test]
    fn the_share_is_the_shards_divided_by_the_live_replicas_rounded_up() {
        assert_eq!(fair_share(3, 1), 3);
        assert_eq!(fair_share(3, 2), 2);
        assert_eq!(fair_share(3, 3), 1);
        assert_eq!(fair_share(2, 3), 1);
        assert_eq!(fair_share(10, 3), 4);
        // Nobody seen yet: this replica alone.
        assert_eq!(fair_share(4, 0), 4);
    }

    #[test]
    fn a_replica_takes_free_shards_up_to_its_share_then_only_long_free_ones() {
        assert!(may_take(0, 1, Duration::ZERO, LEASE));
        assert!(!may_take(1, 1, Duration::ZERO, LEASE));
        assert!(!may_take(1, 1, LEASE - Duration::from_millis(1), LEASE));
        assert!(may_take(1, 1, LEASE, LEASE));
    }

    #[test]
    fn a_replica_gives_up_only_for_a_live_replica_under_its_share() {
        // Three replicas, three shards: one holds all (it started first).
        assert!(should_give_up(3, 1, &[0, 0]));
        assert!(should_give_up(2, 1, &[1, 0]));
        assert!(!should_give_up(1, 1, &[1, 1]));
        // Took a long-free shard beyond its share, but nobody else has room: keeps it.
        assert!(!should_give_up(2, 1, &[1]));
        // Alone.
        assert!(!should_give_up(3, 3, &[]));
    }
}
