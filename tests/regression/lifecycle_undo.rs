//! Regression tests of issue "lifecycle" §2 and §6 (the gaps left): `undo` is refused
//! when the previous release is gone, whatever the router, and says why.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shiftgate::cli::exit;
use shiftgate::engine::{reasons, Command};
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::{Phase, RolloutSpec, RolloutStatus};
use shiftgate::router::memory::MemoryRouter;
use shiftgate::router::ManagedRoute;
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::VirtualClock;
use shiftgate::runtime::release_presence::KubeReleaseProbe;
use shiftgate::runtime::{QueuedCommands, Reconciler, Seams, TickOutcome};
use shiftgate::store::memory::MemoryStore;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

use super::support::rollout::{stderr, PolicyOptions, Stack, WAIT_LIMIT};
use super::support::workloads::{create, deployments, server, set_available, spec, Healthy, World};

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// The newest `CommandRefused` message of the history.
fn refusal(status: &RolloutStatus) -> Option<&str> {
    status
        .history
        .iter()
        .rev()
        .find(|e| e.reason == reasons::COMMAND_REFUSED)
        .map(|e| &*e.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_onto_a_deleted_deployment_is_refused() {
    let server = server();
    let namespace = server.create_namespace("lifecycle-undo-deleted").await;
    let api = deployments(server, &namespace).await;
    create(&api, "web-blue", "web:1", 3).await;
    set_available(&api, "web-blue", 3).await;
    create(&api, "web-green", "web:2", 2).await;
    set_available(&api, "web-green", 2).await;
    let mut world = World::new(server, &namespace).await;
    let client = server
        .service_account_client("shiftgate", "shiftgate")
        .await;
    world.reconciler = world
        .reconciler
        .clone()
        .with_release_probe(Arc::new(KubeReleaseProbe::new(client, &namespace)));
    let spec = spec(Some("v2"), json!({}));
    world.until_promoted(&spec).await;
    api.delete("web-blue", &Default::default()).await.unwrap();

    world
        .commands
        .push(&world.policy, Command::Undo, Some("v2"));
    let refused = world.tick_after(5, &spec).await;
    assert!(refused.writes.is_empty(), "flipped onto a deleted release");
    assert_eq!(world.router.route().canary_weight, 100);
    assert_eq!(refused.status.phase, Phase::Promoted);
    let why = refusal(&refused.status).expect("no refusal recorded");
    assert!(
        why.contains(&format!("Deployment {namespace}/web-blue does not exist")),
        "{why}"
    );
    assert!(why.contains("redeploy it"), "{why}");
}

/// A rollout world with an in-memory route and store, the previous release looked at
/// through `probe_client` in `namespace`.
fn probed_world(probe_client: kube::Client, namespace: &str) -> World {
    World::in_memory(namespace, |reconciler| {
        reconciler.with_release_probe(Arc::new(KubeReleaseProbe::new(probe_client, namespace)))
    })
}

/// Asks to undo revision v2, then ticks once.
async fn undo(world: &World, spec: &RolloutSpec) -> TickOutcome {
    world
        .commands
        .push(&world.policy, Command::Undo, Some("v2"));
    world.tick_after(5, spec).await
}

fn istio_spec(stable: serde_json::Value, canary: serde_json::Value) -> RolloutSpec {
    serde_json::from_value(json!({
        "revision": "v2",
        "router": { "istio": { "virtualService": "web", "stable": stable, "canary": canary } },
        "steps": [0, 50, 100],
        "analysis": { "interval": "30s",
                      "metrics": [ { "name": "error-rate", "query": "e", "max": 0.01 } ] }
    }))
    .unwrap()
}

/// An EndpointSlice of Service `service` with one endpoint per `(pod, ready)`.
fn endpoint_slice(namespace: &str, service: &str, endpoints: &[(&str, bool)]) -> serde_json::Value {
    let endpoints: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (pod, ready))| {
            json!({ "addresses": [format!("10.0.0.{}", i + 1)], "conditions": { "ready": ready },
                    "targetRef": { "kind": "Pod", "name": pod, "namespace": namespace } })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": format!("{service}-abcde"), "namespace": namespace,
                      "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4", "endpoints": endpoints
    })
}

