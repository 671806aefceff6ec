//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several daemon
//! replicas exactly one writes to routers and statuses while the others keep their
//! caches warm and take over when it goes.
//!
//! The algorithm is client-go's: the holder renews every `retry_period` with a
//! conditional replace (resourceVersion); a candidate takes the Lease over only after
//! it has seen the same record, unchanged, for a whole `leaseDurationSeconds` on its own
//! monotonic clock (so clock skew between nodes does not matter). The holder stops
//! leading `renew_deadline` after the start of its last successful renewal, and
//! `renew_deadline < lease_duration`, so a holder whose renewals fail has stopped
//! writing before anyone else may acquire. [`Leadership::is_leading`] checks that
//! deadline itself: a holder stuck in a slow call is deposed at the deadline, not when
//! the call returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

use async_trait::async_trait;

use crate::metrics::PolicyRef;
use crate::observe::metrics::Metrics;
use crate::policy::{RolloutStatus, Timestamp};
use crate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use crate::runtime::clock::Clock;
use crate::store::{StateStore, StoreError};

/// Where the Lease lives, who we are, and the timing.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// `holderIdentity`: the pod name.
    pub identity: String,
    /// How long a Lease stays valid after its last renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// A holder stops leading this long after the start of its last successful
    /// renewal. Must be shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew; also each call's timeout.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The timing of client-go in proportion: renew deadline at two thirds of the lease
    /// duration, an attempt every fifth of it.
    pub fn new(name: &str, namespace: &str, identity: &str, lease_duration: Duration) -> Self {
        LeaseConfig {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration / 5,
        }
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "lease timing for {namespace}/{name} is unsafe: renew deadline {renew_deadline:?} must be \
         shorter than the lease duration {lease_duration:?} and longer than the retry period \
         {retry_period:?}; lengthen --lease-duration"
    )]
    UnsafeTiming {
        namespace: String,
        name: String,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    },
}

impl LeaderError {
    pub fn reason(&self) -> &'static str {
        match self {
            LeaderError::UnsafeTiming { .. } => "UnsafeLeaseTiming",
        }
    }

    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Consulted by an elector that runs one shard of several (`runtime::shards`), so that
/// a replica takes only its fair share of the shard Leases. Without a gate (the one
/// leader Lease) an elector takes any free Lease.
pub trait LeaseGate: Send + Sync {
    /// Before taking a Lease this replica does not hold; `free_for`: how long it has
    /// been free (empty or expired) as seen here. True reserves the slot until
    /// [`LeaseGate::settled`].
    fn may_take(&self, free_for: Duration) -> bool;
    /// After a renewal: true to give the Lease up (this replica holds more than its
    /// share while another live replica holds less).
    fn should_give_up(&self) -> bool;
    /// The attempt is over and its result published.
    fn settled(&self);
}

/// What the elector publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LeaderState {
    /// Leading until this instant, unless renewed; `None` while following.
    leading_until: Option<Instant>,
    /// The elector has decided once (acquired, or seen a live holder).
    settled: bool,
}

/// A read-only view of this replica's leadership; checked before every write.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<LeaderState>,
}

impl Leadership {
    /// Leadership that never ends: a single daemon without election (local runs,
    /// `--lease-name ""`).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(LeaderState {
            leading_until: Some(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)),
            settled: true,
        });
        // The receiver keeps the last value after the sender is gone.
        drop(tx);
        Leadership { rx }
    }

    /// A leadership switched by hand: tests of what follows a held shard.
    #[cfg(test)]
    pub(crate) fn switched(leading: bool) -> (Self, impl Fn(bool)) {
        let state = |leading: bool| LeaderState {
            leading_until: leading
                .then(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)),
            settled: true,
        };
        let (tx, rx) = watch::channel(state(leading));
        (Leadership { rx }, move |leading| {
            let _ = tx.send(state(leading));
        })
    }

    /// True while this replica holds a Lease that has not passed its renew deadline.
    pub fn is_leading(&self) -> bool {
        match self.rx.borrow().leading_until {
            Some(until) => Instant::now() < until,
            None => false,
        }
    }

    /// True once the elector has decided at least once (leader or follower).
    pub fn is_settled(&self) -> bool {
        self.rx.borrow().settled
    }

    /// Waits until the leadership changes (gained, renewed, lost) or the elector stops.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until this replica leads.
    pub async fn wait_leading(&mut self) {
        while !self.is_leading() {
            self.changed().await;
        }
    }
}

/// What a candidate saw of the Lease and when (on its own monotonic clock).
#[derive(Clone, Debug)]
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

/// The result of one attempt.
enum Attempt {
    /// We hold the Lease (created, renewed or taken over).
    Leading,
    /// Someone else holds a live Lease.
    Following { holder: String },
}

