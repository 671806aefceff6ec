//! Issue "scale" §1–2: what one evaluation costs the API server. The daemon runs in
//! process against the in-repo test API server (which records every request), with
//! the production routers, status store and command source and a healthy scripted
//! metric source at a 1 s interval; the requests of a few steady-state evaluations
//! are counted by verb and resource.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{RolloutSpec, Timestamp};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::SystemClock;
use shiftgate::runtime::commands_kube::KubeCommandSource;
use shiftgate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters};
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::testkit::apiserver::{RecordedRequest, ResourceRef, TestApiServer};
use tokio::time::Instant;

const NS: &str = "scale";

/// A healthy canary; counts the evaluations.
#[derive(Default)]
struct Healthy {
    evaluations: AtomicUsize,
}

#[async_trait]
impl MetricSource for Healthy {
    async fn observe(
        &self,
        _policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        _counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        self.evaluations.fetch_add(1, Ordering::SeqCst);
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

fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": "checkout", "namespace": NS },
        "spec": {
            "hosts": ["checkout.example.com"],
            "http": [{
                "name": "primary",
                "route": [
                    { "destination": { "host": "checkout", "subset": "v1" }, "weight": 100 },
                    { "destination": { "host": "checkout", "subset": "v2" }, "weight": 0 }
                ]
            }]
        }
    })
}

fn policy(steps: Value, target_labels: bool) -> Value {
    let mut analysis = json!({
        "interval": "1s",
        "prometheus": { "address": "http://127.0.0.1:1" },
        "metrics": [ { "name": "error-rate", "query": "sum(rate(errors[1m]))", "max": 0.01 } ]
    });
    if target_labels {
        analysis["targetLabels"] = json!({
            "stable": { "destination_version": "v1" },
            "canary": { "destination_version": "v2" }
        });
    }
    json!({
        "apiVersion": "shiftgate.dev/v1alpha1",
        "kind": "RolloutPolicy",
        "metadata": { "name": "checkout", "namespace": NS },
        "spec": {
            "revision": "v2",
            "router": { "istio": {
                "virtualService": "checkout",
                "routes": ["primary"],
                "stable": { "host": "checkout", "subset": "v1" },
                "canary": { "host": "checkout", "subset": "v2" }
            }},
            "steps": steps,
            "analysis": analysis
        }
    })
}

/// The requests the daemon made during `evaluations` evaluations, once the rollout
/// reached the state `ready` describes.
pub(super) struct Window {
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) evaluations: usize,
}

impl Window {
    /// Requests (watches aside) with this verb whose path ends so.
    pub(super) fn count(&self, method: &str, path_ends: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.method == method && !r.path.contains("watch=true"))
            .filter(|r| r.path.split('?').next().unwrap_or("").ends_with(path_ends))
            .count()
    }

    pub(super) fn describe(&self) -> String {
        let lines: Vec<String> = self
            .requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path.split('?').next().unwrap_or("")))
            .collect();
        format!("{} evaluations: {lines:#?}", self.evaluations)
    }
}

/// The test API server with the VirtualService and `policy`, and the daemon driving it
/// with `source` for its metrics.
async fn start_daemon(
    policy: Value,
    source: Arc<dyn MetricSource>,
) -> (TestApiServer, tokio::task::JoinHandle<()>) {
    let server = TestApiServer::start().await.unwrap();
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    let rp = ResourceRef::new("shiftgate.dev", "v1alpha1", "rolloutpolicies");
    server.put_object(&vs, virtual_service()).unwrap();
    server.put_object(&rp, policy).unwrap();
    let client = server.client().unwrap();
    let options = DaemonOptions {
        namespace: Some(NS.to_owned()),
        pod_name: "pod-a".to_owned(),
        concurrency: 4,
        lease: None,
        resync: Duration::from_secs(30),
        shutdown_deadline: Duration::from_secs(5),
    };
    let seams = DaemonSeams {
        client: client.clone(),
        routers: Arc::new(KubeRouters::new(client.clone())),
        metrics: source,
        store: Arc::new(KubeStatusStore::new(client.clone())),
        commands: Arc::new(KubeCommandSource::new(client.clone())),
        checks: Arc::new(ScriptedChecks::passing()),
        clock: Arc::new(SystemClock),
    };
    let daemon = tokio::spawn(async move {
        let _ = Daemon::new(options, seams)
            .run(std::future::pending())
            .await;
    });
    (server, daemon)
}

