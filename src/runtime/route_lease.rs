//! One `shiftgate run` per route across machines: a cluster run holds a
//! `coordination.k8s.io/v1` Lease named after its route (VirtualService or Service) in
//! the policy's namespace, renewed by the daemon's own elector ([`super::leader`])
//! while the run lasts and released at its end. A second run on the route finds the
//! Lease live and is refused, naming the holder (its pid, host and start time, kept in
//! `holderIdentity`). A Lease left by a killed run expires `LEASE_DURATION` after its
//! last renewal; a run that finds one expired waits for it and takes it over.
//!
//! Holding the Lease at the start is not enough: a run that loses it (paused, cut off
//! from the API server, its Lease taken over) must not write any more. Its router and
//! its Deployment scales go through a [`RouteFence`], checked right before every write
//! as the daemon's leader checks its own (`leader::FencedRouter`), and the run stops
//! with an error as soon as a Lease is lost (`cli::route_lock::run_while_held`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::clock::SystemClock;
use super::leader::{LeaderElector, Leadership, LeaseConfig};
use super::workloads::{ReadDeployment, WorkloadError, Workloads};
use crate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};

/// How long a run's Lease stays valid after its last renewal (renewed every fifth).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum RouteLeaseError {
    #[error(
        "{key} is already driven by another `shiftgate run` ({holder}; Lease {namespace}/{lease}); \
         two runs on one route would fight over its weights: wait for that run to end, or stop \
         it (its Lease expires {seconds}s after its last renewal), then run again",
        seconds = LEASE_DURATION.as_secs()
    )]
    Held {
        key: String,
        holder: String,
        namespace: String,
        lease: String,
    },
    #[error(
        "cannot take the run Lease {namespace}/{lease} for {key}: {message}; the run needs \
         get/create/update on leases.coordination.k8s.io in {namespace}"
    )]
    Unavailable {
        key: String,
        namespace: String,
        lease: String,
        message: String,
    },
}

/// A held route Lease; [`RouteLease::release`] gives it up at once.
pub struct RouteLease {
    stop: CancellationToken,
    task: JoinHandle<()>,
    leadership: Leadership,
}

impl RouteLease {
    /// Whether the Lease is still held (renewed in time).
    pub fn is_held(&self) -> bool {
        self.leadership.is_leading()
    }

    /// The Lease's view, for a [`RouteFence`] and for noticing its loss.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Stops renewing and empties the holder, so the next run starts at once.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(LEASE_DURATION, self.task).await;
    }
}

/// The route Leases a cluster run writes under. Built with its router, before the
/// Leases are taken; [`RouteFence::arm`]ed once they are. Until then, and from the
/// instant any of them is no longer held (its renew deadline passed, or another holder
/// took it), every write is refused.
#[derive(Clone, Default)]
pub struct RouteFence {
    leases: Arc<OnceLock<Vec<Leadership>>>,
}

impl RouteFence {
    /// Writes are allowed while every one of `leases` is held. Armed once.
    pub fn arm(&self, leases: Vec<Leadership>) {
        let _ = self.leases.set(leases);
    }

    /// Whether a write may go now.
    pub fn is_held(&self) -> bool {
        self.leases
            .get()
            .is_some_and(|leases| leases.iter().all(Leadership::is_leading))
    }
}

/// The error of a write refused by the fence: nothing was sent.
fn lease_not_held() -> String {
    "this run does not hold its route Lease (lost, or not taken yet); it writes nothing".to_owned()
}

/// A cluster run's router: reads always, writes only behind its [`RouteFence`].
pub struct LeaseFencedRouter {
    inner: Arc<dyn TrafficRouter>,
    fence: RouteFence,
}

impl LeaseFencedRouter {
    pub fn new(inner: Arc<dyn TrafficRouter>, fence: RouteFence) -> Self {
        LeaseFencedRouter { inner, fence }
    }
}

#[async_trait]
impl TrafficRouter for LeaseFencedRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        self.inner.read().await
    }

    async fn read_fresh(&self) -> Result<LiveRoute, RouterError> {
        self.inner.read_fresh().await
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        if !self.fence.is_held() {
            return Err(RouterError::Unavailable {
                message: lease_not_held(),
                source: None,
            });
        }
        self.inner.apply(expect, desired).await
    }
}

