//! The in-cluster controller: one loop over the watched RolloutPolicies, bounded
//! concurrency, the earliest due policy first (one queue for every policy, no task or
//! timer per rollout: [`crate::runtime::scheduler`]), leader election so only one replica writes
//! (or, with several shards, only the holder of a policy's shard Lease:
//! [`crate::runtime::shards`]), and the observability the
//! on-call needs (metrics, Events, conditions).
//!
//! For each policy a reconcile: validates the spec (a failing spec gets Accepted=False
//! and a Warning Event, nothing is written to any router), refuses a second policy on a
//! route that another already owns, builds the router for `spec.router`, runs one
//! engine tick through [`Reconciler`], publishes what happened, and requeues at the
//! tick's wake time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::analysis::sample::AnalysisInput;
use crate::engine::{Transition, TransitionKind};
use crate::metrics::{MetricSource, PolicyRef};
use crate::observe::events::{EventPublisher, RolloutEvent};
use crate::observe::grafana::dashboard_link;
use crate::observe::http::Health;
use crate::observe::metrics::{Metrics, Target, VerdictKind, WriteResult};
use crate::policy::status::VerdictKind as StatusVerdict;
use crate::policy::validate::validate_spec;
use crate::policy::{RolloutPolicy, RolloutSpec, RolloutStatus, Timestamp};
use crate::router::istio::{IstioRouter, IstioTarget};
use crate::router::service::{ServiceRouter, ServiceTarget};
use crate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use crate::runtime::checks::CheckRunner;
use crate::runtime::clock::Clock;
use crate::runtime::commands::CommandSource;
use crate::runtime::leader::{FencedRouter, FencedStore, Leadership, LeaseConfig};
use crate::runtime::reconcile::{ReconcileError, Reconciler, Seams};
use crate::runtime::route_index::RouteIndex;
use crate::runtime::scheduler::{self, Action};
use crate::runtime::shards::{ShardElector, ShardLeadership, Shards};
use crate::store::{StateStore, StoreError};

mod driver;
mod guarded;
mod hand_over;
mod policy;
mod relisted;
mod routers;
mod shard_cache;
mod triggers;
mod watched;

use hand_over::{election_settled, held_changes, mark_settled, shard_changes};
use policy::{error_policy, reconcile, Context};
use routers::{CountingRouter, TimedMetrics};
pub use routers::{KubeRouters, RouterFactory};

/// Reasons of the Accepted=False conditions the daemon itself sets.
pub mod reasons {
    pub const INVALID_POLICY: &str = "InvalidPolicy";
    pub const ROUTE_CONFLICT: &str = "RouteConflict";
    pub const ROUTE_INVALID: &str = "RouteInvalid";
    pub const ROUTER_NOT_SUPPORTED: &str = "RouterNotSupported";
    pub const POLICY_ACCEPTED: &str = "PolicyAccepted";
    pub use crate::metrics::providers::{CREDENTIALS_NOT_ALLOWED, PROMETHEUS_NOT_ALLOWED};
    /// Every reason above that means "refused by the daemon".
    pub const REFUSALS: [&str; 6] = [
        INVALID_POLICY,
        ROUTE_CONFLICT,
        ROUTE_INVALID,
        ROUTER_NOT_SUPPORTED,
        CREDENTIALS_NOT_ALLOWED,
        PROMETHEUS_NOT_ALLOWED,
    ];
}

const ACCEPTED: &str = "Accepted";

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// Watch one namespace; `None`: all namespaces.
    pub namespace: Option<String>,
    /// This replica's name (Event `reportingInstance`, Lease `holderIdentity`).
    pub pod_name: String,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Leader election; `None`: this replica always leads (a single replica).
    pub lease: Option<LeaseConfig>,
    /// Every policy is looked at at least this often.
    pub resync: Duration,
    /// How long shutdown waits for in-flight reconciles (their writes) to finish.
    pub shutdown_deadline: Duration,
}

