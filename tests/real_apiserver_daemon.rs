//! The daemon against a real kube-apiserver 1.20 (see tests/support/kube_apiserver.rs),
//! running as its ServiceAccount `shiftgate/shiftgate` with the RBAC shipped in deploy/
//! (applied with `kubectl apply -k deploy/`, as it is in the tree). Every write the
//! daemon makes — VirtualService patches, status patches, Events, the Lease — goes
//! through the real authorizer: a missing grant is a 403, and the rollout, the status,
//! the Events or the Lease this test waits for never appear. The metric source is
//! scripted (no Prometheus needed: what is under test is the Kubernetes path).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{Phase, RolloutPolicy, RolloutSpec, RolloutStatus, Timestamp};
use shiftgate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::SystemClock;
use shiftgate::runtime::commands_kube::KubeCommandSource;
use shiftgate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters, RouterFactory};
use shiftgate::runtime::leader::LeaseConfig;
use shiftgate::runtime::shards::Shards;
use shiftgate::store::kube::KubeStatusStore;
use support::kube_apiserver::KubeApiServer;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where deploy/ installs shiftgate (its ServiceAccount, and the Role for Leases).
const SHIFTGATE_NS: &str = "shiftgate";

fn server() -> &'static KubeApiServer {
    let server = KubeApiServer::shared();
    server.install();
    server
}

/// A healthy canary: every evaluation passes.
struct Healthy;

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
                    stable: m.compare.as_ref().map(|_| Sample::value(0.001)),
                })
                .collect(),
        }
    }
}

/// Every route write a daemon's router confirmed: (daemon, weight).
type WriteLog = Arc<Mutex<Vec<(String, u8)>>>;

struct RecordingRouters {
    daemon: String,
    inner: KubeRouters,
    log: WriteLog,
}

struct RecordingRouter {
    daemon: String,
    inner: Arc<dyn TrafficRouter>,
    log: WriteLog,
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
            .lock()
            .unwrap()
            .push((self.daemon.clone(), desired.canary_weight));
        Ok(version)
    }
}

struct Running {
    task: JoinHandle<Result<(), shiftgate::runtime::daemon::DaemonError>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("daemon stops within its shutdown deadline")
            .unwrap();
        result.unwrap();
    }

    /// A crash: the daemon and every task it started are gone at once, the Lease is
    /// not released.
    fn kill(self) {
        self.task.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A daemon authenticated as the shipped ServiceAccount, watching `namespace` (each
/// test its own; deploy/'s ClusterRoleBinding grants every namespace).
async fn start_daemon(
    server: &KubeApiServer,
    namespace: &str,
    identity: &str,
    lease: &str,
    log: &WriteLog,
) -> Running {
    start_sharded_daemon(server, namespace, identity, lease, log, Shards::ONE).await
}

/// [`start_daemon`] with `--shards`.
async fn start_sharded_daemon(
    server: &KubeApiServer,
    namespace: &str,
    identity: &str,
    lease: &str,
    log: &WriteLog,
    shards: Shards,
) -> Running {
    let client = server
        .service_account_client(SHIFTGATE_NS, "shiftgate")
        .await;
    let options = DaemonOptions {
        namespace: Some(namespace.to_owned()),
        pod_name: identity.to_owned(),
        concurrency: 4,
        lease: Some(LeaseConfig::new(
            lease,
            SHIFTGATE_NS,
            identity,
            Duration::from_secs(3),
        )),
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
            log: log.clone(),
        }),
        metrics: Arc::new(Healthy),
        store: Arc::new(store),
        commands: Arc::new(commands),
        checks: Arc::new(ScriptedChecks::passing()),
        clock: Arc::new(SystemClock),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(
        Daemon::new(options, seams)
            .with_shards(shards)
            .run(async move {
                let _ = stop_rx.await;
            }),
    );
    Running {
        task,
        stop: Some(stop_tx),
    }
}

fn vs_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    Api::namespaced_with(
        client,
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    )
}

/// A namespace with the VirtualService `checkout` (route `primary`: subsets v1 at 100,
/// v2 at 0) and the RolloutPolicy `checkout` walking `steps`.
async fn setup(server: &KubeApiServer, namespace: &str, steps: &[u8]) {
    server.create_namespace(namespace).await;
    let admin = server.admin_client().await;
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": { "name": "checkout", "labels": { "team": "payments" } },
        "spec": {
            "hosts": ["checkout.example.com"],
            "http": [{
                "name": "primary",
                "retries": { "attempts": 3, "perTryTimeout": "2s" },
                "route": [
                    { "destination": { "host": "checkout", "subset": "v1" }, "weight": 100 },
                    { "destination": { "host": "checkout", "subset": "v2" }, "weight": 0 }
                ]
            }]
        }
    }))
    .unwrap();
    vs_api(admin.clone(), namespace)
        .create(&PostParams::default(), &vs)
        .await
        .unwrap();
    let spec: RolloutSpec = serde_json::from_value(json!({
        "revision": "v2",
        "router": { "istio": {
            "virtualService": "checkout", "routes": ["primary"],
            "stable": { "host": "checkout", "subset": "v1" },
            "canary": { "host": "checkout", "subset": "v2" }
        }},
        "steps": steps,
        "analysis": {
            "interval": "1s",
            "prometheus": { "address": "http://127.0.0.1:1" },
            "metrics": [ { "name": "error-rate", "query": "sum(rate(errors[1m]))", "max": 0.01 } ]
        }
    }))
    .unwrap();
    let mut policy = RolloutPolicy::new("checkout", spec);
    policy.metadata.namespace = Some(namespace.to_owned());
    Api::<RolloutPolicy>::namespaced(admin, namespace)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
}

