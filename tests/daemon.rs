//! `shiftgate daemon` end to end against the in-repo test API server: the real kube
//! client, the real Istio router and kube status store, a scripted metric source, and
//! short analysis intervals. Every wait polls a condition with a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{Phase, RolloutPolicy, RolloutSpec, RolloutStatus, Timestamp};
use shiftgate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::SystemClock;
use shiftgate::runtime::commands_kube::{submit_command, KubeCommandSource};
use shiftgate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters, RouterFactory};
use shiftgate::runtime::leader::LeaseConfig;
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod support;

#[path = "daemon/binary.rs"]
mod binary;
#[path = "daemon/held_back.rs"]
mod held_back;
#[path = "daemon/rollouts.rs"]
mod rollouts;
#[path = "daemon/undecodable.rs"]
mod undecodable;
#[path = "daemon/workloads.rs"]
mod workloads;

const NS: &str = "shop";
/// Steps long enough that a rollout is still running when a test interrupts it.
const LONG_STEPS: [u8; 6] = [0, 20, 40, 60, 80, 100];

/// The canary's error rate, settable while a rollout runs; stable is always healthy.
struct ScriptedErrorRate {
    canary_error_rate: Mutex<f64>,
}

impl ScriptedErrorRate {
    fn new(rate: f64) -> Arc<Self> {
        Arc::new(ScriptedErrorRate {
            canary_error_rate: Mutex::new(rate),
        })
    }
}

#[async_trait]
impl MetricSource for ScriptedErrorRate {
    async fn observe(
        &self,
        _policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        _counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        let rate = *self.canary_error_rate.lock().unwrap();
        AnalysisInput {
            at,
            canary_requests: Sample::value(1000.0),
            metrics: spec
                .analysis
                .metrics
                .iter()
                .map(|m| MetricObservation {
                    name: m.name.clone(),
                    canary: Sample::value(rate),
                    stable: m.compare.as_ref().map(|_| Sample::value(0.001)),
                })
                .collect(),
        }
    }
}

/// Records every route write the router confirmed, per daemon.
#[derive(Default)]
struct WriteLog {
    writes: Mutex<Vec<(String, u8)>>,
}

impl WriteLog {
    fn weights(&self) -> Vec<u8> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .map(|(_, w)| *w)
            .collect()
    }

    fn by(&self, daemon: &str) -> Vec<u8> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d == daemon)
            .map(|(_, w)| *w)
            .collect()
    }
}

struct RecordingRouters {
    daemon: String,
    inner: KubeRouters,
    log: Arc<WriteLog>,
}

struct RecordingRouter {
    daemon: String,
    inner: Arc<dyn TrafficRouter>,
    log: Arc<WriteLog>,
}

impl RouterFactory for RecordingRouters {
    fn build(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
    ) -> Result<Arc<dyn TrafficRouter>, RouterError> {
        Ok(Arc::new(RecordingRouter {
            daemon: self.daemon.clone(),
            inner: self.inner.build(policy, spec)?,
            log: self.log.clone(),
        }))
    }
}

#[async_trait]
impl TrafficRouter for RecordingRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        self.inner.read().await
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        let version = self.inner.apply(expect, desired).await?;
        self.log
            .writes
            .lock()
            .unwrap()
            .push((self.daemon.clone(), desired.canary_weight));
        Ok(version)
    }
}

fn virtual_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    )
}

/// A VirtualService with more than shiftgate manages: another route, retries, a
/// timeout, headers, labels, an unknown field.
fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": "checkout", "namespace": NS, "labels": { "team": "payments" } },
        "spec": {
            "hosts": ["checkout.example.com"],
            "gateways": ["public"],
            "http": [
                {
                    "name": "admin",
                    "match": [{ "uri": { "prefix": "/admin" } }],
                    "route": [{ "destination": { "host": "checkout-admin" } }]
                },
                {
                    "name": "primary",
                    "retries": { "attempts": 3, "perTryTimeout": "2s" },
                    "timeout": "10s",
                    "headers": { "request": { "set": { "x-via": "mesh" } } },
                    "route": [
                        { "destination": { "host": "checkout", "subset": "v1" }, "weight": 100 },
                        { "destination": { "host": "checkout", "subset": "v2" }, "weight": 0 }
                    ],
                    "x-unknown-field": { "kept": true }
                }
            ]
        }
    })
}