/// What the daemon drives; production wires the Kubernetes implementations, tests
/// may substitute any seam.
#[derive(Clone)]
pub struct DaemonSeams {
    pub client: Client,
    pub routers: Arc<dyn RouterFactory>,
    pub metrics: Arc<dyn MetricSource>,
    pub store: Arc<dyn StateStore>,
    pub commands: Arc<dyn CommandSource>,
    pub checks: Arc<dyn CheckRunner>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("a RolloutPolicy without {field} was received from the API server; it is skipped")]
    MissingMetadata { field: &'static str },
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the RolloutPolicy custom resource is not installed in the cluster ({source}); \
         install it with `shiftgate crd | kubectl apply -f -`"
    )]
    CrdMissing {
        #[source]
        source: kube::Error,
    },
    #[error("cannot list RolloutPolicies{scope}: {source}; check the API server address and the daemon's RBAC")]
    ApiUnavailable {
        scope: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Leader(#[from] crate::runtime::leader::LeaderError),
}

impl DaemonError {
    pub fn reason(&self) -> &'static str {
        match self {
            DaemonError::MissingMetadata { .. } => "MissingMetadata",
            DaemonError::Reconcile(e) => e.reason(),
            DaemonError::Store(e) => e.reason(),
            DaemonError::CrdMissing { .. } => "CrdMissing",
            DaemonError::ApiUnavailable { .. } => "ApiUnavailable",
            DaemonError::Leader(e) => e.reason(),
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            DaemonError::MissingMetadata { .. } | DaemonError::CrdMissing { .. } => false,
            DaemonError::Reconcile(e) => e.is_transient(),
            DaemonError::Store(e) => e.is_transient(),
            DaemonError::ApiUnavailable { .. } => true,
            DaemonError::Leader(e) => e.is_transient(),
        }
    }
}

/// The daemon: create, take [`Daemon::metrics`] and [`Daemon::health`] for the HTTP
/// endpoints, then [`Daemon::run`].
pub struct Daemon {
    options: DaemonOptions,
    seams: DaemonSeams,
    metrics: Arc<Metrics>,
    health: Health,
    hooks: Arc<crate::runtime::hooks::Hooks>,
    /// The status page's read model, when the page is served (`--web-listen`).
    web: Option<crate::web::Board>,
    /// Where notification URLs, headers and Grafana tokens come from.
    notify_secrets: crate::runtime::hooks::HeaderSecrets,
    /// `--shards`: one Lease per shard (`runtime::shards`).
    shards: Shards,
}

impl Daemon {
    pub fn new(options: DaemonOptions, mut seams: DaemonSeams) -> Self {
        // Subset-level Istio policies select by their DestinationRule's version labels.
        seams.metrics = Arc::new(
            crate::router::istio::destination_rule::DestinationRuleLabels::new(
                seams.metrics,
                seams.client.clone(),
            ),
        );
        Daemon {
            options,
            seams,
            metrics: Arc::new(Metrics::new()),
            health: Health::default(),
            // Until `with_hooks`: webhooks without policy Secrets, never the environment.
            hooks: crate::runtime::hooks::default_hooks(),
            web: None,
            notify_secrets: crate::runtime::hooks::HeaderSecrets::PolicySecrets(None),
            shards: Shards::ONE,
        }
    }

    /// Splits the policies into `shards`, one Lease each (needs `options.lease`; with
    /// several shards and no Lease every shard is this replica's).
    pub fn with_shards(mut self, shards: Shards) -> Self {
        self.shards = shards;
        self
    }

    /// Feeds every reconcile's outcome to `board`, the status page's read model.
    pub fn with_web(mut self, board: crate::web::Board) -> Self {
        self.web = Some(board);
        self
    }

    /// Reads secret notification URLs, headers and Grafana tokens through `secrets`
    /// (production: Secrets in each policy's namespace, when allowed).
    pub fn with_notify_secrets(mut self, secrets: crate::runtime::hooks::HeaderSecrets) -> Self {
        self.notify_secrets = secrets;
        self
    }

