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

const NS: &str = "shop";

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

    /// The reasons of the Events about `name`, in order.
    async fn event_reasons(&self, name: &str) -> Vec<(String, String, String)> {
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
        list.iter()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_every_step_to_promoted_and_touches_only_the_weights() {
    let cluster = Cluster::start().await;
    let before = cluster.virtual_service().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    daemon.wait_ready().await;
    cluster
        .create(&policy(
            "checkout",
            json!([0, 50, 100]),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    let status = cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(40), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(status.canary_weight, 100);
    assert_steps_in_order(&cluster.log.weights(), &[0, 50, 100]);

    let mut after = cluster.virtual_service().await;
    assert_eq!(canary_weight(&after), 100);
    // Put the old weights back: nothing else may differ.
    after["spec"]["http"][1]["route"][0]["weight"] = json!(100);
    after["spec"]["http"][1]["route"][1]["weight"] = json!(0);
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);

    let events = cluster.event_reasons("checkout").await;
    let reasons: Vec<&str> = events.iter().map(|(_, r, _)| r.as_str()).collect();
    assert!(reasons.contains(&"RolloutStarted"), "{events:?}");
    assert!(reasons.contains(&"StepAdvanced"), "{events:?}");
    assert!(reasons.contains(&"Promoted"), "{events:?}");
    let (_, _, note) = events.iter().find(|(_, r, _)| r == "Promoted").unwrap();
    assert!(
        note.contains(
            "https://grafana.example/d/shiftgate-rollout?var-namespace=shop&var-name=checkout"
        ),
        "{note}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_canary_is_rolled_back_with_a_warning_event() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.2), false);
    cluster
        .create(&policy(
            "checkout",
            json!([0, 30, 100]),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    let status = cluster
        .wait_for_status("checkout", "RolledBack", Duration::from_secs(40), |s| {
            s.phase == Phase::RolledBack
        })
        .await;
    assert_eq!(status.canary_weight, 0);
    assert_eq!(canary_weight(&cluster.virtual_service().await), 0);
    assert_eq!(
        cluster.log.weights(),
        vec![30, 0],
        "one step, then one rollback write"
    );
    let events = cluster.event_reasons("checkout").await;
    let rolled_back = events
        .iter()
        .find(|(_, reason, _)| reason == "RolledBack")
        .unwrap_or_else(|| panic!("no RolledBack event in {events:?}"));
    assert_eq!(rolled_back.0, "Warning");
    assert!(rolled_back.2.contains("error-rate"), "{rolled_back:?}");
    daemon.stop().await;
}

const LONG_STEPS: [u8; 6] = [0, 20, 40, 60, 80, 100];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_daemon_resumes_from_the_status_without_repeating_a_step() {
    let cluster = Cluster::start().await;
    let metrics = ScriptedErrorRate::new(0.001);
    let first = cluster.daemon("pod-a", metrics.clone(), false);
    cluster
        .create(&policy(
            "checkout",
            json!(LONG_STEPS),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    cluster
        .wait_for_status("checkout", "step 2", Duration::from_secs(40), |s| {
            s.step >= 2
        })
        .await;
    first.stop().await;
    let second = cluster.daemon("pod-b", metrics, false);
    // Ready with policies already in the cache (the initial list is not empty).
    second.wait_ready().await;
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(60), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_steps_in_order(&cluster.log.weights(), &LONG_STEPS);
    assert!(
        !cluster.log.by("pod-b").is_empty(),
        "the second daemon continued"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_follower_continues_after_it_dies() {
    let cluster = Cluster::start().await;
    let metrics = ScriptedErrorRate::new(0.001);
    let a = cluster.daemon("pod-a", metrics.clone(), true);
    let started = Instant::now();
    // a must lead before b starts, so the roles are known.
    loop {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(cluster.server.client().unwrap(), NS);
        if let Ok(lease) = leases.get("shiftgate").await {
            if lease.spec.and_then(|s| s.holder_identity).as_deref() == Some("pod-a") {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pod-a never led"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = cluster.daemon("pod-b", metrics, true);
    cluster
        .create(&policy(
            "checkout",
            json!(LONG_STEPS),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    cluster
        .wait_for_status("checkout", "step 2", Duration::from_secs(40), |s| {
            s.step >= 2
        })
        .await;
    assert!(cluster.log.by("pod-b").is_empty(), "a follower wrote");
    // Killed mid-tick, a's last write may land without a reply: count it as landed.
    a.kill();
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(60), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_steps_in_order(&cluster.committed_weights(), &LONG_STEPS);
    assert!(!cluster.log.by("pod-b").is_empty(), "pod-b took over");
    b.stop().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_policies_get_a_condition_and_an_event_and_nothing_is_written() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create(&policy(
            "missing-vs",
            json!([0, 100]),
            "nope",
            "primary",
            "v2",
        ))
        .await;
    cluster
        .create(&policy(
            "missing-route",
            json!([0, 100]),
            "checkout",
            "nope",
            "v2",
        ))
        .await;
    cluster
        .create(&policy(
            "missing-destination",
            json!([0, 100]),
            "checkout",
            "primary",
            "v9",
        ))
        .await;
    cluster
        .create(&policy(
            "invalid",
            json!([0, 150]),
            "other",
            "primary",
            "v2",
        ))
        .await;
    assert_refused(&cluster, "missing-vs", "RouteInvalid", "nope").await;
    assert_refused(&cluster, "missing-route", "RouteInvalid", "nope").await;
    assert_refused(&cluster, "missing-destination", "RouteInvalid", "v9").await;
    assert_refused(&cluster, "invalid", "InvalidPolicy", "spec.steps").await;

    // Events are sent once per refusal, not per reconcile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = cluster.event_reasons("missing-vs").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(cluster
        .server
        .requests_matching("PATCH", "/virtualservices/")
        .is_empty());
    assert!(cluster.log.weights().is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_policy_on_the_same_route_is_refused() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create(&policy(
            "first",
            json!([0, 50, 100]),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    cluster
        .wait_for_status("first", "first accepted", Duration::from_secs(20), |s| {
            s.revision.is_some()
        })
        .await;
    cluster
        .create(&policy(
            "second",
            json!([0, 100]),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    assert_refused(&cluster, "second", "RouteConflict", "shop/first").await;
    cluster
        .wait_for_status("first", "Promoted", Duration::from_secs(40), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(
        cluster.log.weights(),
        vec![50, 100],
        "only the first policy wrote"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_step_waits_for_the_promote_annotation() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create(&policy(
            "checkout",
            json!([0, { "weight": 50, "pause": true }, 100]),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    cluster
        .wait_for_status("checkout", "Paused at 50%", Duration::from_secs(30), |s| {
            s.phase == Phase::Paused && s.canary_weight == 50
        })
        .await;
    // Paused means paused: nothing moves while nobody decides.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.status("checkout").await.phase, Phase::Paused);
    assert_eq!(cluster.log.weights(), vec![50]);
    submit_command(
        cluster.server.client().unwrap(),
        NS,
        "checkout",
        shiftgate::engine::Command::Promote,
        "v2",
    )
    .await
    .unwrap();
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(30), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(cluster.log.weights(), vec![50, 100]);
    daemon.stop().await;
}

/// `GET path` on 127.0.0.1:port over plain HTTP/1.0; the whole response.
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

fn status_code(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The built binary, configured by environment variables only, against the test API
/// server: it serves /readyz and /metrics, leads, promotes, and on SIGTERM stops with
/// exit code 0 after releasing its Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_health_and_metrics_and_stops_cleanly_on_sigterm() {
    let cluster = Cluster::start().await;
    let prometheus = support::prometheus_stand_in::healthy_prometheus_stand_in().await;
    let mut spec = policy("checkout", json!([0, 50, 100]), "checkout", "primary", "v2");
    spec.spec.analysis.prometheus = None; // from --prometheus (SHIFTGATE_PROMETHEUS)
    spec.spec.analysis.metrics = serde_json::from_value(json!([
        { "name": "error-rate", "template": "istio-error-rate", "max": 0.01 }
    ]))
    .unwrap();
    cluster.create(&spec).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.server.write_kubeconfig(dir.path(), NS).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("daemon")
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "pod-cli")
        .env("SHIFTGATE_NAMESPACE", NS)
        .env("SHIFTGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SHIFTGATE_PROMETHEUS", &prometheus)
        .env("SHIFTGATE_LEASE_NAMESPACE", NS)
        .env("SHIFTGATE_LEASE_DURATION", "3s")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let started = Instant::now();
    loop {
        let response = http_get(port, "/readyz").await;
        if status_code(&response) == Some(200) {
            break;
        }
        let exited = child.0.try_wait().unwrap();
        assert!(
            exited.is_none() && started.elapsed() < Duration::from_secs(20),
            "the daemon never became ready (exit: {exited:?}); /readyz: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_code(&http_get(port, "/healthz").await), Some(200));
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(40), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    let metrics = http_get(port, "/metrics").await;
    assert!(metrics.contains("shiftgate_leader 1"), "{metrics}");
    assert!(
        metrics.contains(r#"shiftgate_rollouts_total{result="promoted"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"shiftgate_canary_weight_ratio{namespace="shop",name="checkout"} 1"#),
        "{metrics}"
    );
    // No Accept header: the text format 0.0.4, which promtool's linter accepts.
    let body = metrics.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {checked:?}\n{body}"
    );

    let pid = child.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopped = Instant::now();
    let code = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.server.client().unwrap(), NS);
    let lease = leases.get("shiftgate").await.unwrap().spec.unwrap();
    assert_eq!(
        lease.holder_identity, None,
        "the Lease was not released on SIGTERM"
    );
}

/// `policy(..)` as the API server stores it, with `spec.<field>` replaced by `bad`: a
/// value the CRD schema lets through but the Rust types cannot read.
fn undecodable_policy(name: &str, virtual_service: &str, pointer: &str, bad: Value) -> Value {
    let mut object = serde_json::to_value(policy(
        name,
        json!([0, 100]),
        virtual_service,
        "primary",
        "v2",
    ))
    .unwrap();
    *object.pointer_mut(pointer).unwrap() = bad;
    object
}

fn condition(status: &RolloutStatus, reason: &str) -> Option<shiftgate::policy::status::Condition> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted" && c.status == "False" && c.reason == reason)
        .cloned()
}

/// One policy the types cannot read (in the initial list, and one more arriving by
/// watch) must not stall the others: the good policy is promoted, each bad one gets
/// Accepted=False InvalidPolicy naming its field and one Warning Event, and its
/// VirtualService is never read or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_policy_is_refused_and_does_not_stall_the_others() {
    let cluster = Cluster::start().await;
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    let mut legacy = virtual_service();
    legacy["metadata"]["name"] = json!("legacy");
    cluster.server.put_object(&vs, legacy).unwrap();
    let raw = cluster.raw_policies();
    let create = |object: Value| {
        let raw = raw.clone();
        async move {
            raw.create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .unwrap();
        }
    };
    // Before the daemon starts: a typed list would fail on it, on every retry.
    create(undecodable_policy(
        "broken-steps",
        "legacy",
        "/spec/steps",
        json!(["abc"]),
    ))
    .await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    daemon.wait_ready().await;
    create(undecodable_policy(
        "broken-interval",
        "legacy",
        "/spec/analysis/interval",
        json!("5 parsecs"),
    ))
    .await;
    cluster
        .create(&policy(
            "checkout",
            json!([0, 50, 100]),
            "checkout",
            "primary",
            "v2",
        ))
        .await;

    for (name, field) in [
        ("broken-steps", "spec.steps[0]"),
        ("broken-interval", "spec.analysis.interval"),
    ] {
        let status = cluster
            .wait_for_status(name, "InvalidPolicy", Duration::from_secs(20), |s| {
                condition(s, "InvalidPolicy").is_some()
            })
            .await;
        let refused = condition(&status, "InvalidPolicy").unwrap();
        assert!(
            refused.message.starts_with(&format!("{field}: ")),
            "{name}: the message names the field first: {:?}",
            refused.message
        );
        assert!(
            refused.message.contains("apply it again"),
            "{name}: the message says what to do: {:?}",
            refused.message
        );
        assert_eq!(refused.observed_generation, Some(1), "{name}");
    }
    let status = cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(40), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert!(condition(&status, "InvalidPolicy").is_none());
    assert_steps_in_order(&cluster.log.weights(), &[0, 50, 100]);

    for name in ["broken-steps", "broken-interval"] {
        let events = cluster.event_reasons(name).await;
        assert_eq!(events.len(), 1, "{name}: exactly one Event: {events:?}");
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_str()),
            ("Warning", "InvalidPolicy"),
            "{name}"
        );
        assert!(events[0].2.contains("spec."), "{name}: {events:?}");
    }
    assert!(
        cluster
            .server
            .requests_matching("*", "/virtualservices/legacy")
            .is_empty(),
        "the route of an undecodable policy was touched"
    );
    daemon.stop().await;
}

/// A policy edited mid-rollout into one the types cannot read stops being driven: no
/// further route writes, the route keeps its live weights, and the policy gets
/// Accepted=False InvalidPolicy naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_edited_into_an_undecodable_one_mid_rollout_is_no_longer_driven() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create(&policy(
            "checkout",
            json!(LONG_STEPS),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    cluster
        .wait_for_status("checkout", "step 2", Duration::from_secs(40), |s| {
            s.step >= 2
        })
        .await;
    cluster
        .raw_policies()
        .patch(
            "checkout",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "steps": [0, 20, "forty", 100] } })),
        )
        .await
        .unwrap();
    let status = cluster
        .wait_for_status("checkout", "InvalidPolicy", Duration::from_secs(20), |s| {
            condition(s, "InvalidPolicy").is_some()
        })
        .await;
    let refused = condition(&status, "InvalidPolicy").unwrap();
    assert!(
        refused.message.starts_with("spec.steps[2]: "),
        "{:?}",
        refused.message
    );
    let writes = cluster.log.weights();
    let live = canary_weight(&cluster.virtual_service().await);
    assert_eq!(Some(&(live as u8)), writes.last(), "{writes:?}");
    // Several analysis intervals (1s): a driven rollout would advance in this time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        cluster.log.weights(),
        writes,
        "the rollout was still driven"
    );
    assert_eq!(canary_weight(&cluster.virtual_service().await), live);
    let after = cluster.status("checkout").await;
    assert_ne!(after.phase, Phase::Promoted);
    let events = cluster.event_reasons("checkout").await;
    let invalid: Vec<_> = events
        .iter()
        .filter(|(_, r, _)| r == "InvalidPolicy")
        .collect();
    assert_eq!(invalid.len(), 1, "{events:?}");
    daemon.stop().await;
}

/// With two replicas, only the leader writes an undecodable policy's refusal: one
/// Warning Event, reported by the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_refuses_an_undecodable_policy() {
    let cluster = Cluster::start().await;
    let metrics = ScriptedErrorRate::new(0.001);
    let a = cluster.daemon("pod-a", metrics.clone(), true);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.server.client().unwrap(), NS);
    let started = Instant::now();
    loop {
        if let Ok(lease) = leases.get("shiftgate").await {
            if lease.spec.and_then(|s| s.holder_identity).as_deref() == Some("pod-a") {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pod-a never led"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = cluster.daemon("pod-b", metrics, true);
    b.wait_ready().await;
    cluster
        .raw_policies()
        .create(
            &PostParams::default(),
            &serde_json::from_value(undecodable_policy(
                "broken",
                "checkout",
                "/spec/steps",
                json!([0, "half"]),
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    cluster
        .wait_for_status("broken", "InvalidPolicy", Duration::from_secs(20), |s| {
            condition(s, "InvalidPolicy").is_some()
        })
        .await;
    // Both replicas have seen it by now; give a wrongly writing follower time to act.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events: Api<DynamicObject> = Api::namespaced_with(
        cluster.server.client().unwrap(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    );
    let instances: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .filter(|e| e["regarding"]["name"] == "broken")
        .map(|e| e["reportingInstance"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(instances, ["pod-a"], "one Event, from the leader");
    assert!(cluster.log.weights().is_empty());
    a.stop().await;
    b.stop().await;
}

/// `revisionFrom` of a canary Deployment that does not exist: refused with the
/// Deployment named, nothing written; once it exists, the revision is its template's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_from_a_missing_deployment_is_refused_until_it_exists() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    let mut derived = policy("derived", json!([0, 100]), "checkout", "primary", "v2");
    derived.spec.revision = String::new();
    derived.spec.workloads = serde_json::from_value(json!({
        "stable": "web-blue", "canary": "web-green", "revisionFrom": "canaryDeployment"
    }))
    .unwrap();
    cluster.create(&derived).await;
    assert_refused(&cluster, "derived", "InvalidPolicy", "web-green").await;
    assert!(cluster.log.weights().is_empty());

    let deployments = ResourceRef::new("apps", "v1", "deployments");
    for name in ["web-blue", "web-green"] {
        cluster
            .server
            .put_object(
                &deployments,
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": { "name": name, "namespace": NS },
                    "spec": { "replicas": 1, "selector": { "matchLabels": { "app": name } },
                              "template": { "metadata": { "labels": { "app": name } },
                                            "spec": { "containers": [{ "name": "web", "image": "registry.example/web:7" }] } } },
                    "status": { "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1 }
                }),
            )
            .unwrap();
    }
    let status = cluster
        .wait_for_status(
            "derived",
            "the derived revision",
            Duration::from_secs(30),
            |s| {
                s.revision
                    .as_deref()
                    .is_some_and(|r| r.starts_with("web:7@"))
            },
        )
        .await;
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status == "True"),
        "{:?}",
        status.conditions
    );
    daemon.stop().await;
}

/// What `undo` looks at before flipping back onto subset `v1` of host `checkout`: its
/// DestinationRule labels, a ready pod carrying them, a ready endpoint of the Service.
fn previous_subset_runs(server: &TestApiServer) {
    server
        .put_object(
            &ResourceRef::new("networking.istio.io", "v1", "destinationrules"),
            json!({ "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                    "metadata": { "name": "checkout", "namespace": NS },
                    "spec": { "host": "checkout", "subsets": [
                        { "name": "v1", "labels": { "version": "v1" } },
                        { "name": "v2", "labels": { "version": "v2" } } ] } }),
        )
        .unwrap();
    server
        .put_object(
            &ResourceRef::new("", "v1", "pods"),
            json!({ "apiVersion": "v1", "kind": "Pod",
                    "metadata": { "name": "checkout-v1-0", "namespace": NS,
                                  "labels": { "version": "v1" } },
                    "spec": { "containers": [ { "name": "app", "image": "checkout:1" } ] },
                    "status": { "conditions": [ { "type": "Ready", "status": "True" } ] } }),
        )
        .unwrap();
    server
        .put_object(
            &ResourceRef::new("discovery.k8s.io", "v1", "endpointslices"),
            json!({ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": { "name": "checkout-x1", "namespace": NS,
                                  "labels": { "kubernetes.io/service-name": "checkout" } },
                    "addressType": "IPv4",
                    "endpoints": [ { "addresses": ["10.0.0.1"], "conditions": { "ready": true },
                                     "targetRef": { "kind": "Pod", "name": "checkout-v1-0" } } ] }),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_a_promotion_flips_back_in_one_write_with_an_event() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create(&policy(
            "checkout",
            json!([0, 50, 100]),
            "checkout",
            "primary",
            "v2",
        ))
        .await;
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(30), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(cluster.log.weights(), vec![50, 100]);
    previous_subset_runs(&cluster.server);
    submit_command(
        cluster.server.client().unwrap(),
        NS,
        "checkout",
        shiftgate::engine::Command::Undo,
        "v2",
    )
    .await
    .unwrap();
    let undone = cluster
        .wait_for_status("checkout", "undone", Duration::from_secs(30), |s| {
            s.phase == Phase::RolledBack
        })
        .await;
    assert_eq!(undone.reason.as_deref(), Some("Undone"));
    assert_eq!(undone.canary_weight, 0);
    assert_eq!(
        cluster.log.weights(),
        vec![50, 100, 0],
        "one write back to the previous stable"
    );
    assert_eq!(canary_weight(&cluster.virtual_service().await), 0);
    let events = cluster.event_reasons("checkout").await;
    assert!(
        events.iter().any(|(kind, reason, note)| kind == "Warning"
            && reason == "RolledBack"
            && note.contains("undo by an operator")),
        "{events:?}"
    );
    // Nothing is left to undo: a second one is refused with an Event, nothing written.
    submit_command(
        cluster.server.client().unwrap(),
        NS,
        "checkout",
        shiftgate::engine::Command::Undo,
        "v2",
    )
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let events = cluster.event_reasons("checkout").await;
        if events
            .iter()
            .any(|(_, reason, note)| reason == "CommandRefused" && note.contains("already undone"))
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cluster.log.weights(), vec![50, 100, 0]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_alternates_colours_with_only_the_revision_changed() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    let mut policy = policy("checkout", json!([0, 50, 100]), "checkout", "primary", "v2");
    let spec = serde_json::to_value(&policy.spec).unwrap();
    let mut spec = spec.as_object().unwrap().clone();
    spec["router"]["istio"]
        .as_object_mut()
        .map(|istio| {
            istio.remove("stable");
            istio.remove("canary");
            istio.insert(
                "colors".into(),
                json!({
                    "blue": { "host": "checkout", "subset": "v1" },
                    "green": { "host": "checkout", "subset": "v2" }
                }),
            );
        })
        .unwrap();
    policy.spec = serde_json::from_value(Value::Object(spec)).unwrap();
    cluster.create(&policy).await;
    // Blue (subset v1) serves everyone: v2 goes to green.
    let first = cluster
        .wait_for_status("checkout", "v2 Promoted", Duration::from_secs(30), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(first.canary_color.as_deref(), Some("green"));
    assert_eq!(first.live_color.as_deref(), Some("green"));
    let vs = cluster.virtual_service().await;
    assert_eq!(vs["spec"]["http"][1]["route"][1]["weight"], 100, "{vs:#}");
    // Only the revision changes: v3 goes to blue, the colour v2 left idle.
    let mut next = cluster.policies().get("checkout").await.unwrap();
    next.spec.revision = "v3".into();
    cluster
        .policies()
        .replace("checkout", &PostParams::default(), &next)
        .await
        .unwrap();
    let second = cluster
        .wait_for_status("checkout", "v3 Promoted", Duration::from_secs(30), |s| {
            s.revision.as_deref() == Some("v3") && s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(second.stable_color.as_deref(), Some("green"));
    assert_eq!(second.canary_color.as_deref(), Some("blue"));
    assert_eq!(second.live_color.as_deref(), Some("blue"));
    let vs = cluster.virtual_service().await;
    assert_eq!(vs["spec"]["http"][1]["route"][0]["weight"], 100, "{vs:#}");
    assert_eq!(vs["spec"]["http"][1]["route"][1]["weight"], 0, "{vs:#}");
    assert_eq!(cluster.log.weights(), vec![50, 100, 50, 100]);
    daemon.stop().await;
}

/// A Deployment of colour `name` running `image`, available (the test plays the
/// Deployment controller: whatever generation the server gives it is observed).
fn colour_deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": name } },
                  "template": { "metadata": { "labels": { "app": name } },
                                "spec": { "containers": [{ "name": "web", "image": image }] } } },
        "status": { "observedGeneration": 1000, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1 }
    })
}

/// Colours with `revisionFrom`: the daemon takes what the idle colour runs as its
/// baseline and starts nothing; a new image there starts the rollout; after the flip
/// the colour users left (still on the release before) is not rolled out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rolls_out_what_is_deployed_into_the_idle_colour() {
    let cluster = Cluster::start().await;
    let deployments = ResourceRef::new("apps", "v1", "deployments");
    for (name, image) in [("web-blue", "web:1"), ("web-green", "web:0")] {
        cluster
            .server
            .put_object(&deployments, colour_deployment(name, image))
            .unwrap();
    }
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    let mut policy = policy("checkout", json!([0, 100]), "checkout", "primary", "v2");
    let mut spec = serde_json::to_value(&policy.spec).unwrap();
    let istio = spec["router"]["istio"].as_object_mut().unwrap();
    istio.remove("stable");
    istio.remove("canary");
    istio.insert(
        "colors".into(),
        json!({
            "blue": { "host": "checkout", "subset": "v1" },
            "green": { "host": "checkout", "subset": "v2" }
        }),
    );
    spec["workloads"] = json!({
        "colors": { "blue": "web-blue", "green": "web-green" },
        "revisionFrom": "canaryDeployment"
    });
    spec.as_object_mut().unwrap().remove("revision");
    policy.spec = serde_json::from_value(spec).unwrap();
    cluster.create(&policy).await;
    let waiting = cluster
        .wait_for_status(
            "checkout",
            "the idle colour's baseline",
            Duration::from_secs(30),
            |s| s.reason.as_deref() == Some("WaitingForRelease"),
        )
        .await;
    assert!(
        waiting.message.as_deref().unwrap().contains("web-green"),
        "{waiting:?}"
    );
    assert!(cluster.log.weights().is_empty());

    // A new image in green, the idle colour. The daemon looks at Deployments at its
    // resync (30 s here); any change of the policy makes it look now.
    let nudge = |n: u32| {
        let policies = cluster.policies();
        async move {
            let mut current = policies.get("checkout").await.unwrap();
            current
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert("test.example/nudge".into(), n.to_string());
            policies
                .replace("checkout", &PostParams::default(), &current)
                .await
                .unwrap();
        }
    };
    cluster
        .server
        .put_object(&deployments, colour_deployment("web-green", "web:2"))
        .unwrap();
    nudge(1).await;
    let first = cluster
        .wait_for_status("checkout", "web:2 Promoted", Duration::from_secs(30), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert!(
        first.revision.as_deref().unwrap().starts_with("web:2@"),
        "{first:?}"
    );
    assert_eq!(first.live_color.as_deref(), Some("green"));
    assert_eq!(cluster.log.weights(), vec![100]);

    // Blue, idle now, still runs web:1: looked at again, it is not rolled out.
    nudge(2).await;
    let baseline = cluster
        .wait_for_status(
            "checkout",
            "blue's baseline",
            Duration::from_secs(30),
            |s| {
                s.workloads
                    .as_ref()
                    .and_then(|w| w.idle_baseline.as_ref())
                    .is_some_and(|b| b.color == "blue" && b.revision.starts_with("web:1@"))
            },
        )
        .await;
    assert_eq!(baseline.revision, first.revision);
    assert_eq!(cluster.log.weights(), vec![100]);

    // A new image in blue: the next release goes there by itself.
    cluster
        .server
        .put_object(&deployments, colour_deployment("web-blue", "web:3"))
        .unwrap();
    nudge(3).await;
    let second = cluster
        .wait_for_status("checkout", "web:3 Promoted", Duration::from_secs(30), |s| {
            s.revision
                .as_deref()
                .is_some_and(|r| r.starts_with("web:3@"))
                && s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(second.live_color.as_deref(), Some("blue"));
    assert_eq!(cluster.log.weights(), vec![100, 100]);
    daemon.stop().await;
}
