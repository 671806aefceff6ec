//! A rollout with `spec.workloads` against the real kube-apiserver (see
//! kube_apiserver.rs): two Deployments in the test's namespace, read and scaled as
//! deploy/'s ServiceAccount (so a missing RBAC grant is a 403), and the rest of the
//! world in memory (router, store, healthy metrics, a virtual clock). The API server
//! has no controllers: the tests write the Deployments' status themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{RolloutSpec, Timestamp};
use shiftgate::router::memory::MemoryRouter;
use shiftgate::router::ManagedRoute;
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::VirtualClock;
use shiftgate::runtime::workloads::KubeWorkloads;
use shiftgate::runtime::{QueuedCommands, Reconciler, Seams, TickOutcome};
use shiftgate::store::memory::MemoryStore;

use super::kube_apiserver::KubeApiServer;

/// Where deploy/ installs shiftgate's ServiceAccount.
const SHIFTGATE_NS: &str = "shiftgate";

/// Every evaluation passes.
pub struct Healthy;

#[async_trait]
impl MetricSource for Healthy {
    async fn observe(
        &self,
        _: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        _: Option<Timestamp>,
    ) -> AnalysisInput {
        AnalysisInput {
            at,
            canary_requests: Sample::value(1000.0),
            metrics: spec
                .analysis
                .metrics
                .iter()
                .map(|m| MetricObservation {
                    name: m.name.clone(),
                    canary: Sample::value(0.001),
                    stable: None,
                })
                .collect(),
        }
    }
}

pub fn server() -> &'static KubeApiServer {
    let server = KubeApiServer::shared();
    server.install();
    server
}

/// A Deployment `name` of `replicas` pods running `image`, no status yet.
pub fn deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [ { "name": "web", "image": image } ] }
            }
        }
    }))
    .unwrap()
}

/// The Deployment API of `namespace`, as admin (the test plays the controllers).
pub async fn deployments(server: &KubeApiServer, namespace: &str) -> Api<Deployment> {
    Api::namespaced(server.admin_client().await, namespace)
}

pub async fn create(api: &Api<Deployment>, name: &str, image: &str, replicas: i32) {
    api.create(&PostParams::default(), &deployment(name, image, replicas))
        .await
        .unwrap();
}

/// Deploys `image` into Deployment `name` (what CI's `kubectl set image` does).
pub async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    let patch = json!({ "spec": { "template": { "spec": {
        "containers": [ { "name": "web", "image": image } ] } } } });
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
}