    /// Calls hooks through `hooks` (production: webhooks whose secret headers come
    /// from Secrets in each policy's namespace).
    pub fn with_hooks(mut self, hooks: Arc<crate::runtime::hooks::Hooks>) -> Self {
        self.hooks = hooks;
        self
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Runs until `shutdown` resolves; then lets in-flight reconciles finish their
    /// writes (bounded by `shutdown_deadline`), and only then gives up the Lease.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let Daemon {
            options,
            seams,
            metrics,
            health,
            hooks,
            web,
            notify_secrets,
            shards,
        } = self;
        // Watched untyped and decoded object by object (`guarded`): one policy the
        // types cannot read must not fail the list that every other policy is in.
        let resource = kube::api::ApiResource::erase::<RolloutPolicy>(&());
        let api: Api<kube::api::DynamicObject> = match &options.namespace {
            Some(ns) => Api::namespaced_with(seams.client.clone(), ns, &resource),
            None => Api::all_with(seams.client.clone(), &resource),
        };
        check_crd(&api, options.namespace.as_deref()).await?;

        // Every helper task lives in this set: if `run` is dropped (a crash in tests,
        // an abort), they stop with it instead of, say, renewing the Lease forever.
        let mut tasks = tokio::task::JoinSet::new();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (controller_done_tx, controller_done_rx) = watch::channel(false);
        let (leadership, elector) = match &options.lease {
            Some(lease) => {
                let (elector, leadership) = ShardElector::new(
                    seams.client.clone(),
                    lease.clone(),
                    shards,
                    seams.clock.clone(),
                    metrics.clone(),
                )?;
                // The Leases are given up only after the controller stopped writing.
                let task = tasks.spawn(elector.run(wait_true(controller_done_rx)));
                (leadership, Some(task))
            }
            None => {
                metrics.set_leader(true);
                (ShardLeadership::always(shards), None)
            }
        };
        tasks.spawn(mark_settled(leadership.clone(), health.clone()));
        tasks.spawn(crate::runtime::shards::export_metrics(
            leadership.clone(),
            metrics.clone(),
        ));