fn policy(
    name: &str,
    steps: Value,
    virtual_service: &str,
    route: &str,
    canary_subset: &str,
) -> RolloutPolicy {
    let spec: RolloutSpec = serde_json::from_value(json!({
        "revision": "v2",
        "router": { "istio": {
            "virtualService": virtual_service,
            "routes": [route],
            "stable": { "host": "checkout", "subset": "v1" },
            "canary": { "host": "checkout", "subset": canary_subset }
        }},
        "steps": steps,
        "analysis": {
            "interval": "1s",
            "prometheus": { "address": "http://127.0.0.1:1" },
            "metrics": [ { "name": "error-rate", "query": "sum(rate(errors[1m]))", "max": 0.01 } ],
            "failureLimit": 0
        },
        "grafana": { "url": "https://grafana.example" }
    }))
    .unwrap();
    let mut policy = RolloutPolicy::new(name, spec);
    policy.metadata.namespace = Some(NS.to_owned());
    policy
}

struct Cluster {
    server: TestApiServer,
    log: Arc<WriteLog>,
}

impl Cluster {
    async fn start() -> Cluster {
        let server = TestApiServer::start().await.unwrap();
        let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
        server.put_object(&vs, virtual_service()).unwrap();
        Cluster {
            server,
            log: Arc::new(WriteLog::default()),
        }
    }

    fn policies(&self) -> Api<RolloutPolicy> {
        Api::namespaced(self.server.client().unwrap(), NS)
    }

    async fn create(&self, policy: &RolloutPolicy) {
        self.policies()
            .create(&PostParams::default(), policy)
            .await
            .unwrap();
    }

    /// Creates `policy(name, steps, …)` on the `primary` route of VirtualService
    /// `checkout`, rolling out `v2`: the rollout most tests drive.
    async fn create_on_checkout(&self, name: &str, steps: Value) {
        self.create(&policy(name, steps, "checkout", "primary", "v2"))
            .await;
    }

