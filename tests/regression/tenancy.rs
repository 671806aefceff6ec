//! Issue "trust" §1: a policy never borrows the daemon's identity.
//!
//! The daemon runs against the in-repo test API server with the real Prometheus source
//! in daemon mode, the real Secret reader, router and status store. A stand-in
//! Prometheus on 127.0.0.1 records the `Authorization` header of every request, so the
//! tests see exactly which credentials reached which address, and that nothing reached
//! an address the operator did not allow. Every wait polls a condition with a timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{json, Value};
use shiftgate::metrics::prometheus::PrometheusSource;
use shiftgate::metrics::providers::{parse_providers, AllowedAddress, PrometheusAccess};
use shiftgate::metrics::secrets::KubeSecrets;
use shiftgate::policy::{PrometheusSpec, RolloutPolicy};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::SystemClock;
use shiftgate::runtime::commands_kube::KubeCommandSource;
use shiftgate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters};
use shiftgate::runtime::leader::LeaseConfig;
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::testkit::apiserver::{ResourcePath, ResourceRef, TestApiServer};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const A: &str = "team-a";
const B: &str = "team-b";
const WAIT: Duration = Duration::from_secs(20);

/// `(path, Authorization header)` of every request a receiver saw.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A stand-in Prometheus: records `(path, Authorization)` of every request and answers
/// every query with one sample of value 0.
struct Receiver {
    url: String,
    seen: Seen,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
            let record = record.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                record
                    .lock()
                    .unwrap()
                    .push((uri.path().to_owned(), authorization));
                axum::Json(json!({
                    "status": "success",
                    "data": { "resultType": "vector", "result": [
                        { "metric": {}, "value": [1_700_000_000, "0"] }
                    ]}
                }))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, seen, task }
    }

    fn authorizations(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }

    async fn wait_for_queries(&self) -> Vec<Option<String>> {
        wait_until("a query at the stand-in Prometheus", || {
            let seen = self.authorizations();
            (!seen.is_empty()).then_some(seen)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn policies() -> ResourceRef {
    ResourceRef::of::<RolloutPolicy>()
}

fn secrets() -> ResourceRef {
    ResourceRef::new("", "v1", "secrets")
}

/// A test API server with a VirtualService `checkout` in both namespaces and a Secret
/// `prom-token` in each, holding a token that names its namespace.
fn cluster() -> TestApiServer {
    let server = TestApiServer::start_background().unwrap();
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    for ns in [A, B] {
        server
            .put_object(
                &vs,
                json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": { "name": "checkout", "namespace": ns },
                    "spec": { "hosts": ["checkout"], "http": [{ "name": "primary", "route": [
                        { "destination": { "host": "checkout", "subset": "v1" }, "weight": 100 },
                        { "destination": { "host": "checkout", "subset": "v2" }, "weight": 0 }
                    ]}]}
                }),
            )
            .unwrap();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("token-of-{ns}\n"));
        server
            .put_object(
                &secrets(),
                json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": { "name": "prom-token", "namespace": ns },
                    "data": { "token": token }
                }),
            )
            .unwrap();
    }
    server
}

/// Creates (or replaces) a policy on `checkout`'s primary route with the given
/// `analysis.prometheus` (untyped, so fields the types refuse can be written).
fn put_policy(server: &TestApiServer, ns: &str, name: &str, prometheus: Value) {
    server
        .put_object(
            &policies(),
            json!({
                "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
                "metadata": { "name": name, "namespace": ns },
                "spec": {
                    "revision": "v2",
                    "router": { "istio": {
                        "virtualService": "checkout", "routes": ["primary"],
                        "stable": { "host": "checkout", "subset": "v1" },
                        "canary": { "host": "checkout", "subset": "v2" }
                    }},
                    "steps": [{ "weight": 10, "hold": "1m" }, 100],
                    "analysis": {
                        "interval": "1s",
                        "prometheus": prometheus,
                        "metrics": [{ "name": "errors", "query": "sum(rate(errors_total[1m]))", "max": 0.01 }]
                    }
                }
            }),
        )
        .unwrap();
}

fn status(server: &TestApiServer, ns: &str, name: &str) -> Value {
    server
        .get_object(&policies(), Some(ns), name)
        .map(|p| p["status"].clone())
        .unwrap_or(Value::Null)
}