/// Writes the status the Deployment controller would: the current generation observed,
/// `available` of its replicas updated and available.
pub async fn set_available(api: &Api<Deployment>, name: &str, available: i32) {
    let current = api.get(name).await.unwrap();
    let status = json!({ "status": {
        "observedGeneration": current.metadata.generation,
        "replicas": available, "updatedReplicas": available,
        "readyReplicas": available, "availableReplicas": available
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// `spec.replicas` as stored.
pub async fn replicas(api: &Api<Deployment>, name: &str) -> i32 {
    api.get(name).await.unwrap().spec.replicas.unwrap_or(1)
}

/// A policy on a Service router (0 → 100) naming `web-blue` and `web-green`, with
/// `workloads` extra fields.
pub fn spec(revision: Option<&str>, workloads: serde_json::Value) -> RolloutSpec {
    let mut w = json!({ "stable": "web-blue", "canary": "web-green" });
    if let (Some(map), serde_json::Value::Object(extra)) = (w.as_object_mut(), workloads) {
        map.extend(extra);
    }
    let mut spec = json!({
        "router": { "service": { "service": "web", "selectorKey": "color",
                                 "stableValue": "blue", "canaryValue": "green" } },
        "steps": [0, 100],
        "analysis": { "interval": "30s",
                      "metrics": [ { "name": "error-rate", "query": "e", "max": 0.01 } ] },
        "workloads": w
    });
    if let Some(revision) = revision {
        spec["revision"] = json!(revision);
    }
    serde_json::from_value(spec).unwrap()
}

/// The world of one policy: its Deployments through the real API server, the rest in
/// memory.
pub struct World {
    pub policy: PolicyRef,
    pub clock: Arc<VirtualClock>,
    pub router: Arc<MemoryRouter>,
    pub commands: Arc<QueuedCommands>,
    pub reconciler: Reconciler,
}

impl World {
    pub async fn new(server: &KubeApiServer, namespace: &str) -> World {
        let client = server
            .service_account_client(SHIFTGATE_NS, "shiftgate")
            .await;
        World::in_memory(namespace, |reconciler| {
            reconciler.with_workloads(Arc::new(KubeWorkloads::new(client, namespace)))
        })
    }

    /// Policy `web` in `namespace` with its route, store and commands in memory; `wire`
    /// gives the reconciler what it reads from a cluster (Deployments, the previous
    /// release, ...).
    pub fn in_memory(namespace: &str, wire: impl FnOnce(Reconciler) -> Reconciler) -> World {
        let clock = Arc::new(VirtualClock::new(
            chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
        ));
        let router = Arc::new(MemoryRouter::new(ManagedRoute {
            canary_weight: 0,
            test_route: false,
        }));
        let commands = Arc::new(QueuedCommands::default());
        let reconciler = wire(Reconciler::new(Seams {
            router: router.clone(),
            metrics: Arc::new(Healthy),
            store: Arc::new(MemoryStore::default()),
            checks: Arc::new(ScriptedChecks::passing()),
            commands: commands.clone(),
            clock: clock.clone(),
        }));
        World {
            policy: PolicyRef {
                namespace: namespace.to_owned(),
                name: "web".to_owned(),
            },
            clock,
            router,
            commands,
            reconciler,
        }
    }

    pub fn clock_now(&self) -> Timestamp {
        shiftgate::runtime::Clock::now(self.clock.as_ref())
    }

    /// Ticks every 30 s (the analysis interval) until the rollout is promoted.
    pub async fn until_promoted(&self, spec: &RolloutSpec) -> TickOutcome {
        for _ in 0..10 {
            let outcome = self.tick_after(30, spec).await;
            if outcome.status.phase == shiftgate::policy::Phase::Promoted {
                return outcome;
            }
        }
        panic!("not promoted after 10 ticks");
    }

    /// Advances the clock by `secs`, then ticks once.
    pub async fn tick_after(&self, secs: i64, spec: &RolloutSpec) -> TickOutcome {
        self.clock.advance(chrono::Duration::seconds(secs));
        self.reconciler.tick(&self.policy, spec).await.unwrap()
    }
}

/// A blue/green policy on a Service router with colours `blue`/`green` (0 → 100) and
/// one Deployment per colour, with `workloads` extra fields.
pub fn coloured_spec(revision: &str, workloads: serde_json::Value) -> RolloutSpec {
    let mut w = json!({ "colors": { "blue": "web-blue", "green": "web-green" } });
    if let (Some(map), serde_json::Value::Object(extra)) = (w.as_object_mut(), workloads) {
        map.extend(extra);
    }
    serde_json::from_value(json!({
        "revision": revision,
        "router": { "service": { "service": "web", "selectorKey": "color",
                                 "colors": { "blue": "blue", "green": "green" } } },
        "steps": [0, 100],
        "analysis": { "interval": "30s",
                      "metrics": [ { "name": "error-rate", "query": "e", "max": 0.01 } ] },
        "workloads": w
    }))
    .unwrap()
}

/// The Service's selector as colours: the share of users on green. Each oriented spec
/// sees it through a [`ColourView`] whose canary is one of the colours.
#[derive(Default)]
pub struct ColourRoute {
    /// (share on green, version, writes)
    inner: std::sync::Mutex<(u8, u64, u64)>,
}

impl ColourRoute {
    pub fn green(&self) -> u8 {
        self.inner.lock().unwrap().0
    }

    pub fn writes(&self) -> u64 {
        self.inner.lock().unwrap().2
    }
}

/// The colour route as the router of one oriented spec.
pub struct ColourView {
    route: Arc<ColourRoute>,
    canary_is_green: bool,
}

impl ColourView {
    pub fn of(route: &Arc<ColourRoute>, spec: &RolloutSpec) -> ColourView {
        let service = spec.router.service.as_ref().unwrap();
        ColourView {
            route: route.clone(),
            canary_is_green: service.canary_value == "green",
        }
    }

    fn canary_share(&self, green: u8) -> u8 {
        if self.canary_is_green {
            green
        } else {
            100 - green
        }
    }
}

#[async_trait]
impl shiftgate::router::TrafficRouter for ColourView {
    async fn read(&self) -> Result<shiftgate::router::LiveRoute, shiftgate::router::RouterError> {
        let (green, version, _) = *self.route.inner.lock().unwrap();
        Ok(shiftgate::router::LiveRoute {
            route: ManagedRoute {
                canary_weight: self.canary_share(green),
                test_route: false,
            },
            version: shiftgate::router::Version(version.to_string()),
        })
    }

    async fn apply(
        &self,
        expect: &shiftgate::router::Version,
        desired: ManagedRoute,
    ) -> Result<shiftgate::router::Version, shiftgate::router::RouterError> {
        let mut inner = self.route.inner.lock().unwrap();
        if expect.0 != inner.1.to_string() {
            return Err(shiftgate::router::RouterError::Conflict {
                what: format!("version {} expected, {} found", expect.0, inner.1),
            });
        }
        inner.0 = self.canary_share(desired.canary_weight);
        inner.1 += 1;
        inner.2 += 1;
        Ok(shiftgate::router::Version(inner.1.to_string()))
    }
}

/// One policy with colours: each tick orients the spec from the stored state and the
/// colour route, as the daemon does, then runs one reconciler tick with it.
pub struct ColourWorld {
    pub policy: PolicyRef,
    pub clock: Arc<VirtualClock>,
    pub route: Arc<ColourRoute>,
    pub commands: Arc<QueuedCommands>,
    store: Arc<MemoryStore>,
    workloads: Arc<KubeWorkloads>,
}

impl ColourWorld {
    pub async fn new(server: &KubeApiServer, namespace: &str) -> ColourWorld {
        let client = server
            .service_account_client(SHIFTGATE_NS, "shiftgate")
            .await;
        ColourWorld {
            policy: PolicyRef {
                namespace: namespace.to_owned(),
                name: "web".to_owned(),
            },
            clock: Arc::new(VirtualClock::new(
                chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
            )),
            route: Arc::new(ColourRoute::default()),
            commands: Arc::new(QueuedCommands::default()),
            store: Arc::new(MemoryStore::default()),
            workloads: Arc::new(KubeWorkloads::new(client, namespace)),
        }
    }

    /// Advances the clock by `secs`, orients `spec` and ticks once; also returns the
    /// oriented spec.
    pub async fn tick_after(&self, secs: i64, spec: &RolloutSpec) -> (TickOutcome, RolloutSpec) {
        use shiftgate::store::StateStore as _;
        self.clock.advance(chrono::Duration::seconds(secs));
        let stored = self.store.load(&self.policy).await.unwrap().map(|(s, _)| s);
        let route = self.route.clone();
        let oriented = shiftgate::runtime::colours::oriented(spec, stored.as_ref(), |s| {
            let view: Arc<dyn shiftgate::router::TrafficRouter> =
                Arc::new(ColourView::of(&route, s));
            Ok(view)
        })
        .await
        .unwrap();
        let outcome = self
            .reconciler(&oriented)
            .tick(&self.policy, &oriented)
            .await;
        (outcome.unwrap(), oriented)
    }

    /// [`ColourWorld::tick_after`] for a spec whose revision comes from the idle colour's
    /// Deployment (`revisionFrom` with colours), as the daemon does it: `None` while the
    /// idle colour holds no release (its baseline stored, nothing ticked).
    pub async fn tick_derived_after(
        &self,
        secs: i64,
        spec: &RolloutSpec,
    ) -> Option<(TickOutcome, RolloutSpec)> {
        use shiftgate::runtime::colours::{release_in_idle_colour, store_idle, ColourRelease};
        use shiftgate::store::StateStore as _;
        self.clock.advance(chrono::Duration::seconds(secs));
        let stored = self.store.load(&self.policy).await.unwrap().map(|(s, _)| s);
        let route = self.route.clone();
        let build = |s: &RolloutSpec| {
            let view: Arc<dyn shiftgate::router::TrafficRouter> =
                Arc::new(ColourView::of(&route, s));
            Ok::<_, shiftgate::router::RouterError>(view)
        };
        let release = release_in_idle_colour(spec, stored.as_ref(), build, self.workloads.as_ref());
        let oriented = match release.await.unwrap() {
            ColourRelease::Tick(oriented) => *oriented,
            ColourRelease::Idle(status) => {
                store_idle(self.store.as_ref(), &self.policy, &status)
                    .await
                    .unwrap();
                return None;
            }
        };
        let outcome = self
            .reconciler(&oriented)
            .tick(&self.policy, &oriented)
            .await;
        Some((outcome.unwrap(), oriented))
    }

    /// The stored state.
    pub async fn status(&self) -> Option<shiftgate::policy::RolloutStatus> {
        use shiftgate::store::StateStore as _;
        self.store.load(&self.policy).await.unwrap().map(|(s, _)| s)
    }

    fn reconciler(&self, oriented: &RolloutSpec) -> Reconciler {
        Reconciler::new(Seams {
            router: Arc::new(ColourView::of(&self.route, oriented)),
            metrics: Arc::new(Healthy),
            store: self.store.clone(),
            checks: Arc::new(ScriptedChecks::passing()),
            commands: self.commands.clone(),
            clock: self.clock.clone(),
        })
        .with_workloads(self.workloads.clone())
    }

    /// Ticks every 30 s until the rollout is promoted.
    pub async fn until_promoted(&self, spec: &RolloutSpec) -> TickOutcome {
        for _ in 0..10 {
            let (outcome, _) = self.tick_after(30, spec).await;
            if outcome.status.phase == shiftgate::policy::Phase::Promoted {
                return outcome;
            }
        }
        panic!("not promoted after 10 ticks");
    }
}