    /// Waits (10 s at most) until `pod` holds the leader Lease.
    async fn wait_for_leader(&self, pod: &str) {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.server.client().unwrap(), NS);
        let started = Instant::now();
        loop {
            if let Ok(lease) = leases.get("shiftgate").await {
                if lease.spec.and_then(|s| s.holder_identity).as_deref() == Some(pod) {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{pod} never led"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks for an undo of policy `name` (revision `v2`) as `kubectl` would.
    async fn undo(&self, name: &str) {
        submit_command(
            self.server.client().unwrap(),
            NS,
            name,
            shiftgate::engine::Command::Undo,
            "v2",
        )
        .await
        .unwrap();
    }

    /// The RolloutPolicy resource, untyped: a policy the daemon cannot decode is read
    /// and written through it.
    fn raw_policies(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.server.client().unwrap(),
            NS,
            &ApiResource::erase::<RolloutPolicy>(&()),
        )
    }

    /// Read untyped: the status of a policy whose spec does not decode is readable too.
    async fn status(&self, name: &str) -> RolloutStatus {
        let object = self.raw_policies().get(name).await.unwrap();
        match object.data.get("status") {
            Some(status) if !status.is_null() => serde_json::from_value(status.clone()).unwrap(),
            _ => RolloutStatus::default(),
        }
    }

    async fn virtual_service(&self) -> Value {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.server.client().unwrap(),
            NS,
            &virtual_service_resource(),
        );
        serde_json::to_value(api.get("checkout").await.unwrap()).unwrap()
    }

    /// The canary weights the API server committed, in order, consecutive repeats and
    /// the initial 0 left out. It counts a write whose writer was killed before the
    /// reply, which the client-side log cannot.
    fn committed_weights(&self) -> Vec<u8> {
        let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
        let mut weights: Vec<u8> = self
            .server
            .versions_of(&vs, Some(NS), "checkout")
            .iter()
            .map(|v| u8::try_from(canary_weight(v)).unwrap())
            .collect();
        weights.dedup();
        weights.retain(|w| *w != 0);
        weights
    }

    async fn wait_for_status(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        condition: impl Fn(&RolloutStatus) -> bool,
    ) -> RolloutStatus {
        let started = Instant::now();
        loop {
            let status = self.status(name).await;
            if condition(&status) {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; status: {}",
                serde_json::to_string_pretty(&status).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Events about `name`, in order.
    async fn events_about(&self, name: &str) -> Vec<Value> {
        let events = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.server.client().unwrap(), NS, &events);
        let mut list: Vec<Value> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .filter(|e| e["regarding"]["name"] == name)
            .collect();
        list.sort_by(|a, b| a["eventTime"].as_str().cmp(&b["eventTime"].as_str()));
        list
    }

    /// The type, reason and note of the Events about `name`, in order.
    async fn event_reasons(&self, name: &str) -> Vec<(String, String, String)> {
        self.events_about(name)
            .await
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_owned(),
                    e["reason"].as_str().unwrap_or("").to_owned(),
                    e["note"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    fn daemon(&self, identity: &str, metrics: Arc<ScriptedErrorRate>, lease: bool) -> Running {
        let client = self.server.client().unwrap();
        let options = DaemonOptions {
            namespace: Some(NS.to_owned()),
            pod_name: identity.to_owned(),
            concurrency: 4,
            lease: lease
                .then(|| LeaseConfig::new("shiftgate", NS, identity, Duration::from_secs(2))),
            resync: Duration::from_secs(30),
            shutdown_deadline: Duration::from_secs(5),
        };
        let store = KubeStatusStore::new(client.clone());
        let commands = KubeCommandSource::new(client.clone());
        let seams = DaemonSeams {
            client: client.clone(),
            routers: Arc::new(RecordingRouters {
                daemon: identity.to_owned(),
                inner: KubeRouters::new(client.clone()),
                log: self.log.clone(),
            }),
            metrics,
            store: Arc::new(store),
            commands: Arc::new(commands),
            checks: Arc::new(ScriptedChecks::passing()),
            clock: Arc::new(SystemClock),
        };
        let daemon = Daemon::new(options, seams);
        let health = daemon.health();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run(async move {
            let _ = stop_rx.await;
        }));
        Running {
            task,
            stop: Some(stop_tx),
            health,
        }
    }
}

struct Running {
    task: JoinHandle<Result<(), shiftgate::runtime::daemon::DaemonError>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    health: shiftgate::observe::http::Health,
}

impl Running {
    /// SIGTERM: in-flight reconciles finish, then it stops.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("daemon stops within its shutdown deadline")
            .unwrap();
        result.unwrap();
    }

    /// A crash: the daemon and every task it started are gone at once.
    fn kill(self) {
        self.task.abort();
    }
}

impl Running {
    /// `/readyz` says ready: the watch listed everything and the election settled.
    async fn wait_ready(&self) {
        let started = Instant::now();
        while let Err(missing) = self.health.readiness() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never ready: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn canary_weight(vs: &Value) -> u64 {
    vs["spec"]["http"][1]["route"][1]["weight"]
        .as_u64()
        .unwrap_or(0)
}

/// Steps are walked one by one: each write is the next step's weight.
fn assert_steps_in_order(writes: &[u8], steps: &[u8]) {
    let expected: Vec<u8> = steps.iter().copied().filter(|w| *w != 0).collect();
    assert_eq!(
        writes, expected,
        "route writes must be each step once, in order"
    );
}

/// A refused policy gets Accepted=False with `reason` and a Warning Event, and the
/// VirtualService is never written.
async fn assert_refused(cluster: &Cluster, name: &str, reason: &str, message_part: &str) {
    let status = cluster
        .wait_for_status(name, reason, Duration::from_secs(20), |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Accepted" && c.status == "False" && c.reason == reason)
        })
        .await;
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert!(
        condition.message.contains(message_part),
        "{reason}: message {:?} lacks {message_part:?}",
        condition.message
    );
    let events = cluster.event_reasons(name).await;
    assert!(
        events.iter().any(|(t, r, _)| t == "Warning" && r == reason),
        "no Warning {reason} event in {events:?}"
    );
}

fn condition(status: &RolloutStatus, reason: &str) -> Option<shiftgate::policy::status::Condition> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted" && c.status == "False" && c.reason == reason)
        .cloned()
}