/// The Accepted condition once it is False: `(reason, message)`.
async fn wait_refused(server: &TestApiServer, ns: &str, name: &str) -> (String, String) {
    wait_until(&format!("{ns}/{name} Accepted=False"), || {
        let status = status(server, ns, name);
        let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
        conditions
            .iter()
            .find(|c| c["type"] == "Accepted" && c["status"] == "False")
            .map(|c| {
                (
                    c["reason"].as_str().unwrap_or("").to_owned(),
                    c["message"].as_str().unwrap_or("").to_owned(),
                )
            })
    })
    .await
}

/// Paths of the Secrets the daemon asked the API server for.
fn secret_reads(server: &TestApiServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

struct Running {
    task: JoinHandle<Result<(), shiftgate::runtime::daemon::DaemonError>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The production daemon's seams, with the Prometheus source in daemon mode.
fn daemon(server: &TestApiServer, access: PrometheusAccess, lease: Option<LeaseConfig>) -> Running {
    let client = server.client().unwrap();
    let options = DaemonOptions {
        namespace: None,
        pod_name: "shiftgate-0".to_owned(),
        concurrency: 4,
        lease,
        resync: Duration::from_secs(30),
        shutdown_deadline: Duration::from_secs(5),
    };
    let store = KubeStatusStore::new(client.clone());
    let commands = KubeCommandSource::new(client.clone());
    let seams = DaemonSeams {
        client: client.clone(),
        routers: Arc::new(KubeRouters::new(client.clone())),
        metrics: Arc::new(PrometheusSource::for_daemon(
            access,
            Some(Arc::new(KubeSecrets::new(client.clone()))),
        )),
        store: Arc::new(store),
        commands: Arc::new(commands),
        checks: Arc::new(ScriptedChecks::passing()),
        clock: Arc::new(SystemClock),
    };
    let daemon = Daemon::new(options, seams);
    let task = tokio::spawn(daemon.run(std::future::pending()));
    Running { task }
}

fn no_route_writes(server: &TestApiServer) {
    assert!(
        server
            .requests_matching("PATCH", "/virtualservices/")
            .is_empty(),
        "a refused policy wrote a route"
    );
}

/// The daemon's ServiceAccount token is a file; a policy naming it must not make the
/// daemon read it and send it to the policy's address. Same for every file field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_bearer_token_file() {
    let server = cluster();
    let attacker = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "daemon-service-account-token\n").unwrap();
    let file = token.display().to_string();
    let cases = [
        (
            "token-file",
            json!({ "bearerTokenFile": file }),
            "auth.bearerTokenFile",
        ),
        (
            "password-file",
            json!({ "basic": { "username": "u", "passwordFile": file } }),
            "auth.basic.passwordFile",
        ),
    ];
    for (name, auth, _) in &cases {
        put_policy(
            &server,
            A,
            name,
            json!({ "address": attacker.url, "auth": auth }),
        );
    }
    put_policy(
        &server,
        B,
        "ca-file",
        json!({ "address": attacker.url, "caFile": file }),
    );
    let _daemon = daemon(&server, PrometheusAccess::open(), None);

    for (name, _, field) in &cases {
        let (reason, message) = wait_refused(&server, A, name).await;
        assert_eq!(reason, "CredentialsNotAllowed", "{message}");
        assert!(
            message.contains(field) && message.contains("SecretRef"),
            "{message}"
        );
        assert!(
            message.contains("provider") && message.contains("shiftgate run"),
            "{message}"
        );
    }
    let (reason, message) = wait_refused(&server, B, "ca-file").await;
    assert_eq!(reason, "CredentialsNotAllowed");
    assert!(
        message.contains("caFile") && message.contains("caSecretRef"),
        "{message}"
    );
    assert!(
        attacker.authorizations().is_empty(),
        "the attacker's address was queried"
    );
    no_route_writes(&server);
}

/// A policy naming one of the daemon's environment variables gets nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_credentials_from_env() {
    let server = cluster();
    let attacker = Receiver::start().await;
    // PATH is set in every process: the old daemon read it and sent it.
    put_policy(
        &server,
        A,
        "token-env",
        json!({ "address": attacker.url, "auth": { "bearerTokenEnv": "PATH" } }),
    );
    put_policy(
        &server,
        B,
        "password-env",
        json!({ "address": attacker.url, "auth": { "basic": { "username": "u", "passwordEnv": "PATH" } } }),
    );
    let _daemon = daemon(&server, PrometheusAccess::open(), None);

    for (ns, name, field) in [
        (A, "token-env", "auth.bearerTokenEnv"),
        (B, "password-env", "auth.basic.passwordEnv"),
    ] {
        let (reason, message) = wait_refused(&server, ns, name).await;
        assert_eq!(reason, "CredentialsNotAllowed", "{message}");
        assert!(
            message.contains(field) && message.contains("environment variable"),
            "{message}"
        );
        assert!(message.contains(&format!("namespace `{ns}`")), "{message}");
    }
    assert!(
        attacker.authorizations().is_empty(),
        "the attacker's address was queried"
    );
    no_route_writes(&server);
}