fn slices() -> ResourceRef {
    ResourceRef::new("discovery.k8s.io", "v1", "endpointslices")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_onto_a_service_with_no_ready_endpoints_is_refused() {
    let api = TestApiServer::start().await.unwrap();
    let bench = probed_world(api.client().unwrap(), "shop");
    let spec = istio_spec(
        json!({ "host": "web-blue" }),
        json!({ "host": "web-green" }),
    );
    api.put_object(
        &slices(),
        endpoint_slice(
            "shop",
            "web-blue",
            &[("web-blue-1", false), ("web-blue-2", false)],
        ),
    )
    .unwrap();
    bench.until_promoted(&spec).await;

    let refused = undo(&bench, &spec).await;
    assert!(
        refused.writes.is_empty(),
        "flipped onto a release that serves nothing"
    );
    assert_eq!(bench.router.route().canary_weight, 100);
    let why = refusal(&refused.status).expect("no refusal recorded");
    assert!(
        why.contains("Service shop/web-blue has no ready endpoint (2 not ready)"),
        "{why}"
    );

    // Its pods are ready again: the next undo flips back, in one write.
    api.put_object(
        &slices(),
        endpoint_slice(
            "shop",
            "web-blue",
            &[("web-blue-1", true), ("web-blue-2", false)],
        ),
    )
    .unwrap();
    let undone = undo(&bench, &spec).await;
    assert_eq!(undone.writes.len(), 1, "{:?}", undone.status.message);
    assert_eq!(bench.router.route().canary_weight, 0);
    assert_eq!(undone.status.reason.as_deref(), Some(reasons::UNDONE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_onto_a_subset_without_ready_pods_is_refused_until_they_are_ready() {
    let api = TestApiServer::start().await.unwrap();
    let bench = probed_world(api.client().unwrap(), "shop");
    let spec = istio_spec(
        json!({ "host": "web", "subset": "blue" }),
        json!({ "host": "web", "subset": "green" }),
    );
    let rules = ResourceRef::new("networking.istio.io", "v1", "destinationrules");
    api.put_object(
        &rules,
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": { "host": "web", "subsets": [
                { "name": "blue", "labels": { "version": "blue-web-echo" } },
                { "name": "green", "labels": { "version": "green-web-echo" } } ] }
        }),
    )
    .unwrap();
    let pods = ResourceRef::new("", "v1", "pods");
    let pod = |name: &str, version: &str, ready: &str| {
        json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": name, "namespace": "shop", "labels": { "version": version } },
                "spec": { "containers": [ { "name": "web", "image": "web" } ] },
                "status": { "conditions": [ { "type": "Ready", "status": ready } ] } })
    };
    api.put_object(&pods, pod("web-green-1", "green-web-echo", "True"))
        .unwrap();
    api.put_object(&pods, pod("web-blue-1", "blue-web-echo", "False"))
        .unwrap();
    api.put_object(
        &slices(),
        endpoint_slice(
            "shop",
            "web",
            &[("web-green-1", true), ("web-blue-1", true)],
        ),
    )
    .unwrap();
    bench.until_promoted(&spec).await;

    let refused = undo(&bench, &spec).await;
    assert!(refused.writes.is_empty());
    let why = refusal(&refused.status).expect("no refusal recorded");
    assert!(why.contains("subset `blue`"), "{why}");
    assert!(why.contains(r#"{version="blue-web-echo"}"#), "{why}");

    api.put_object(&pods, pod("web-blue-1", "blue-web-echo", "True"))
        .unwrap();
    let undone = undo(&bench, &spec).await;
    assert_eq!(undone.writes.len(), 1, "{:#?}", undone.status.history);
    assert_eq!(bench.router.route().canary_weight, 0);
}

fn service_spec() -> RolloutSpec {
    serde_json::from_value(json!({
        "revision": "v2",
        "router": { "service": { "service": "web", "selectorKey": "color",
                                 "stableValue": "blue", "canaryValue": "green" } },
        "steps": [0, 100],
        "analysis": { "interval": "30s",
                      "metrics": [ { "name": "error-rate", "query": "e", "max": 0.01 } ] }
    }))
    .unwrap()
}

/// The Service `web` selecting `app: web` plus the colour, in `namespace` (as admin).
async fn create_service(client: kube::Client, namespace: &str) {
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client, namespace);
    let service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web", "color": "green" },
                  "ports": [ { "port": 80 } ] }
    }))
    .unwrap();
    services
        .create(&Default::default(), &service)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_router_undo_needs_a_ready_pod_of_the_previous_selector() {
    use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
    let server = server();
    let namespace = server.create_namespace("lifecycle-undo-selector").await;
    let admin = server.admin_client().await;
    create_service(admin.clone(), &namespace).await;
    // The API server has no controllers: the pods run as an account the test creates.
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(admin.clone(), &namespace);
    let account = serde_json::from_value(json!({ "metadata": { "name": "web" } })).unwrap();
    accounts
        .create(&Default::default(), &account)
        .await
        .unwrap();
    let pods: kube::Api<Pod> = kube::Api::namespaced(admin, &namespace);
    let pod = serde_json::from_value(json!({
        "metadata": { "name": "web-blue-1", "labels": { "app": "web", "color": "blue" } },
        "spec": { "serviceAccountName": "web", "automountServiceAccountToken": false,
                  "containers": [ { "name": "web", "image": "web:1" } ] }
    }))
    .unwrap();
    pods.create(&Default::default(), &pod).await.unwrap();
    // As deploy/'s ServiceAccount: its ClusterRole must allow what the probe reads.
    let shiftgate = server
        .service_account_client("shiftgate", "shiftgate")
        .await;
    let bench = probed_world(shiftgate, &namespace);
    let spec = service_spec();
    bench.until_promoted(&spec).await;

    let refused = undo(&bench, &spec).await;
    assert!(refused.writes.is_empty());
    let why = refusal(&refused.status).expect("no refusal recorded");
    assert!(
        why.contains(&format!(
            "no ready pod matches the previous selector {{app=\"web\",color=\"blue\"}} of \
             Service {namespace}/web"
        )),
        "{why}"
    );

    let ready = json!({ "status": { "conditions": [ { "type": "Ready", "status": "True" } ] } });
    pods.patch_status(
        "web-blue-1",
        &Default::default(),
        &kube::api::Patch::Merge(&ready),
    )
    .await
    .unwrap();
    let undone = undo(&bench, &spec).await;
    assert_eq!(undone.writes.len(), 1, "{:?}", refusal(&undone.status));
    assert_eq!(bench.router.route().canary_weight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_read_refuses_undo_naming_the_missing_grant() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let server = server();
    let namespace = server.create_namespace("lifecycle-undo-denied").await;
    let admin = server.admin_client().await;
    create_service(admin.clone(), &namespace).await;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(admin, &namespace);
    let account = serde_json::from_value(json!({ "metadata": { "name": "nobody" } })).unwrap();
    accounts
        .create(&Default::default(), &account)
        .await
        .unwrap();
    // An identity with no grant at all.
    let nobody = server.service_account_client(&namespace, "nobody").await;
    let bench = probed_world(nobody, &namespace);
    let spec = service_spec();
    bench.until_promoted(&spec).await;

    let refused = undo(&bench, &spec).await;
    assert!(refused.writes.is_empty(), "undone on a guess");
    let why = refusal(&refused.status).expect("no refusal recorded");
    assert!(
        why.contains(&format!(
            "shiftgate may not `get` services (core) in namespace {namespace}"
        )),
        "{why}"
    );
    assert!(why.contains("deploy/clusterrole.yaml"), "{why}");
}

/// Envoy's admin `/clusters?format=json` says the cluster's only host failed its
/// health check.
async fn wait_until_unhealthy(stack: &Stack, cluster: &str) {
    let url = format!("http://{}/clusters?format=json", stack.local.envoy.admin);
    let polled = async {
        loop {
            let doc: serde_json::Value = super::support::rollout::http()
                .get(&url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let failed = doc["cluster_statuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["name"] == cluster)
                .flat_map(|c| c["host_statuses"].as_array().into_iter().flatten())
                .all(|h| h["health_status"]["failed_active_health_check"] == true);
            if failed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(WAIT_LIMIT, polled)
        .await
        .expect("envoy never saw the stopped app as unhealthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_onto_an_envoy_cluster_with_no_healthy_host_is_refused() {
    let mut stack = Stack::start().await;
    let policy = stack.write_policy(&PolicyOptions::default());
    let promoted = stack.run(&policy).await;
    assert_eq!(code(&promoted), exit::OK, "{}", stderr(&promoted));
    assert_eq!(stack.served().await.canary_weight, 100);
    // The previous release stops: Envoy's health check sees it.
    stack.local.supervisor.kill("stable-app");
    wait_until_unhealthy(&stack, "stable").await;
    let before = stack.live_route_config().await;

    let undo = stack
        .command(&["undo", policy.to_str().unwrap()])
        .output()
        .unwrap();
    let said = stderr(&undo);
    assert_eq!(code(&undo), exit::NOTHING_TO_UNDO, "{said}");
    assert!(
        said.contains("no healthy host in envoy cluster `stable`"),
        "{said}"
    );
    assert!(said.contains("failed active health check"), "{said}");
    assert_eq!(stack.served().await.canary_weight, 100);
    assert_eq!(stack.live_route_config().await, before, "nothing written");
}

/// A hook receiver that refuses `confirmPromotion` (503) and accepts every other
/// phase; counts the refusals.
async fn refusing_receiver() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::StatusCode;
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = refused.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let counter = counter.clone();
            async move {
                if body.0["phase"] == "confirmPromotion" {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_confirm_promotion_raises_one_warning_event_per_wait() {
    use k8s_openapi::api::events::v1::Event;
    use shiftgate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters};
    use shiftgate::runtime::hooks::{HeaderSecrets, Hooks, WebhookHooks};
    let server = TestApiServer::start().await.unwrap();
    let (addr, refusals) = refusing_receiver().await;
    server
        .put_object(
            &ResourceRef::new("networking.istio.io", "v1", "virtualservices"),
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": { "name": "checkout", "namespace": "shop" },
                "spec": { "hosts": ["checkout"], "http": [{ "name": "primary", "route": [
                    { "destination": { "host": "checkout-blue" }, "weight": 100 },
                    { "destination": { "host": "checkout-green" }, "weight": 0 } ]}]}
            }),
        )
        .unwrap();
    server
        .put_object(
            &ResourceRef::of::<shiftgate::policy::RolloutPolicy>(),
            json!({
                "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
                "metadata": { "name": "checkout", "namespace": "shop" },
                "spec": {
                    "revision": "v2",
                    "router": { "istio": { "virtualService": "checkout", "routes": ["primary"],
                        "stable": { "host": "checkout-blue" }, "canary": { "host": "checkout-green" } } },
                    "steps": [10, 100],
                    "analysis": { "interval": "1s", "prometheus": { "address": "http://127.0.0.1:9" },
                        "metrics": [{ "name": "errors", "query": "e", "max": 0.01 }] },
                    "hooks": [{ "name": "release-manager", "url": format!("http://{addr}/hook"),
                        "timeout": "2s", "retries": 0, "on": ["confirmPromotion"] }]
                }
            }),
        )
        .unwrap();
    let client = server.client().unwrap();
    let options = DaemonOptions {
        namespace: None,
        pod_name: "shiftgate-0".to_owned(),
        concurrency: 1,
        lease: None,
        resync: Duration::from_secs(1),
        shutdown_deadline: Duration::from_secs(5),
    };
    let seams = DaemonSeams {
        client: client.clone(),
        routers: Arc::new(KubeRouters::new(client.clone())),
        metrics: Arc::new(Healthy),
        store: Arc::new(shiftgate::store::kube::KubeStatusStore::new(client.clone())),
        commands: Arc::new(shiftgate::runtime::commands_kube::KubeCommandSource::new(
            client.clone(),
        )),
        checks: Arc::new(ScriptedChecks::passing()),
        clock: Arc::new(shiftgate::runtime::clock::SystemClock),
    };
    let hooks = Hooks::new(Arc::new(WebhookHooks::new(HeaderSecrets::PolicySecrets(
        None,
    ))));
    let daemon = Daemon::new(options, seams).with_hooks(hooks);
    let task = tokio::spawn(daemon.run(std::future::pending()));

    // Several refusals in one wait: the gate is asked again at each evaluation. The
    // fifth comes in a later tick than the fourth, so whatever the ticks of the first
    // four publish is published by then.
    let waited = async {
        while refusals.load(std::sync::atomic::Ordering::SeqCst) < 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waited)
        .await
        .expect("confirmPromotion was not asked again and again");
    let events: kube::Api<Event> = kube::Api::namespaced(client, "shop");
    let listed = events.list(&Default::default()).await.unwrap();
    task.abort();
    let held: Vec<&Event> = listed
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("PromotionNotConfirmed"))
        .collect();
    assert_eq!(held.len(), 1, "one Event per wait: {:?}", listed.items);
    let event = held[0];
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event.series.is_none(),
        "the Event was repeated at each refusal: {event:?}"
    );
    let note = event.note.as_deref().unwrap_or_default();
    assert!(note.contains("confirmPromotion hook failed"), "{note}");
    assert!(note.contains("release-manager"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_stable_scaled_down_by_shiftgate_is_scaled_back_not_refused() {
    use super::support::workloads::replicas;
    let server = server();
    let namespace = server.create_namespace("lifecycle-undo-scaled").await;
    let api = deployments(server, &namespace).await;
    create(&api, "web-blue", "web:1", 3).await;
    set_available(&api, "web-blue", 3).await;
    create(&api, "web-green", "web:2", 2).await;
    set_available(&api, "web-green", 2).await;
    let mut world = World::new(server, &namespace).await;
    let client = server
        .service_account_client("shiftgate", "shiftgate")
        .await;
    world.reconciler = world
        .reconciler
        .clone()
        .with_release_probe(Arc::new(KubeReleaseProbe::new(client, &namespace)));
    let spec = spec(Some("v2"), json!({ "scaleDown": { "after": "10m" } }));
    world.until_promoted(&spec).await;
    world.tick_after(600, &spec).await;
    assert_eq!(replicas(&api, "web-blue").await, 0);
    set_available(&api, "web-blue", 0).await;

    // No replica serves, by shiftgate's own doing: the undo puts them back first.
    world
        .commands
        .push(&world.policy, Command::Undo, Some("v2"));
    let asked = world.tick_after(5, &spec).await;
    assert_eq!(refusal(&asked.status), None);
    assert_eq!(asked.status.phase, Phase::RollingBack);
    assert_eq!(replicas(&api, "web-blue").await, 3);
    set_available(&api, "web-blue", 3).await;
    world.tick_after(5, &spec).await;
    assert_eq!(world.router.route().canary_weight, 0);
}

/// Ends every tick right after its state is stored: before any background hook is sent,
/// as a kill there would.
struct KilledAfterEverySave;

impl shiftgate::runtime::FaultHook for KilledAfterEverySave {
    fn crash_at(&self, point: shiftgate::runtime::CrashPoint) -> bool {
        point == shiftgate::runtime::CrashPoint::StateSaved
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_rollout_hook_lost_to_a_crash_is_delivered_after_the_restart() {
    use shiftgate::policy::HookPhase;
    use shiftgate::runtime::hooks::{Hooks, ScriptedHooks};
    use shiftgate::store::StateStore as _;
    let spec: RolloutSpec = serde_json::from_value(json!({
        "revision": "v2",
        "router": { "istio": { "virtualService": "web",
            "stable": { "host": "web-blue" }, "canary": { "host": "web-green" } } },
        "steps": [0, 100],
        "analysis": { "interval": "30s",
                      "metrics": [ { "name": "error-rate", "query": "e", "max": 0.01 } ] },
        "hooks": [ { "name": "release-notes", "url": "http://127.0.0.1:9/hook",
                     "on": ["postRollout"] } ]
    }))
    .unwrap();
    let policy = PolicyRef {
        namespace: "shop".to_owned(),
        name: "web".to_owned(),
    };
    let clock = Arc::new(VirtualClock::new(
        chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
    ));
    let store = Arc::new(MemoryStore::default());
    let seams = Seams {
        router: Arc::new(MemoryRouter::new(ManagedRoute {
            canary_weight: 0,
            test_route: false,
        })),
        metrics: Arc::new(Healthy),
        store: store.clone(),
        checks: Arc::new(ScriptedChecks::passing()),
        commands: Arc::new(QueuedCommands::default()),
        clock: clock.clone(),
    };
    // The process that promotes is killed after each save, never reaching the send.
    let first = Arc::new(ScriptedHooks::default());
    let dying = Reconciler::new(seams.clone())
        .with_hooks(Hooks::inline(first.clone()))
        .with_fault_hook(Arc::new(KilledAfterEverySave));
    let mut promoted = false;
    for _ in 0..10 {
        clock.advance(chrono::Duration::seconds(30));
        let _crashed = dying.tick(&policy, &spec).await;
        let stored = store.load(&policy).await.unwrap().map(|(s, _)| s);
        if stored.is_some_and(|s| s.phase == Phase::Promoted) {
            promoted = true;
            break;
        }
    }
    assert!(promoted, "not promoted after 10 ticks");
    assert!(first.calls().is_empty(), "sent before the crash");

    // The restarted process owes the hook and sends it once.
    let second = Arc::new(ScriptedHooks::default());
    let restarted = Reconciler::new(seams).with_hooks(Hooks::inline(second.clone()));
    clock.advance(chrono::Duration::seconds(30));
    restarted.tick(&policy, &spec).await.unwrap();
    let phases: Vec<HookPhase> = second.calls().iter().map(|c| c.phase).collect();
    assert_eq!(phases, [HookPhase::PostRollout]);
    assert_eq!(second.calls()[0].revision, "v2");
    // Its answer is recorded at the next tick, and nothing is owed any more.
    clock.advance(chrono::Duration::seconds(30));
    let settled = restarted.tick(&policy, &spec).await.unwrap();
    assert!(settled.status.pending_hooks.is_empty());
    assert_eq!(second.calls().len(), 1, "sent again after it answered");
}