async fn measure(policy: Value, ready: impl Fn(&Value) -> bool, evaluations: usize) -> Window {
    let metrics = Arc::new(Healthy::default());
    let (server, daemon) = start_daemon(policy, metrics.clone()).await;
    let rp = ResourceRef::new("shiftgate.dev", "v1alpha1", "rolloutpolicies");
    let started = Instant::now();
    loop {
        let object = server.get_object(&rp, Some(NS), "checkout").unwrap();
        if ready(&object["status"]) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the rollout never got there: {}",
            object["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Start counting right after an evaluation, stop right after the `evaluations`-th.
    let wait_for = |count: usize| {
        let metrics = metrics.clone();
        async move {
            let started = Instant::now();
            while metrics.evaluations.load(Ordering::SeqCst) < count {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "evaluations stopped"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let first = metrics.evaluations.load(Ordering::SeqCst) + 1;
    wait_for(first).await;
    // Let that evaluation's writes land before counting starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.clear_requests();
    wait_for(first + evaluations).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = server.requests();
    daemon.abort();
    Window {
        requests,
        evaluations,
    }
}

/// Holding at 50 % for ten minutes: every evaluation passes and changes nothing a
/// user sees. `target_labels: false`: a subset-level policy whose metric labels come
/// from the DestinationRule.
async fn holding(target_labels: bool) -> Window {
    measure(
        policy(
            json!([0, { "weight": 50, "hold": "10m" }, 100]),
            target_labels,
        ),
        |status| status["canaryWeight"] == 50 && status["lastAnalysis"].is_object(),
        3,
    )
    .await
}

/// Each evaluation passes and moves the weight by 5 %.
pub(super) async fn progressing() -> Window {
    let steps: Vec<u8> = (0..=20).map(|s| s * 5).collect();
    measure(
        policy(json!(steps), true),
        |status| status["canaryWeight"].as_u64().is_some_and(|w| w >= 10),
        3,
    )
    .await
}

/// The policy was read with two GETs per evaluation (its status, then its command
/// annotations) although the controller's watch holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_is_read_twice_per_evaluation() {
    let window = holding(true).await;
    assert_eq!(
        window.count("GET", "/rolloutpolicies/checkout"),
        0,
        "{}",
        window.describe()
    );
}

/// The VirtualService was read, then read again right before each patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_service_is_read_twice_before_a_patch() {
    let window = progressing().await;
    assert_eq!(
        window.count("GET", "/virtualservices/checkout"),
        0,
        "{}",
        window.describe()
    );
    assert_eq!(
        window.count("PATCH", "/virtualservices/checkout"),
        window.evaluations,
        "{}",
        window.describe()
    );
}

/// A subset-level policy listed every DestinationRule of its namespace twice per
/// evaluation (once per subset) to find the subsets' version labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rules_are_listed_twice_per_evaluation() {
    let window = holding(false).await;
    assert_eq!(
        window.count("GET", "/destinationrules"),
        0,
        "{}",
        window.describe()
    );
}

/// An evaluation that changes nothing a user sees costs at most one request (the
/// status with the new `lastAnalysis`), and no read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_costs_four_requests_per_evaluation() {
    let window = holding(true).await;
    let requests: Vec<_> = window
        .requests
        .iter()
        .filter(|r| !r.path.contains("watch=true"))
        .collect();
    assert!(
        requests.len() <= window.evaluations,
        "{}",
        window.describe()
    );
    assert_eq!(
        window.count("PATCH", "/rolloutpolicies/checkout/status"),
        window.evaluations,
        "{}",
        window.describe()
    );
}

/// A healthy source that notes the policies it evaluated and those the daemon tells it
/// to forget.
#[derive(Default)]
struct NotesForgotten {
    healthy: Healthy,
    evaluated: std::sync::Mutex<std::collections::BTreeSet<String>>,
    forgotten: std::sync::Mutex<Vec<PolicyRef>>,
}

impl NotesForgotten {
    /// Waits (30 s at most) for the first evaluation.
    async fn evaluated(&self) {
        let started = Instant::now();
        while self.healthy.evaluations.load(Ordering::SeqCst) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never evaluated"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (30 s at most) until a policy is forgotten; it must be `checkout` alone.
    async fn forgot_checkout_only(&self, never: &str) {
        let started = Instant::now();
        loop {
            let forgotten = self.forgotten.lock().unwrap().clone();
            if !forgotten.is_empty() {
                assert_eq!(
                    forgotten,
                    vec![PolicyRef {
                        namespace: NS.to_owned(),
                        name: "checkout".to_owned()
                    }]
                );
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{never}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[async_trait]
impl MetricSource for NotesForgotten {
    async fn observe(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        self.evaluated.lock().unwrap().insert(policy.name.clone());
        self.healthy.observe(policy, spec, at, counts_since).await
    }

    fn forget(&self, policy: &PolicyRef) {
        self.forgotten.lock().unwrap().push(policy.clone());
    }
}

/// A daemon with one subset-level policy holding at 50 %, once it has been evaluated.
async fn holding_and_evaluated() -> (
    Arc<NotesForgotten>,
    TestApiServer,
    tokio::task::JoinHandle<()>,
) {
    let source = Arc::new(NotesForgotten::default());
    let (server, daemon) = start_daemon(
        policy(json!([0, { "weight": 50, "hold": "10m" }, 100]), false),
        source.clone(),
    )
    .await;
    source.evaluated().await;
    (source, server, daemon)
}

/// The DestinationRule labeller of subset-level policies kept what each policy's queries
/// select (to log it only when it changes) and never dropped a deleted policy's line: a
/// daemon whose policies come and go grew without bound. Deleting the policy now reaches
/// the whole metric-source chain (the labeller drops its line and passes it on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_policys_destination_rule_selection_was_kept_forever() {
    // Subset-level without targetLabels: the labeller reads the DestinationRules.
    let (source, server, daemon) = holding_and_evaluated().await;
    let rp = ResourceRef::new("shiftgate.dev", "v1alpha1", "rolloutpolicies");
    assert!(source.forgotten.lock().unwrap().is_empty());
    server.delete_object(&rp, Some(NS), "checkout").unwrap();
    source
        .forgot_checkout_only("the deleted policy was never forgotten")
        .await;
    daemon.abort();
}

/// A policy deleted while the daemon's policy watch was down (an API server restart
/// that outlasted its watch history) gets no `Delete` event: the watch lists again and
/// the policy is just not in the list. The store dropped it, but nothing else did: its
/// metric series stayed exported (a ghost rollout on every dashboard) and its
/// DestinationRule selection, recent writes and fresh-data marks stayed in memory. The
/// end of a re-list now forgets every policy it no longer has, as a `Delete` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_deleted_while_the_watch_was_down_was_never_forgotten() {
    let (source, server, daemon) = holding_and_evaluated().await;
    let rp = ResourceRef::new("shiftgate.dev", "v1alpha1", "rolloutpolicies");
    watch_down_then_relisted(&server, || {
        server.delete_object(&rp, Some(NS), "checkout").unwrap();
    })
    .await;
    source
        .forgot_checkout_only("the policy deleted during the gap was never forgotten")
        .await;
    daemon.abort();
}

/// The policy watch down and unable to resume (410 Gone) while `during_the_gap` runs:
/// it lists again once that is done.
async fn watch_down_then_relisted(server: &TestApiServer, during_the_gap: impl FnOnce()) {
    use shiftgate::testkit::apiserver::{Fault, FaultKind};
    const REFUSED: u32 = 1_000;
    server.inject(Fault::new(
        "GET",
        "rolloutpolicies?",
        FaultKind::DropConnection,
        REFUSED,
    ));
    server.end_watches();
    let started = Instant::now();
    while server.faults_remaining() == REFUSED {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the policy watch never tried again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    during_the_gap();
    server.compact_history();
    server.clear_faults();
}

/// A policy created while the policy watch was down came back in the re-list, and the
/// driver was told it was due before the list was complete: the reflector had not
/// stored it yet, so the driver took it for one deleted since and dropped it. It was
/// never reconciled until its next change. (A sharded replica lists again each time a
/// shard changes hands, so policies created meanwhile were left behind often.) A listed
/// policy is now due when the list is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_created_while_the_watch_listed_again_was_never_reconciled() {
    let (source, server, daemon) = holding_and_evaluated().await;
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    let rp = ResourceRef::new("shiftgate.dev", "v1alpha1", "rolloutpolicies");
    let mut payments_vs = virtual_service();
    payments_vs["metadata"]["name"] = json!("payments");
    let mut payments = policy(json!([0, { "weight": 50, "hold": "10m" }, 100]), true);
    payments["metadata"]["name"] = json!("payments");
    payments["spec"]["router"]["istio"]["virtualService"] = json!("payments");
    server.put_object(&vs, payments_vs).unwrap();
    watch_down_then_relisted(&server, || {
        server.put_object(&rp, payments).unwrap();
    })
    .await;
    let started = Instant::now();
    while !source.evaluated.lock().unwrap().contains("payments") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the policy created while the watch was down was never evaluated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.abort();
}

/// The in-repo test API server answered each page of a list at its own revision, so a
/// watch started from the last page's began after an object created between two pages
/// under a key the list had already passed: in no page, and not in the watch either
/// (sharded replicas, which list again at every shard move, lost such policies for
/// good in the scale benchmark). Every page now reports the first page's revision, as
/// a real API server does, and the watch from it brings the object.
#[tokio::test]
async fn a_watch_from_a_paged_list_missed_an_object_created_between_pages() {
    use futures::{StreamExt, TryStreamExt};
    use kube::api::{ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
    use kube::core::GroupVersionKind;
    let server = TestApiServer::start().await.unwrap();
    let rp = ResourceRef::new("shiftgate.dev", "v1alpha1", "rolloutpolicies");
    let named = |name: &str| {
        let mut object = policy(json!([0, 100]), true);
        object["metadata"]["name"] = json!(name);
        object
    };
    for name in ["a", "c", "e"] {
        server.put_object(&rp, named(name)).unwrap();
    }
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("shiftgate.dev", "v1alpha1", "RolloutPolicy"),
        "rolloutpolicies",
    );
    let api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(server.client().unwrap(), NS, &resource);
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    // Before the token's key ("c"): the next page does not have it.
    server.put_object(&rp, named("b")).unwrap();
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let listed: Vec<_> = first
        .items
        .iter()
        .chain(&rest.items)
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(listed, ["a", "c", "e"]);
    assert_eq!(
        rest.metadata.resource_version,
        first.metadata.resource_version
    );
    let from = rest.metadata.resource_version.unwrap();
    let params = WatchParams::default().disable_bookmarks();
    let mut watch = api.watch(&params, &from).await.unwrap().boxed();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.try_next())
        .await
        .expect("the watch from the list's revision brought nothing")
        .unwrap();
    match event {
        Some(WatchEvent::Added(object)) => assert_eq!(object.metadata.name.as_deref(), Some("b")),
        other => panic!("expected b added, got {other:?}"),
    }
}