/// A policy in team-a gets the Secret of team-a, and cannot name team-b's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_reads_secret_only_in_policy_namespace() {
    let server = cluster();
    let prometheus = Receiver::start().await;
    let secret_ref = json!({ "bearerTokenSecretRef": { "name": "prom-token", "key": "token" } });
    put_policy(
        &server,
        A,
        "own",
        json!({ "address": prometheus.url, "auth": secret_ref }),
    );
    let cross =
        json!({ "bearerTokenSecretRef": { "name": "prom-token", "key": "token", "namespace": B } });
    server
        .put_object(&policies(), {
            let mut p = server.get_object(&policies(), Some(A), "own").unwrap();
            p["metadata"] = json!({ "name": "cross", "namespace": A });
            p["spec"]["router"]["istio"]["virtualService"] = json!("other");
            p["spec"]["analysis"]["prometheus"]["auth"] = cross;
            p.as_object_mut().unwrap().remove("status");
            p
        })
        .unwrap();
    let _daemon = daemon(&server, PrometheusAccess::open(), None);

    let seen = prometheus.wait_for_queries().await;
    assert!(
        seen.iter()
            .all(|a| a.as_deref() == Some("Bearer token-of-team-a")),
        "credentials sent: {seen:?}"
    );
    let (reason, message) = wait_refused(&server, A, "cross").await;
    assert_eq!(reason, "InvalidPolicy", "{message}");
    assert!(message.contains("namespace"), "{message}");
    let reads = secret_reads(&server);
    assert!(!reads.is_empty());
    for read in &reads {
        assert!(
            read.starts_with("GET /api/v1/namespaces/team-a/secrets/prom-token"),
            "{reads:?}"
        );
    }
}

/// With providers configured (and an allow-list), a policy cannot send its credentials
/// or queries anywhere else; a policy using a provider gets the operator's credentials
/// without ever seeing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_address_outside_allow_list() {
    let server = cluster();
    let provider = Receiver::start().await;
    let attacker = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("operator-token");
    std::fs::write(&token, "operator-token\n").unwrap();
    let providers = parse_providers(
        &format!(
            "providers:\n- name: main\n  address: {}\n  auth: {{bearerTokenFile: {}}}\n",
            provider.url,
            token.display()
        ),
        "providers.yaml",
    )
    .unwrap();
    let allowed = vec![AllowedAddress::parse(&provider.url).unwrap()];
    let access = PrometheusAccess::new(providers, Some(allowed), true);

    let secret_ref = json!({ "bearerTokenSecretRef": { "name": "prom-token", "key": "token" } });
    put_policy(
        &server,
        A,
        "elsewhere",
        json!({ "address": attacker.url, "auth": secret_ref }),
    );
    put_policy(&server, B, "by-name", json!({ "provider": "main" }));
    let _daemon = daemon(&server, access, None);

    let (reason, message) = wait_refused(&server, A, "elsewhere").await;
    assert_eq!(reason, "PrometheusNotAllowed", "{message}");
    assert!(
        message.contains("not allowed") && message.contains("configured: main"),
        "{message}"
    );
    let seen = provider.wait_for_queries().await;
    assert!(
        seen.iter()
            .all(|a| a.as_deref() == Some("Bearer operator-token")),
        "{seen:?}"
    );
    assert!(
        attacker.authorizations().is_empty(),
        "the disallowed address was queried"
    );
    // Nothing was read for the refused policy either.
    assert!(
        secret_reads(&server).is_empty(),
        "{:?}",
        secret_reads(&server)
    );
    let refused_writes = server
        .requests_matching("PATCH", "/virtualservices/")
        .into_iter()
        .filter(|r| r.path.contains(A))
        .count();
    assert_eq!(refused_writes, 0, "the refused policy wrote its route");
}

