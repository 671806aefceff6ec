//! `spec.notify` and `spec.grafana.annotations` in the daemon, against the in-repo test
//! API server: each policy's notifications reach the receiver in order with the
//! documented body (a promotion, and a rollback with its cause and numbers), the URL,
//! header and Grafana token come from Secrets in the policy's own namespace and appear
//! nowhere else, a failed delivery is a metric and a Warning Event, and a URL read from
//! the daemon's environment is refused before anything runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{json, Value};
use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::metrics::secrets::{KubeSecrets, SecretReader};
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{RolloutPolicy, RolloutSpec, Timestamp};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::SystemClock;
use shiftgate::runtime::commands_kube::KubeCommandSource;
use shiftgate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters};
use shiftgate::runtime::hooks::HeaderSecrets;
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};
use support::receiver::Receiver;

const NS: &str = "team-a";
const TOKEN: &str = "notify-header-of-team-a";
const GRAFANA_TOKEN: &str = "glsa_team-a-grafana";
const SECRET_PATH: &str = "/json/secret-path-of-team-a";

/// `payments` fails its analysis (error rate 0.2 against 0.01); the others pass.
struct Metrics;

#[async_trait]
impl MetricSource for Metrics {
    async fn observe(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        _counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        let value = if policy.name == "payments" { 0.2 } else { 0.0 };
        AnalysisInput {
            at,
            canary_requests: Sample::value(1000.0),
            metrics: spec
                .analysis
                .metrics
                .iter()
                .map(|m| MetricObservation {
                    name: m.name.clone(),
                    canary: Sample::value(value),
                    stable: None,
                })
                .collect(),
        }
    }
}

fn policies() -> ResourceRef {
    ResourceRef::of::<RolloutPolicy>()
}

fn secret(server: &TestApiServer, name: &str, value: &str) {
    let data = base64::engine::general_purpose::STANDARD.encode(value);
    server
        .put_object(
            &ResourceRef::new("", "v1", "secrets"),
            json!({ "apiVersion": "v1", "kind": "Secret",
                    "metadata": { "name": name, "namespace": NS },
                    "data": { "value": data } }),
        )
        .unwrap();
}

