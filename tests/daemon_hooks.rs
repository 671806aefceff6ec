//! `spec.hooks` in the daemon, against the in-repo test API server: the phases reach a
//! receiver on 127.0.0.1 in order, a secret header comes from a Secret in the policy's
//! own namespace and appears nowhere else, and a header read from the daemon's
//! environment is refused before anything runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{json, Value};
use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::metrics::secrets::{KubeSecrets, SecretReader};
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{RolloutPolicy, RolloutSpec, Timestamp};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::SystemClock;
use shiftgate::runtime::commands_kube::KubeCommandSource;
use shiftgate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters};
use shiftgate::runtime::hooks::{HeaderSecrets, Hooks, WebhookHooks};
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

const NS: &str = "team-a";
const TOKEN: &str = "hook-token-of-team-a";

/// Every metric passes.
struct Healthy;

#[async_trait]
impl MetricSource for Healthy {
    async fn observe(
        &self,
        _policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        _counts_since: Option<Timestamp>,
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
                    canary: Sample::value(0.0),
                    stable: None,
                })
                .collect(),
        }
    }
}

type Calls = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Records each body's `phase` and its `x-token` header.
async fn receiver() -> (std::net::SocketAddr, Calls) {
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let recorded = recorded.clone();
            async move {
                let token = headers
                    .get("x-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let phase = body.0["phase"].as_str().unwrap_or("?").to_owned();
                recorded.lock().unwrap().push((phase, token));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

fn policies() -> ResourceRef {
    ResourceRef::of::<RolloutPolicy>()
}

fn cluster() -> TestApiServer {
    let server = TestApiServer::start_background().unwrap();
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    for name in ["checkout", "payments"] {
        server
            .put_object(
                &vs,
                json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": { "name": name, "namespace": NS },
                    "spec": { "hosts": [name], "http": [{ "name": "primary", "route": [
                        { "destination": { "host": name, "subset": "v1" }, "weight": 100 },
                        { "destination": { "host": name, "subset": "v2" }, "weight": 0 }
                    ]}]}
                }),
            )
            .unwrap();
    }
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN}\n"));
    server
        .put_object(
            &ResourceRef::new("", "v1", "secrets"),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "hook-token", "namespace": NS },
                "data": { "token": token }
            }),
        )
        .unwrap();
    server
}

fn put_policy(server: &TestApiServer, name: &str, url: &str, header: Value) {
    server
        .put_object(
            &policies(),
            json!({
                "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
                "metadata": { "name": name, "namespace": NS },
                "spec": {
                    "revision": "v2",
                    "router": { "istio": {
                        "virtualService": name, "routes": ["primary"],
                        "stable": { "host": name, "subset": "v1" },
                        "canary": { "host": name, "subset": "v2" }
                    }},
                    "steps": [10, 100],
                    "analysis": {
                        "interval": "1s",
                        "prometheus": { "address": "http://127.0.0.1:9" },
                        "metrics": [{ "name": "errors", "query": "sum(rate(errors_total[1m]))", "max": 0.01 }]
                    },
                    "hooks": [{
                        "name": "audit", "url": url, "timeout": "2s", "retries": 0,
                        "on": ["preRollout", "step", "confirmPromotion", "postRollout"],
                        "headers": [header]
                    }]
                }
            }),
        )
        .unwrap();
}

fn status(server: &TestApiServer, name: &str) -> Value {
    server
        .get_object(&policies(), Some(NS), name)
        .map(|p| p["status"].clone())
        .unwrap_or(Value::Null)
}

async fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let polled = async {
        while !probe() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), polled)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_calls_every_phase_with_a_header_from_the_policys_secret() {
    let server = cluster();
    let (addr, calls) = receiver().await;
    let url = format!("http://{addr}/hook");
    put_policy(
        &server,
        "checkout",
        &url,
        json!({ "name": "x-token", "valueSecretRef": { "name": "hook-token", "key": "token" } }),
    );
    put_policy(
        &server,
        "payments",
        &url,
        json!({ "name": "x-token", "valueEnv": "PATH" }),
    );
    let client = server.client().unwrap();
    let options = DaemonOptions {
        namespace: None,
        pod_name: "shiftgate-0".to_owned(),
        concurrency: 2,
        lease: None,
        resync: Duration::from_secs(1),
        shutdown_deadline: Duration::from_secs(5),
    };
    let seams = DaemonSeams {
        client: client.clone(),
        routers: Arc::new(KubeRouters::new(client.clone())),
        metrics: Arc::new(Healthy),
        store: Arc::new(KubeStatusStore::new(client.clone())),
        commands: Arc::new(KubeCommandSource::new(client.clone())),
        checks: Arc::new(ScriptedChecks::passing()),
        clock: Arc::new(SystemClock),
    };
    let secrets = Arc::new(KubeSecrets::new(client.clone())) as Arc<dyn SecretReader>;
    let hooks = Hooks::new(Arc::new(WebhookHooks::new(HeaderSecrets::PolicySecrets(
        Some(secrets),
    ))));
    let daemon = Daemon::new(options, seams).with_hooks(hooks);
    let task = tokio::spawn(daemon.run(std::future::pending()));

    // postRollout's answer is recorded at a reconcile after the promotion.
    wait_for("checkout promoted with its postRollout answer", || {
        let s = status(&server, "checkout");
        s["phase"] == "Promoted"
            && s["lastHooks"]
                .as_array()
                .is_some_and(|h| h.iter().any(|r| r["phase"] == "postRollout"))
    })
    .await;
    let refused = status(&server, "payments");
    let accepted = refused["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Accepted").cloned())
        .unwrap_or(Value::Null);
    task.abort();

    let calls = calls.lock().unwrap().clone();
    let phases: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        phases,
        [
            "preRollout",
            "step",
            "step",
            "confirmPromotion",
            "postRollout"
        ],
        "only checkout's hooks were called, in order: {calls:?}"
    );
    assert!(calls.iter().all(|(_, t)| t.as_deref() == Some(TOKEN)));
    let everything = format!(
        "{}{}",
        server
            .get_object(&policies(), Some(NS), "checkout")
            .unwrap(),
        refused
    );
    assert!(
        !everything.contains(TOKEN),
        "the token leaked: {everything}"
    );
    assert_eq!(accepted["status"], "False", "{refused}");
    assert_eq!(accepted["reason"], "CredentialsNotAllowed", "{refused}");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.hooks[0].headers[0].valueEnv"),
        "{refused}"
    );
}