        let (reader, writer) = reflector::store::<RolloutPolicy>();
        let (shard_cache, ready_shards) =
            shard_cache::ShardCache::new(leadership.clone(), reader.clone(), metrics.clone());
        let listed_cache = shard_cache.clone();
        let kept_cache = shard_cache.clone();
        let forget_metrics = metrics.clone();
        let fresh_data = Arc::new(crate::runtime::fresh_data::FreshData::default());
        let forget_fresh = fresh_data.clone();
        let forget_source = seams.metrics.clone();
        let synced = health.clone();
        let (listed_tx, listed_rx) = watch::channel(false);
        let invalid = Arc::new(guarded::InvalidPolicies::default());
        let routes = Arc::new(RouteIndex::default());
        let indexed = routes.clone();
        // The route index shares the store's objects instead of copying them.
        let stored = reader.clone();
        let recent = Arc::new(watched::RecentWrites::default());
        let seen = recent.clone();
        let observed = recent.clone();
        // What is kept per policy outside the store, dropped on a `Delete` or when a
        // re-list no longer has the policy.
        let forget = move |policy: &PolicyRef| {
            seen.forget(policy);
            forget_metrics.forget_policy(policy);
            forget_fresh.forget(policy);
            forget_source.forget(policy);
        };
        let relisting = relisted::Relisting::default();
        // With several shards, started again from a fresh list when a shard changes hands:
        // the list brings whole the policies of the shards held (`shard_cache`).
        let watched = shard_cache.restarting(
            move || {
                watcher(api.clone(), watcher::Config::default().any_semantic())
                    .default_backoff()
                    .boxed()
            },
            held_changes(&leadership),
            election_settled(leadership.clone()),
        );
        let policies = guarded::guard(watched, reader.clone(), invalid.clone())
            .map(move |event| kept_cache.keep(event))
            .reflect(writer)
            .inspect(move |event| match event {
                Ok(watcher::Event::Apply(policy)) => {
                    // `reflect` stored it just before: index that very `Arc`.
                    let shared = stored
                        .get(&reflector::ObjectRef::from_obj(policy))
                        .unwrap_or_else(|| Arc::new(policy.clone()));
                    indexed.apply(shared);
                    observed.observed(policy);
                }
                Ok(watcher::Event::Delete(policy)) => {
                    indexed.delete(policy);
                    if let Some(policy) = policy_ref(policy) {
                        forget(&policy);
                    }
                }
                // A list begins (the first, or a re-list after the watch could not
                // resume); the store still holds the previous state until `InitDone`.
                Ok(watcher::Event::Init) => relisting.begin(policy_refs(&stored.state())),
                // The initial list is complete. (Read from the stream rather than with
                // `Store::wait_until_ready`: its one-shot wakes only one of several
                // waiters.)
                Ok(watcher::Event::InitDone) => {
                    // The store holds exactly the listed objects now.
                    let listed = stored.state();
                    for gone in relisting.end(policy_refs(&listed)) {
                        forget(&gone);
                    }
                    listed_cache.list_done(&listed);
                    indexed.replace_all(listed);
                    synced.set_watches_synced();
                    let _ = listed_tx.send(true);
                }
                _ => {}
            })
            // Our own status writes do not wake the policy again: only spec
            // (generation), annotation (operator command) and deletion changes do.
            .scan(triggers::Triggers::default(), |triggers, event| {
                let due: Vec<_> = match event {
                    Ok(event) => triggers.on(&event).into_iter().map(Ok).collect(),
                    Err(error) => vec![Err(error)],
                };
                std::future::ready(Some(futures::stream::iter(due)))
            })
            .flatten();
        let events = EventPublisher::new(seams.client.clone(), &options.pod_name);
        let notifier = crate::runtime::notify::Notifier::start(
            notify_secrets,
            Arc::new(crate::runtime::notify_daemon::DaemonNotifyReport::new(
                metrics.clone(),
                events.clone(),
            )),
        );
        // One context per shard, fenced by that shard's Lease; they share all the rest.
        let contexts = Arc::new(ShardContexts {
            leadership: leadership.clone(),
            contexts: leadership
                .all()
                .iter()
                .map(|shard| {
                    Arc::new(Context {
                        options: options.clone(),
                        events: events.clone(),
                        notifier: notifier.clone(),
                        seams: seams.clone(),
                        metrics: metrics.clone(),
                        leadership: shard.clone(),
                        store: reader.clone(),
                        routes: routes.clone(),
                        recent: recent.clone(),
                        // A policy is in one shard: each context validates its own.
                        validated: Default::default(),
                        hooks: hooks.clone(),
                        fresh_data: fresh_data.clone(),
                        web: web.clone(),
                    })
                })
                .collect(),
        });
        tasks.spawn(guarded::write_refusals(
            invalid,
            contexts.clone(),
            shutdown_rx.clone(),
        ));
        let stop = wait_true(shutdown_rx.clone());
        // Our own queue rather than kube's `Controller`: see `runtime::scheduler`.
        let lateness = metrics.clone();
        let controller = driver::drive(
            policies,
            reader,
            wait_true(listed_rx),
            shard_changes(&leadership, ready_shards, shard_cache.clone()),
            shards,
            stop,
            options.concurrency,
            lateness,
            move |policy| {
                let (shard, context) = contexts.for_object(&policy);
                let context = context.clone();
                let sharded = shards.count() > 1;
                // A shard just taken: its policies are due once the list that brings
                // them whole is complete, never from a spec-only copy (no status: it
                // would look like a rollout that has not started).
                let whole = shard_cache.ready(shard) && !shard_cache::is_spec_only(&policy);
                let cache = shard_cache.clone();
                async move {
                    if sharded && !context.leadership.is_leading() {
                        // The holder of its shard drives it and exports its series;
                        // one source per series, and no stale copy here.
                        if let Some(policy) = policy_ref(&policy) {
                            context.metrics.forget_policy(&policy);
                            if let Some(web) = &context.web {
                                web.forget(&policy);
                            }
                        }
                        cache.passed_over(shard);
                        return None;
                    }
                    if !whole {
                        cache.passed_over(shard);
                        return None;
                    }
                    match reconcile(policy.clone(), context.clone()).await {
                        Ok(action) => action.requeue_after(),
                        Err(error) => error_policy(policy, &error, context).requeue_after(),
                    }
                }
            },
        );
        tokio::pin!(controller);
        let shutdown_health = health.clone();
        tokio::select! {
            () = &mut controller => {},
            () = shutdown => {
                shutdown_health.set_shutting_down();
                let _ = shutdown_tx.send(true);
                tracing::info!(deadline = ?options.shutdown_deadline, "shutting down: finishing in-flight reconciles");
                if tokio::time::timeout(options.shutdown_deadline, &mut controller).await.is_err() {
                    tracing::warn!("in-flight reconciles did not finish before the shutdown deadline");
                }
            }
        }
        let _ = controller_done_tx.send(true);
        if let Some(elector) = elector {
            // Releasing the Lease is one call with its own timeout.
            let wait_elector = async {
                while let Some(done) = tasks.join_next_with_id().await {
                    if done.map_or_else(|e| e.id(), |(id, ())| id) == elector.id() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), wait_elector).await;
        }
        tasks.abort_all();
        Ok(())
    }
}