/// `shiftgate check` refuses `http://user:password@host` with the place and a hint, and
/// does not print the password.
#[test]
fn check_refuses_password_in_prometheus_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        "apiVersion: shiftgate.dev/v1alpha1\nkind: RolloutPolicy\nmetadata: { name: checkout, namespace: shop }\nspec:\n  revision: v2\n  router:\n    istio:\n      virtualService: checkout\n      stable: { host: checkout-v1 }\n      canary: { host: checkout-v2 }\n  steps: [0, 50, 100]\n  analysis:\n    minRequests: 10\n    prometheus:\n      address: http://shiftgate:hunter2@prometheus:9090\n    metrics:\n      - { name: errors, template: istio-error-rate, max: 0.01 }\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("policy.yaml:15:7: spec.analysis.prometheus.address"),
        "{text}"
    );
    assert!(
        text.contains("credentials in the URL") && text.contains("passwordSecretRef"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "the password was printed: {text}"
    );
}

/// A URL with a password (one that reaches the daemon, or `run`'s source) never shows
/// it: not in status, not in Events, not in any error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_url_userinfo_is_redacted_in_status_and_errors() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("http://shiftgate:hunter2@127.0.0.1:{closed}");

    // `shiftgate run`'s source, with the URL as written (as if `check` were skipped).
    let spec: PrometheusSpec =
        serde_json::from_value(json!({ "address": address, "timeout": "1s" })).unwrap();
    let connection = PrometheusSource::new(None).connect(Some(&spec)).unwrap();
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let sample = connection.query("up", at).await;
    let shown = format!("{sample:?} {connection:?}");
    assert!(shown.contains("***@127.0.0.1"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let bad: PrometheusSpec =
        serde_json::from_value(json!({ "address": "ftp://u:hunter2@h" })).unwrap();
    let error = PrometheusSource::new(None)
        .connect(Some(&bad))
        .err()
        .map(|e| e.to_string());
    assert!(!error.unwrap_or_default().contains("hunter2"));

    // The daemon: whatever it says about the policy, the password is in none of it.
    let server = cluster();
    put_policy(
        &server,
        A,
        "in-url",
        json!({ "address": address, "timeout": "500ms" }),
    );
    let _daemon = daemon(&server, PrometheusAccess::open(), None);
    wait_until("a refusal or an analysis in the policy's status", || {
        let status = status(&server, A, "in-url");
        let refused = status["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Accepted" && c["status"] == "False")
        });
        (refused || status["lastAnalysis"].is_object()).then_some(())
    })
    .await;
    let status = status(&server, A, "in-url").to_string();
    assert!(!status.contains("hunter2"), "status: {status}");
    assert!(status.contains("***@127.0.0.1"), "status: {status}");
    for request in server.requests() {
        assert!(
            !request.body.contains("hunter2"),
            "{} {}: {}",
            request.method,
            request.path,
            request.body
        );
    }
}