fn put_policy(server: &TestApiServer, name: &str, grafana: &str, notify: Value) {
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
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
                    "grafana": { "url": grafana, "annotations": {
                        "tokenSecretRef": { "name": "grafana", "key": "value" }, "retries": 0 } },
                    "notify": notify
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

async fn events(server: &TestApiServer) -> Vec<Value> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
        "events",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(server.client().unwrap(), NS, &resource);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_notifies_in_order_with_secrets_from_the_policys_namespace() {
    let server = TestApiServer::start_background().unwrap();
    let (addr, receiver) = Receiver::start().await;
    let grafana = format!("http://{addr}/grafana");
    secret(
        &server,
        "notify-url",
        &format!("http://{addr}{SECRET_PATH}\n"),
    );
    secret(&server, "notify-token", TOKEN);
    secret(&server, "grafana", GRAFANA_TOKEN);
    put_policy(
        &server,
        "checkout",
        &grafana,
        json!([
            { "webhook": {
                "urlSecretRef": { "name": "notify-url", "key": "value" },
                "headers": [{ "name": "x-token", "valueSecretRef": { "name": "notify-token", "key": "value" } }] } },
            { "webhook": { "url": format!("http://{addr}/fail"), "on": ["promoted"], "retries": 0 } }
        ]),
    );
    put_policy(
        &server,
        "payments",
        &grafana,
        json!([{ "webhook": { "url": format!("http://{addr}/payments"), "format": "json" } }]),
    );
    put_policy(
        &server,
        "refused",
        &grafana,
        json!([{ "webhook": { "urlEnv": "PATH" } }]),
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
        metrics: Arc::new(Metrics),
        store: Arc::new(KubeStatusStore::new(client.clone())),
        commands: Arc::new(KubeCommandSource::new(client.clone())),
        checks: Arc::new(ScriptedChecks::passing()),
        clock: Arc::new(SystemClock),
    };
    let secrets = Arc::new(KubeSecrets::new(client.clone())) as Arc<dyn SecretReader>;
    let daemon = Daemon::new(options, seams)
        .with_notify_secrets(HeaderSecrets::PolicySecrets(Some(secrets)));
    let metrics = daemon.metrics();
    let task = tokio::spawn(daemon.run(std::future::pending()));

    wait_for("checkout promoted and payments rolled back", || {
        status(&server, "checkout")["phase"] == "Promoted"
            && status(&server, "payments")["phase"] == "RolledBack"
    })
    .await;
    receiver
        .wait_for("the last notifications", Duration::from_secs(10), |r| {
            r.events("/json").last().is_some_and(|e| e == "promoted")
                && r.events("/payments")
                    .last()
                    .is_some_and(|e| e == "rolledBack")
                && !r.under("/fail").is_empty()
        })
        .await;
    // The failed delivery is counted and announced once it is over.
    wait_for("the failure counted", || {
        metrics
            .encode()
            .unwrap()
            .contains("shiftgate_notifications_total{channel=\"webhook\",result=\"failed\"} 1")
    })
    .await;
    let mut warning = None;
    for _ in 0..100 {
        warning = events(&server)
            .await
            .into_iter()
            .find(|e| e["reason"] == "NotificationFailed");
        if warning.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();

    // checkout: every transition, in order, from the URL in its Secret, with the
    // header from its Secret.
    assert_eq!(
        receiver.events("/json"),
        ["started", "stepAdvanced", "promoted"],
        "{:#?}",
        receiver.calls()
    );
    let json = receiver.under("/json");
    assert!(json.iter().all(|c| c.path == SECRET_PATH));
    assert!(json.iter().all(|c| c.token.as_deref() == Some(TOKEN)));
    assert!(json
        .iter()
        .all(|c| c.body["namespace"] == NS && c.body["name"] == "checkout"));
    assert!(json[0].body["grafana"]
        .as_str()
        .unwrap()
        .starts_with(&format!(
            "{grafana}/d/shiftgate-rollout?var-namespace={NS}&var-name=checkout"
        )));

    // payments: the rollback, with its cause and numbers.
    assert_eq!(receiver.events("/payments"), ["started", "rolledBack"]);
    let rollback = receiver.under("/payments")[1].body.clone();
    assert_eq!(rollback["phase"], "RolledBack", "{rollback}");
    assert_eq!(rollback["canaryWeight"], 0);
    assert!(
        rollback["message"].as_str().unwrap().contains("errors"),
        "{rollback}"
    );
    let metric = &rollback["analysis"]["metrics"][0];
    assert_eq!(metric["name"], "errors");
    assert_eq!(metric["verdict"], "Fail");
    assert_eq!(metric["canary"], 0.2);
    assert_eq!(metric["limits"]["max"], 0.01);

    // Grafana: the token from the Secret; regions per step, tagged per rollout.
    let grafana_calls = receiver.under("/grafana/api/annotations");
    assert!(!grafana_calls.is_empty());
    assert!(grafana_calls
        .iter()
        .all(|c| c.authorization.as_deref() == Some(format!("Bearer {GRAFANA_TOKEN}").as_str())));
    let payments: Vec<&support::receiver::Received> = grafana_calls
        .iter()
        .filter(|c| c.method == "PATCH" || c.body["tags"][2] == "name:payments")
        .collect();
    assert!(
        payments.iter().any(|c| c.method == "PATCH"),
        "{payments:#?}"
    );
    assert!(payments.iter().any(|c| c.body["text"]
        .as_str()
        .is_some_and(|t| t.contains("rolledBack"))));

    // The failure: a metric and a Warning Event that name the target, not a secret.
    let warning = warning.expect("a NotificationFailed Event");
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["regarding"]["name"], "checkout");
    assert!(
        warning["note"].as_str().unwrap().contains("500"),
        "{warning}"
    );

    // The refused policy: its URL would have come from the daemon's environment.
    let refused = status(&server, "refused");
    let accepted = refused["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Accepted").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(accepted["reason"], "CredentialsNotAllowed", "{refused}");
    assert!(accepted["message"]
        .as_str()
        .unwrap()
        .contains("spec.notify[0].webhook.urlEnv"));
    assert!(receiver.calls().iter().all(|c| c.body["name"] != "refused"));

    // No secret in any status or Event.
    let everything = format!(
        "{}{}{}",
        status(&server, "checkout"),
        status(&server, "payments"),
        serde_json::to_string(&events(&server).await).unwrap()
    );
    for secret in [TOKEN, GRAFANA_TOKEN, "secret-path-of-team-a"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}