async fn status(server: &KubeApiServer, namespace: &str) -> RolloutStatus {
    let api: Api<RolloutPolicy> = Api::namespaced(server.admin_client().await, namespace);
    api.get("checkout")
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

async fn wait_for_status(
    server: &KubeApiServer,
    namespace: &str,
    what: &str,
    limit: Duration,
    condition: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let started = Instant::now();
    loop {
        let status = status(server, namespace).await;
        if condition(&status) {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; status: {}",
            serde_json::to_string_pretty(&status).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lease_holder(server: &KubeApiServer, lease: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(server.admin_client().await, SHIFTGATE_NS);
    leases.get(lease).await.ok()?.spec?.holder_identity
}

/// (reason, note, series count) of every Event about the policy, oldest first.
async fn events(server: &KubeApiServer, namespace: &str) -> Vec<(String, String, i64)> {
    let gvk = GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let api: Api<DynamicObject> = Api::namespaced_with(
        server.admin_client().await,
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "events"),
    );
    let mut list: Vec<Value> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .filter(|e| e["regarding"]["name"] == "checkout" && e["reportingController"] == "shiftgate")
        .collect();
    list.sort_by(|a, b| a["eventTime"].as_str().cmp(&b["eventTime"].as_str()));
    list.iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_owned(),
                e["note"].as_str().unwrap_or("").to_owned(),
                e["series"]["count"].as_i64().unwrap_or(1),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_as_its_service_account_walks_a_rollout_to_promoted() {
    let server = server();
    let namespace = "daemon-rollout";
    let steps = [10, 40, 70, 100];
    setup(server, namespace, &steps).await;
    let log = WriteLog::default();
    let daemon = start_daemon(server, namespace, "pod-a", "shiftgate-rollout-test", &log).await;
    let status = wait_for_status(
        server,
        namespace,
        "Promoted",
        Duration::from_secs(90),
        |s| s.phase == Phase::Promoted,
    )
    .await;
    assert_eq!(status.canary_weight, 100);
    let writes: Vec<u8> = log.lock().unwrap().iter().map(|(_, w)| *w).collect();
    assert_eq!(writes, steps, "each step written once, in order");
    let vs = serde_json::to_value(
        vs_api(server.admin_client().await, namespace)
            .get("checkout")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(vs["spec"]["http"][0]["route"][0]["weight"], 0);
    assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 100);
    assert_eq!(vs["spec"]["http"][0]["retries"]["attempts"], 3);
    assert_eq!(
        lease_holder(server, "shiftgate-rollout-test")
            .await
            .as_deref(),
        Some("pod-a")
    );

    // Events were created (a 403 on events would leave none), one per transition: each
    // step's advance is its own Event with its own note, none folded into another.
    let events = events(server, namespace).await;
    let reasons: Vec<&str> = events.iter().map(|(r, _, _)| r.as_str()).collect();
    assert!(reasons.contains(&"RolloutStarted"), "{events:?}");
    assert!(reasons.contains(&"Promoted"), "{events:?}");
    let advanced: Vec<&(String, String, i64)> = events
        .iter()
        .filter(|(r, _, _)| r == "StepAdvanced")
        .collect();
    assert_eq!(
        advanced.len(),
        steps.len() - 1,
        "one Event per advance: {events:?}"
    );
    for (i, (_, note, count)) in advanced.iter().enumerate() {
        assert_eq!(
            *count, 1,
            "an advance was folded into another Event: {events:?}"
        );
        let step = i + 2;
        assert!(
            note.contains(&format!("step {step}/{}", steps.len())),
            "advance {i} should name step {step}: {note}"
        );
    }
    // The printer column shows the step as the CLI and the notes count it.
    let column = server.kubectl_ok(&[
        "get",
        "rolloutpolicy",
        "checkout",
        "-n",
        namespace,
        "--no-headers",
        "-o",
        "custom-columns=STEP:.status.currentStep",
    ]);
    assert_eq!(column.trim(), format!("{}/{}", steps.len(), steps.len()));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_the_rollout_goes_on_without_repeating_a_step() {
    let server = server();
    let namespace = "daemon-leader";
    let lease = "shiftgate-leader-test";
    let steps = [0, 20, 40, 60, 80, 100];
    let log = WriteLog::default();
    let a = start_daemon(server, namespace, "pod-a", lease, &log).await;
    let started = Instant::now();
    while lease_holder(server, lease).await.as_deref() != Some("pod-a") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pod-a never led"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = start_daemon(server, namespace, "pod-b", lease, &log).await;
    setup(server, namespace, &steps).await;
    // The kill lands between writes, as the test means it: a kill during a write that
    // reached the API server but not the log would look like a skipped step.
    let last_write_of_a = || {
        log.lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(d, _)| d == "pod-a")
            .map(|(_, w)| *w)
    };
    wait_for_status(
        server,
        namespace,
        "step 3, its write done",
        Duration::from_secs(60),
        |s| s.step >= 2 && last_write_of_a() == steps.get(s.step as usize).copied(),
    )
    .await;
    let by = |daemon: &str| -> Vec<u8> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d == daemon)
            .map(|(_, w)| *w)
            .collect()
    };
    assert!(
        by("pod-b").is_empty(),
        "a follower wrote: {:?}",
        log.lock().unwrap()
    );
    a.kill();
    wait_for_status(
        server,
        namespace,
        "Promoted",
        Duration::from_secs(90),
        |s| s.phase == Phase::Promoted,
    )
    .await;
    assert_eq!(lease_holder(server, lease).await.as_deref(), Some("pod-b"));
    let writes: Vec<u8> = log.lock().unwrap().iter().map(|(_, w)| *w).collect();
    let expected: Vec<u8> = steps.iter().copied().filter(|w| *w != 0).collect();
    assert_eq!(
        writes, expected,
        "no step repeated or skipped across the takeover"
    );
    assert!(!by("pod-b").is_empty(), "pod-b took over");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rbac_grants_exactly_what_the_daemon_uses() {
    let server = server();
    let namespace = server.create_namespace("rbac-scope").await;
    let client = server
        .service_account_client(SHIFTGATE_NS, "shiftgate")
        .await;
    // Watching policies in every namespace is granted (the Deployment watches all).
    let all: Api<RolloutPolicy> = Api::all(client.clone());
    all.list(&ListParams::default()).await.unwrap();
    // The main resource of a policy is never written by the daemon: not granted.
    let own: Api<RolloutPolicy> = Api::namespaced(client.clone(), &namespace);
    let spec: RolloutSpec = serde_json::from_value(json!({
        "revision": "v1", "router": { "service": {
            "service": "checkout", "selectorKey": "color", "stableValue": "blue", "canaryValue": "green"
        }},
        "steps": [0, 100],
        "analysis": { "interval": "1s", "prometheus": { "address": "http://127.0.0.1:1" },
                      "metrics": [ { "name": "e", "query": "1", "max": 1 } ] }
    }))
    .unwrap();
    let refused = own
        .create(&PostParams::default(), &RolloutPolicy::new("x", spec))
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "{refused:?}"
    );
    // Leases only in shiftgate's own namespace.
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let refused = leases.get("anything").await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "{refused:?}"
    );
}

/// `--shards 2` as the shipped ServiceAccount with deploy/components/sharding's Role on
/// top: a missing grant (listing the Leases, the member Lease) would be a 403. Each
/// replica takes one shard Lease, and only the holder of the policy's shard writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sharded_replicas_as_the_service_account_split_the_shards() {
    let server = server();
    server.kubectl_ok(&[
        "apply",
        "-n",
        SHIFTGATE_NS,
        "-f",
        "deploy/components/sharding/role.yaml",
        "-f",
        "deploy/components/sharding/rolebinding.yaml",
    ]);
    let namespace = "daemon-shards";
    let steps = [10, 40, 70, 100];
    setup(server, namespace, &steps).await;
    let log = WriteLog::default();
    let shards = Shards::new(2).unwrap();
    let lease = "shiftgate-shards-test";
    let a = start_sharded_daemon(server, namespace, "pod-a", lease, &log, shards).await;
    let b = start_sharded_daemon(server, namespace, "pod-b", lease, &log, shards).await;
    let started = Instant::now();
    let holders = loop {
        let holders = [
            lease_holder(server, &shards.lease_name(lease, 0)).await,
            lease_holder(server, &shards.lease_name(lease, 1)).await,
        ];
        if holders
            .iter()
            .all(|h| h.as_deref().is_some_and(|h| !h.is_empty()))
            && holders[0] != holders[1]
        {
            break holders;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the replicas did not take one shard each: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_for_status(
        server,
        namespace,
        "Promoted",
        Duration::from_secs(90),
        |s| s.phase == Phase::Promoted,
    )
    .await;
    let driver = holders[shards.of(namespace, "checkout")].clone().unwrap();
    let writes = log.lock().unwrap().clone();
    assert!(
        writes.iter().all(|(by, _)| *by == driver),
        "only {driver}, the holder of the policy's shard, writes: {writes:?}"
    );
    let weights: Vec<u8> = writes.iter().map(|(_, w)| *w).collect();
    assert_eq!(weights, steps, "each step written once, in order");
    a.stop().await;
    b.stop().await;
}
