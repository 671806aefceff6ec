//! When the daemon's shards change hands, as streams and futures over this replica's
//! [`ShardLeadership`]: which shards' policies become due, when the policy watch must
//! list again, and when the first election round is over.

use std::sync::Arc;

use futures::{Stream, StreamExt};

use super::shard_cache::ShardCache;
use crate::observe::http::Health;
use crate::runtime::leader::Leadership;
use crate::runtime::shards::ShardLeadership;

pub(super) async fn mark_settled(leadership: ShardLeadership, health: Health) {
    election_settled(leadership).await;
    health.set_election_settled();
}

/// Every shard's elector has decided once (taken the shard, or seen its holder).
pub(super) async fn election_settled(leadership: ShardLeadership) {
    let mut watched = leadership.all().to_vec();
    while !leadership.is_settled() {
        crate::runtime::shards::any_changed(&mut watched).await;
    }
}

/// Fires with a shard's index when its policies are due at once. With one shard, each
/// time this replica takes the Lease (its standby cache holds every policy whole). With
/// several, when the list that followed taking the shard is complete (its policies are
/// whole in the store then: `shard_cache`), and as soon as a shard is given up, so that
/// this replica stops exporting its per-policy series at once.
///
/// Also when the Lease is renewed after a policy of the shard was passed over (a
/// renewal late enough that the Lease had lapsed for a moment): otherwise that policy
/// would wait for its next change.
pub(super) fn shard_changes(
    leadership: &ShardLeadership,
    ready: impl Stream<Item = usize> + Send + 'static,
    cache: Arc<ShardCache>,
) -> futures::stream::BoxStream<'static, usize> {
    let several = leadership.shards().count() > 1;
    let changes =
        futures::stream::select_all(leadership.all().iter().enumerate().map(|(shard, held)| {
            let cache = cache.clone();
            let again = move || several && cache.take_passed_over(shard);
            leadership_changes(held.clone(), !several, several, again)
                .map(move |()| shard)
                .boxed()
        }));
    if several {
        futures::stream::select(changes, ready).boxed()
    } else {
        changes.boxed()
    }
}

/// Fires each time this replica takes or gives up any shard.
pub(super) fn held_changes(
    leadership: &ShardLeadership,
) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::select_all(
        leadership
            .all()
            .iter()
            .map(|held| leadership_changes(held.clone(), true, true, || false).boxed()),
    )
}

/// Fires each time this replica becomes the leader (with `gained`), each time it
/// stops being one (with `lost`), and at a change that finds it still leading when
/// `again()` says so.
pub(super) fn leadership_changes(
    leadership: Leadership,
    gained: bool,
    lost: bool,
    again: impl Fn() -> bool + Send + 'static,
) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold(
        (leadership, false, again),
        move |(mut leadership, mut was, again)| async move {
            loop {
                leadership.changed().await;
                let now = leadership.is_leading();
                let fire = match (was, now) {
                    (false, true) => gained,
                    (true, false) => lost,
                    (true, true) => again(),
                    (false, false) => false,
                };
                was = now;
                if fire {
                    return Some(((), (leadership, was, again)));
                }
            }
        },
    )
}