async fn check_crd(
    api: &Api<kube::api::DynamicObject>,
    namespace: Option<&str>,
) -> Result<(), DaemonError> {
    match api.list(&kube::api::ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(DaemonError::CrdMissing {
            source: kube::Error::Api(status),
        }),
        Err(source) => Err(DaemonError::ApiUnavailable {
            scope: namespace.map_or_else(String::new, |ns| format!(" in namespace {ns}")),
            source,
        }),
    }
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|done| *done).await;
}

/// One [`Context`] per shard (each fenced by its shard's Lease).
struct ShardContexts {
    leadership: ShardLeadership,
    contexts: Vec<Arc<Context>>,
}

impl ShardContexts {
    /// The context whose Lease fences the writes for `policy`.
    fn for_policy(&self, policy: &PolicyRef) -> &Arc<Context> {
        let shard = self.leadership.shards().of(&policy.namespace, &policy.name);
        &self.contexts[shard]
    }

    /// The shard of `policy`, and the context whose Lease fences its writes.
    fn for_object(&self, policy: &RolloutPolicy) -> (usize, &Arc<Context>) {
        let shard = self.leadership.shards().of(
            policy.metadata.namespace.as_deref().unwrap_or_default(),
            policy.metadata.name.as_deref().unwrap_or_default(),
        );
        (shard, &self.contexts[shard])
    }

    /// Any context, for what they share (options, metrics).
    fn any(&self) -> &Arc<Context> {
        &self.contexts[0]
    }

    /// Every shard's Lease, to wait for a change.
    fn leaderships(&self) -> Vec<Leadership> {
        self.leadership.all().to_vec()
    }
}

/// The references of `policies` (those with a namespace and a name).
fn policy_refs(policies: &[Arc<RolloutPolicy>]) -> impl Iterator<Item = PolicyRef> + '_ {
    policies.iter().filter_map(|p| policy_ref(p))
}

fn policy_ref(policy: &RolloutPolicy) -> Option<PolicyRef> {
    Some(PolicyRef {
        namespace: policy.metadata.namespace.clone()?,
        name: policy.metadata.name.clone()?,
    })
}