/// The grants of deploy/ RBAC as (group, resource, verb).
fn granted() -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for file in ["clusterrole.yaml", "role.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(file);
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for rule in doc["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            group.as_str().unwrap().to_owned(),
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// What the API server saw the daemon do, as RBAC grants.
fn used(server: &TestApiServer) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for request in server.requests() {
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let Ok(parsed) = ResourcePath::parse(path) else {
            // Not a resource (discovery, /version): no grant covers it, so it shows up.
            out.insert(("?".to_owned(), path.to_owned(), request.method.clone()));
            continue;
        };
        let resource = match &parsed.subresource {
            Some(sub) => format!("{}/{sub}", parsed.group_resource.resource),
            None => parsed.group_resource.resource.clone(),
        };
        let verb = match (request.method.as_str(), parsed.name.is_some()) {
            ("GET", true) => "get",
            ("GET", false)
                if query
                    .split('&')
                    .any(|p| p == "watch=true" || p == "watch=1") =>
            {
                "watch"
            }
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PATCH", _) => "patch",
            ("PUT", _) => "update",
            ("DELETE", _) => "delete",
            (other, _) => panic!("unexpected method {other}"),
        };
        out.insert((
            parsed.group_resource.group.clone(),
            resource,
            verb.to_owned(),
        ));
    }
    out
}

/// deploy/ grants exactly what the daemon calls: every call it makes is granted, and
/// every grant is used (kube's event recorder patches an Event only when the same
/// Event repeats, which this rollout does not provoke: the one named exception).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_only_what_is_used() {
    let server = cluster();
    let prometheus = Receiver::start().await;
    // An Istio rollout with a Secret of its namespace, a Service blue/green, a refusal.
    let secret_ref = json!({ "bearerTokenSecretRef": { "name": "prom-token", "key": "token" } });
    put_policy(
        &server,
        A,
        "istio",
        json!({ "address": prometheus.url, "auth": secret_ref }),
    );
    server
        .put_object(
            &ResourceRef::new("", "v1", "services"),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "web", "namespace": B },
                "spec": { "selector": { "app": "web", "color": "blue" }, "ports": [{ "port": 80 }] }
            }),
        )
        .unwrap();
    server
        .put_object(
            &policies(),
            json!({
                "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
                "metadata": { "name": "service", "namespace": B },
                "spec": {
                    "revision": "green",
                    "router": { "service": { "service": "web", "selectorKey": "color", "stableValue": "blue", "canaryValue": "green" } },
                    "steps": [0, { "weight": 100, "hold": "1s" }],
                    "analysis": { "interval": "1s", "metrics": [] },
                    "workloads": { "stable": "web-blue", "canary": "web-green", "scaleDown": { "after": "1s" } }
                }
            }),
        )
        .unwrap();
    for color in ["blue", "green"] {
        server
            .put_object(
                &ResourceRef::new("apps", "v1", "deployments"),
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": { "name": format!("web-{color}"), "namespace": B },
                    "spec": { "replicas": 2, "selector": { "matchLabels": { "color": color } },
                              "template": { "metadata": { "labels": { "color": color } },
                                            "spec": { "containers": [{ "name": "web", "image": format!("web:{color}") }] } } },
                    "status": { "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2 }
                }),
            )
            .unwrap();
    }
    put_policy(
        &server,
        B,
        "refused",
        json!({ "address": prometheus.url, "auth": { "bearerTokenEnv": "PATH" } }),
    );
    let lease = LeaseConfig::new(
        "shiftgate",
        "shiftgate",
        "shiftgate-0",
        Duration::from_secs(2),
    );
    let _daemon = daemon(&server, PrometheusAccess::open(), Some(lease));

    prometheus.wait_for_queries().await;
    wait_refused(&server, B, "refused").await;
    wait_until(
        "the Service to be switched and every call kind to be made",
        || {
            let service =
                server.get_object(&ResourceRef::new("", "v1", "services"), Some(B), "web")?;
            let used = used(&server);
            (service["spec"]["selector"]["color"] == "green"
                && used.contains(&(
                    "coordination.k8s.io".into(),
                    "leases".into(),
                    "update".into(),
                ))
                && used.contains(&(
                    "networking.istio.io".into(),
                    "virtualservices".into(),
                    "patch".into(),
                ))
                && used.contains(&("apps".into(), "deployments/scale".into(), "patch".into())))
            .then_some(())
        },
    )
    .await;

    // The scale subresource wrote the Deployment's own replicas (and nothing else).
    let deployment = |name: &str| {
        server
            .get_object(
                &ResourceRef::new("apps", "v1", "deployments"),
                Some(B),
                name,
            )
            .unwrap()
    };
    assert_eq!(deployment("web-blue")["spec"]["replicas"], 0);
    assert_eq!(deployment("web-green")["spec"]["replicas"], 2);
    let used = used(&server);
    let granted = granted();
    let not_granted: Vec<_> = used.difference(&granted).collect();
    assert!(
        not_granted.is_empty(),
        "the daemon called what deploy/ does not grant: {not_granted:?}"
    );
    let series_patch = (
        "events.k8s.io".to_owned(),
        "events".to_owned(),
        "patch".to_owned(),
    );
    // Read only while an `undo` is pending, to refuse one onto a release that is gone;
    // tests/regression/lifecycle_undo.rs calls them with deploy/'s grants.
    let undo_probe = [
        ("".to_owned(), "pods".to_owned(), "list".to_owned()),
        (
            "discovery.k8s.io".to_owned(),
            "endpointslices".to_owned(),
            "list".to_owned(),
        ),
    ];
    let unused: Vec<_> = granted
        .difference(&used)
        .filter(|g| **g != series_patch && !undo_probe.contains(g))
        .collect();
    assert!(
        unused.is_empty(),
        "deploy/ grants what the daemon never calls: {unused:?}"
    );
    // Sanity: the rollout really ran through each kind of call.
    let kinds: BTreeMap<&str, usize> = used.iter().fold(BTreeMap::new(), |mut m, (_, r, _)| {
        *m.entry(r.as_str()).or_default() += 1;
        m
    });
    assert!(
        kinds.contains_key("secrets") && kinds.contains_key("events"),
        "{kinds:?}"
    );
}
