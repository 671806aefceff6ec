//! Which replicas are alive, for the fair share: each replica renews a member Lease
//! `<lease-name>-member-<identity>` every retry period, and lists the Leases of its
//! namespace to see the others and the holders of the shard Leases. A member is live
//! while its Lease changed less than a lease duration ago on this replica's monotonic
//! clock (as for the shard Leases themselves). Member Leases only steer the fair share,
//! never safety: a wrong view makes a replica take one shard too many or too few, the
//! shard Leases still fence every write.
//!
//! A member Lease unchanged for [`FORGET_AFTER`] lease durations (a pod that is gone)
//! is deleted by whoever sees it; a replica deletes its own when it stops.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use tokio::time::Instant;

use super::balance::{Balance, View};
use crate::runtime::clock::Clock;
use crate::runtime::leader::LeaseConfig;

/// A member Lease unchanged for this many lease durations is deleted.
pub const FORGET_AFTER: u32 = 4;

/// The name of `identity`'s member Lease.
pub fn member_lease_name(lease_name: &str, identity: &str) -> String {
    format!("{lease_name}-member-{identity}")
}

struct Seen {
    resource_version: Option<String>,
    changed_at: Instant,
}

pub(super) struct Members {
    api: Api<Lease>,
    config: LeaseConfig,
    shard_names: Vec<String>,
    balance: Arc<Balance>,
    clock: Arc<dyn Clock>,
    seen: HashMap<String, Seen>,
}

impl Members {
    pub(super) fn new(
        api: Api<Lease>,
        config: LeaseConfig,
        shard_names: Vec<String>,
        balance: Arc<Balance>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Members {
            api,
            config,
            shard_names,
            balance,
            clock,
            seen: HashMap::new(),
        }
    }

    fn own_name(&self) -> String {
        member_lease_name(&self.config.name, &self.config.identity)
    }

    /// One round: renew this replica's member Lease, then list and publish the view.
    pub(super) async fn round(&mut self) {
        let timeout = self.config.retry_period;
        let round = async {
            if let Err(error) = self.renew().await {
                tracing::warn!(lease = %self.own_name(), error = %error, "cannot renew the shard member lease");
            }
            match self.api.list(&ListParams::default()).await {
                Ok(list) => self.observe(list.items).await,
                Err(error) => {
                    tracing::warn!(namespace = %self.config.namespace, error = %error, "cannot list the shard leases")
                }
            }
        };
        if tokio::time::timeout(timeout, round).await.is_err() {
            tracing::warn!(timeout = ?timeout, "shard member round timed out");
        }
    }

    async fn renew(&self) -> Result<(), kube::Error> {
        let name = self.own_name();
        let now = MicroTime(
            k8s_openapi::jiff::Timestamp::from_microsecond(self.clock.now().timestamp_micros())
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            renew_time: Some(now),
            ..LeaseSpec::default()
        };
        match self.api.get_opt(&name).await? {
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
        }
    }

    async fn observe(&mut self, leases: Vec<Lease>) {
        let now = Instant::now();
        let wall_now = self.clock.now().timestamp_micros();
        let prefix = member_lease_name(&self.config.name, "");
        let own = self.own_name();
        let mut view = View {
            live: BTreeSet::new(),
            holders: vec![None; self.shard_names.len()],
        };
        let mut listed = BTreeSet::new();
        let mut forgotten = Vec::new();
        for lease in leases {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            let spec = lease.spec.unwrap_or_default();
            if let Some(shard) = self.shard_names.iter().position(|n| *n == name) {
                view.holders[shard] = spec.holder_identity.filter(|h| !h.is_empty());
                continue;
            }
            if !name.starts_with(&prefix) {
                continue;
            }
            listed.insert(name.clone());
            let version = lease.metadata.resource_version.clone();
            let seen = self.seen.entry(name.clone()).or_insert_with(|| Seen {
                resource_version: version.clone(),
                // First sight: live only if renewed lately by the wall clock (a leftover
                // of a pod that is gone is not).
                changed_at: if renewed_lately(&spec, wall_now, self.config.lease_duration) {
                    now
                } else {
                    now.checked_sub(self.config.lease_duration).unwrap_or(now)
                },
            });
            if seen.resource_version != version {
                seen.resource_version = version;
                seen.changed_at = now;
            }
            let quiet = now.saturating_duration_since(seen.changed_at);
            if quiet < self.config.lease_duration {
                if let Some(identity) = spec.holder_identity.filter(|h| !h.is_empty()) {
                    view.live.insert(identity);
                }
            } else if name != own && quiet >= self.config.lease_duration * FORGET_AFTER {
                forgotten.push(name);
            }
        }
        self.seen.retain(|name, _| listed.contains(name));
        self.balance.update(view);
        for name in forgotten {
            tracing::info!(lease = %name, "deleting the member lease of a replica gone for long");
            let _ = self.api.delete(&name, &DeleteParams::default()).await;
            self.seen.remove(&name);
        }
    }

    /// On shutdown: this replica is no longer a member.
    pub(super) async fn leave(&self) {
        let name = self.own_name();
        let params = DeleteParams::default();
        let leave = self.api.delete(&name, &params);
        match tokio::time::timeout(self.config.retry_period, leave).await {
            Ok(Ok(_)) => tracing::info!(lease = %name, "shard member lease deleted"),
            _ => {
                tracing::warn!(lease = %name, "cannot delete the shard member lease; it will be forgotten")
            }
        }
    }
}

/// Whether the Lease was renewed less than `lease_duration` before `now_micros` (wall
/// clock, microseconds since the epoch).
fn renewed_lately(spec: &LeaseSpec, now_micros: i64, lease_duration: Duration) -> bool {
    let Some(renewed) = &spec.renew_time else {
        return false;
    };
    let age = now_micros.saturating_sub(renewed.0.as_microsecond());
    u128::try_from(age).is_ok_and(|age| age < lease_duration.as_micros())
}