/// A cluster run's Deployments: read always, scaled only behind its [`RouteFence`].
pub struct LeaseFencedWorkloads {
    inner: Arc<dyn Workloads>,
    fence: RouteFence,
}

impl LeaseFencedWorkloads {
    pub fn new(inner: Arc<dyn Workloads>, fence: RouteFence) -> Self {
        LeaseFencedWorkloads { inner, fence }
    }
}

#[async_trait]
impl Workloads for LeaseFencedWorkloads {
    async fn read(&self, name: &str) -> Result<ReadDeployment, WorkloadError> {
        self.inner.read(name).await
    }

    async fn scale(&self, name: &str, replicas: i32) -> Result<(), WorkloadError> {
        if !self.fence.is_held() {
            return Err(WorkloadError::RouteLeaseNotHeld);
        }
        self.inner.scale(name, replicas).await
    }
}

/// The Lease name for a route key: a DNS subdomain, unique per key.
pub fn lease_name(key: &str) -> String {
    let mut safe = String::new();
    for c in key.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            safe.push(c);
        } else if !safe.ends_with('-') {
            safe.push('-');
        }
    }
    safe.truncate(200);
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "shiftgate-run-{}-{:08x}",
        safe.trim_matches('-'),
        hash as u32
    )
}

/// Takes the Lease of `key` in `namespace` for `identity`, or says who holds it.
pub async fn acquire(
    client: Client,
    namespace: &str,
    key: &str,
    identity: &str,
) -> Result<RouteLease, RouteLeaseError> {
    let lease = lease_name(key);
    let unavailable = |message: String| RouteLeaseError::Unavailable {
        key: key.to_owned(),
        namespace: namespace.to_owned(),
        lease: lease.clone(),
        message,
    };
    let config = LeaseConfig::new(&lease, namespace, identity, LEASE_DURATION);
    let retry = config.retry_period;
    let (elector, mut leadership) =
        LeaderElector::new(client.clone(), config, Arc::new(SystemClock), None)
            .map_err(|e| unavailable(e.to_string()))?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(stop.clone().cancelled_owned()));
    let held = RouteLease {
        stop,
        task,
        leadership: leadership.clone(),
    };
    // The first attempt decides: created or renewed (ours), or someone else's.
    let settled = tokio::time::timeout(retry * 3, async {
        while !leadership.is_settled() {
            leadership.changed().await;
        }
    })
    .await;
    if settled.is_err() {
        held.release().await;
        return Err(unavailable(
            "the API server did not answer in time".to_owned(),
        ));
    }
    if leadership.is_leading() {
        return Ok(held);
    }
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let spec = match api.get_opt(&lease).await {
        Ok(found) => found.and_then(|l| l.spec).unwrap_or_default(),
        Err(e) => {
            held.release().await;
            return Err(unavailable(e.to_string()));
        }
    };
    if expired(&spec) {
        // Left by a run that was killed: the elector takes it over once it has seen it
        // unchanged for a whole lease duration.
        let taken = tokio::time::timeout(LEASE_DURATION + retry * 3, leadership.wait_leading());
        if taken.await.is_ok() {
            return Ok(held);
        }
    }
    held.release().await;
    Err(RouteLeaseError::Held {
        key: key.to_owned(),
        holder: spec
            .holder_identity
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "a holder that did not say who it is".to_owned()),
        namespace: namespace.to_owned(),
        lease,
    })
}

/// Whether the Lease's last renewal is older than its duration by this machine's clock.
fn expired(spec: &k8s_openapi::api::coordination::v1::LeaseSpec) -> bool {
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return spec.holder_identity.as_deref().is_none_or(str::is_empty);
    };
    let renewed = renewed.0.as_microsecond();
    let now = super::clock::Clock::now(&SystemClock).timestamp_micros();
    let duration = i64::from(seconds).saturating_mul(1_000_000);
    renewed.saturating_add(duration) < now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_dns_subdomains_unique_per_key() {
        let name = lease_name("VirtualService shop/checkout");
        assert!(
            name.starts_with("shiftgate-run-virtualservice-shop-checkout-"),
            "{name}"
        );
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_ne!(lease_name("Service a/b"), lease_name("Service a-b"));
        assert!(lease_name(&"x".repeat(400)).len() <= 253);
    }
}