/// Runs the election for one replica. Create with [`LeaderElector::new`], keep the
/// [`Leadership`], and drive [`LeaderElector::run`] on a task.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    clock: Arc<dyn Clock>,
    tx: watch::Sender<LeaderState>,
    metrics: Option<Arc<Metrics>>,
    observed: Option<Observed>,
    gate: Option<Arc<dyn LeaseGate>>,
    /// Since when the Lease has been seen absent (nobody created it yet).
    absent_since: Option<Instant>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        config: LeaseConfig,
        clock: Arc<dyn Clock>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<(Self, Leadership), LeaderError> {
        if config.renew_deadline >= config.lease_duration
            || config.retry_period >= config.renew_deadline
            || config.retry_period.is_zero()
        {
            return Err(LeaderError::UnsafeTiming {
                namespace: config.namespace.clone(),
                name: config.name.clone(),
                lease_duration: config.lease_duration,
                renew_deadline: config.renew_deadline,
                retry_period: config.retry_period,
            });
        }
        let (tx, rx) = watch::channel(LeaderState {
            leading_until: None,
            settled: false,
        });
        let elector = LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            clock,
            tx,
            metrics,
            observed: None,
            gate: None,
            absent_since: None,
        };
        Ok((elector, Leadership { rx }))
    }

    /// Takes and keeps the Lease only as `gate` allows (one shard of several).
    pub fn with_gate(mut self, gate: Arc<dyn LeaseGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Acquires, renews and follows until `shutdown` resolves; then, if leading, stops
    /// leading at once and releases the Lease so a follower takes over without waiting
    /// for it to expire.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let started = Instant::now();
            let attempt =
                tokio::time::timeout(self.config.retry_period, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(Attempt::Leading))
                    if self.gate.as_ref().is_some_and(|gate| gate.should_give_up()) =>
                {
                    tracing::info!(lease = %self.config.name, "giving the lease up to a replica that holds fewer");
                    self.publish(None);
                    // A write checked just before this instant may still be on its way:
                    // keep the Lease, unrenewed, as long as an expiring one would guard
                    // it (lease duration less renew deadline), then hand it over.
                    let grace = self
                        .config
                        .lease_duration
                        .saturating_sub(self.config.renew_deadline);
                    tokio::time::sleep(grace).await;
                    self.release().await;
                }
                Ok(Ok(Attempt::Leading)) => {
                    // Checked: the deadline comes from a flag.
                    self.publish(started.checked_add(self.config.renew_deadline));
                }
                Ok(Ok(Attempt::Following { holder })) => {
                    if self.leading_until().is_some() {
                        tracing::warn!(holder = %holder, "leader lease lost to another holder");
                    }
                    self.publish(None);
                }
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.config.name, error = %error, "cannot acquire or renew the leader lease");
                }
                Err(_elapsed) => {
                    tracing::warn!(lease = %self.config.name, timeout = ?self.config.retry_period, "leader lease call timed out");
                }
            }
            if let Some(gate) = &self.gate {
                gate.settled();
            }
            let next_attempt = started
                .checked_add(self.config.retry_period)
                .unwrap_or(started);
            // While leading, wake at the deadline too so followers of `Leadership`
            // are told at once when it passes without a renewal.
            let deadline = self.leading_until();
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(next_attempt) => {},
                () = sleep_until_opt(deadline) => {
                    tracing::warn!(lease = %self.config.name, "leader lease not renewed before the deadline; stopped leading");
                    self.publish(None);
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep_until(next_attempt) => {},
                    }
                }
            }
        }
        if self.leading_until().is_some() {
            self.publish(None);
            self.release().await;
        }
    }

    /// Whether the gate (if any) lets this replica take a Lease free for `free_for`.
    fn gate_allows(&self, free_for: Duration) -> bool {
        self.gate
            .as_ref()
            .is_none_or(|gate| gate.may_take(free_for))
    }

    fn leading_until(&self) -> Option<Instant> {
        self.tx
            .borrow()
            .leading_until
            .filter(|until| Instant::now() < *until)
    }

    fn publish(&self, leading_until: Option<Instant>) {
        let was_leading = self.tx.borrow().leading_until.is_some();
        self.tx.send_replace(LeaderState {
            leading_until,
            settled: true,
        });
        if let Some(metrics) = &self.metrics {
            metrics.set_leader(leading_until.is_some());
        }
        if was_leading != leading_until.is_some() {
            tracing::info!(
                identity = %self.config.identity,
                leading = leading_until.is_some(),
                "leadership changed"
            );
        }
    }

    fn now_micro(&self) -> MicroTime {
        MicroTime(to_jiff(self.clock.now()))
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let absent_since = *self.absent_since.get_or_insert_with(Instant::now);
            if !self.gate_allows(absent_since.elapsed()) {
                return Ok(Attempt::Following {
                    holder: "nobody (waiting for a fair share)".to_owned(),
                });
            }
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(self.config.lease_duration_seconds()),
                    acquire_time: Some(self.now_micro()),
                    renew_time: Some(self.now_micro()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                // Someone created it first: follow, and look again next time.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following {
                    holder: "unknown".to_owned(),
                }),
                Err(error) => Err(error),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let now = Instant::now();
        let resource_version = current.metadata.resource_version.clone();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|seen| seen.resource_version != resource_version);
        if changed {
            self.observed = Some(Observed {
                resource_version: resource_version.clone(),
                at: now,
            });
        }
        let i_hold_it = holder == self.config.identity;
        if !i_hold_it && !holder.is_empty() {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.config.lease_duration, Duration::from_secs);
            let seen_at = self.observed.as_ref().map_or(now, |seen| seen.at);
            // The duration is the other holder's (any i32): checked, and an overflow
            // means the lease never expires in this process's lifetime.
            let Some(expiry) = seen_at
                .checked_add(duration)
                .filter(|expiry| now >= *expiry)
            else {
                return Ok(Attempt::Following { holder });
            };
            if !self.gate_allows(now.saturating_duration_since(expiry)) {
                return Ok(Attempt::Following { holder });
            }
        } else if !i_hold_it {
            let free_since = self.observed.as_ref().map_or(now, |seen| seen.at);
            if !self.gate_allows(now.saturating_duration_since(free_since)) {
                return Ok(Attempt::Following {
                    holder: "nobody (waiting for a fair share)".to_owned(),
                });
            }
        }
        let mut next = current.clone();
        let mut next_spec = spec.clone();
        next_spec.holder_identity = Some(self.config.identity.clone());
        next_spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
        next_spec.renew_time = Some(self.now_micro());
        if !i_hold_it {
            next_spec.acquire_time = Some(self.now_micro());
            next_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        next.spec = Some(next_spec);
        // `replace` sends the resourceVersion read above: a concurrent writer makes it
        // fail with 409 instead of being overwritten.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                self.observed = Some(Observed {
                    resource_version: written.metadata.resource_version,
                    at: now,
                });
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following {
                holder: "unknown (lost a concurrent update)".to_owned(),
            }),
            Err(error) => Err(error),
        }
    }

    /// Empties `holderIdentity` so the next candidate acquires at once. Best effort:
    /// if it fails, the Lease simply expires.
    async fn release(&self) {
        let release = async {
            let mut current = self.api.get(&self.config.name).await?;
            let mut spec = current.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(self.now_micro());
            current.spec = Some(spec);
            self.api
                .replace(&self.config.name, &PostParams::default(), &current)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(self.config.retry_period, release).await {
            Ok(Ok(())) => tracing::info!(lease = %self.config.name, "leader lease released"),
            Ok(Err(error)) => {
                tracing::warn!(lease = %self.config.name, error = %error, "cannot release the leader lease; it will expire")
            }
            Err(_) => {
                tracing::warn!(lease = %self.config.name, "releasing the leader lease timed out; it will expire")
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn to_jiff(at: Timestamp) -> k8s_openapi::jiff::Timestamp {
    let micros = at.timestamp_micros();
    k8s_openapi::jiff::Timestamp::from_microsecond(micros)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// A router that writes only while this replica leads: checked right before every
/// write, so a deposed leader stops writing at once, whatever it was in the middle of.
/// Reads always go through (followers keep their view current).
pub struct FencedRouter {
    inner: Arc<dyn TrafficRouter>,
    leadership: Leadership,
}

impl FencedRouter {
    pub fn new(inner: Arc<dyn TrafficRouter>, leadership: Leadership) -> Self {
        FencedRouter { inner, leadership }
    }
}

/// The error a follower's write gets: transient, so the tick is retried later, and
/// never taken for a verdict on the route.
fn not_leading() -> RouterError {
    RouterError::Unavailable {
        message: "this replica does not hold the leader lease; it does not write".to_owned(),
        source: None,
    }
}

#[async_trait]
impl TrafficRouter for FencedRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        self.inner.read().await
    }

    async fn read_fresh(&self) -> Result<LiveRoute, RouterError> {
        self.inner.read_fresh().await
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        if !self.leadership.is_leading() {
            return Err(not_leading());
        }
        self.inner.apply(expect, desired).await
    }
}

/// A state store that saves only while this replica leads (see [`FencedRouter`]).
pub struct FencedStore {
    inner: Arc<dyn StateStore>,
    leadership: Leadership,
}

impl FencedStore {
    pub fn new(inner: Arc<dyn StateStore>, leadership: Leadership) -> Self {
        FencedStore { inner, leadership }
    }
}

#[async_trait]
impl StateStore for FencedStore {
    async fn load(
        &self,
        policy: &PolicyRef,
    ) -> Result<Option<(RolloutStatus, Version)>, StoreError> {
        self.inner.load(policy).await
    }

    async fn save(
        &self,
        policy: &PolicyRef,
        status: &RolloutStatus,
        expect: Option<&Version>,
    ) -> Result<Version, StoreError> {
        if !self.leadership.is_leading() {
            return Err(StoreError::Conflict {
                policy: format!(
                    "{}/{} (this replica lost the leader lease)",
                    policy.namespace, policy.name
                ),
            });
        }
        self.inner.save(policy, status, expect).await
    }
}
