//! `shiftgate run` on an Istio policy, as a CI job runs it: the built binary with
//! `KUBECONFIG` pointing at the in-repo test API server (127.0.0.1), a real Prometheus
//! scraping an in-test exporter of Istio-shaped `istio_requests_total` counters, and the
//! state under a temporary `--state-dir`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use shiftgate::policy::RolloutPolicy;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};
use support::envoy::{require_binary, shiftgate_binary};
use support::exporter::Exporter;
use support::prometheus::{Prometheus, ScrapeTarget};

const NS: &str = "shop";
const STABLE: &str = "checkout.prod.svc.cluster.local";
const CANARY: &str = "checkout.stage.svc.cluster.local";
/// A run that takes longer than this is stuck: the test fails instead of hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn vs_resource() -> ResourceRef {
    ResourceRef::new("networking.istio.io", "v1", "virtualservices")
}

/// A VirtualService with the managed route `primary` (all traffic on stable) and an
/// unmanaged `admin` route with a retry policy shiftgate must not touch.
fn virtual_service(managed_route: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "checkout",
            "namespace": NS,
            "labels": { "team": "payments" },
            "annotations": { "owner": "payments@example.com" }
        },
        "spec": {
            "hosts": ["checkout.example.com"],
            "gateways": ["shop/gateway"],
            "http": [
                {
                    "name": "admin",
                    "match": [{ "uri": { "prefix": "/admin" } }],
                    "route": [{ "destination": { "host": STABLE, "port": { "number": 8080 } } }],
                    "retries": { "attempts": 3, "perTryTimeout": "2s" }
                },
                {
                    "name": managed_route,
                    "timeout": "5s",
                    "route": [
                        { "destination": { "host": STABLE }, "weight": 100 },
                        { "destination": { "host": CANARY }, "weight": 0 }
                    ]
                }
            ]
        }
    })
}

/// Counters of one scrape: per scrape, `ok` 200s and `failed` 503s on the canary and
/// 20 200s on stable, as the destination sidecars report them.
fn istio_counters(scrape: u64, ok: u64, failed: u64) -> String {
    let canary = format!(r#"reporter="destination",destination_service="{CANARY}""#);
    let stable = format!(r#"reporter="destination",destination_service="{STABLE}""#);
    format!(
        "# TYPE istio_requests_total counter\n\
         istio_requests_total{{{canary},response_code=\"200\"}} {}\n\
         istio_requests_total{{{canary},response_code=\"503\"}} {}\n\
         istio_requests_total{{{stable},response_code=\"200\"}} {}\n",
        scrape * ok,
        scrape * failed,
        scrape * 20
    )
}

/// The test API server, a kubeconfig pointing at it (context namespace `shop`), and a
/// temporary directory for the policy and the state.
struct Cluster {
    server: TestApiServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

fn cluster(managed_route: &str) -> Cluster {
    let server = TestApiServer::start_background().unwrap();
    server
        .put_object(&vs_resource(), virtual_service(managed_route))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path(), NS).unwrap();
    Cluster {
        server,
        dir,
        kubeconfig,
    }
}

impl Cluster {
    /// A policy without `metadata.namespace`: the kubeconfig context's (`shop`) is used.
    fn policy(&self, prometheus: &str) -> PathBuf {
        let text = format!(
            r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: checkout }}
spec:
  revision: v2
  router:
    istio:
      virtualService: checkout
      routes: [primary]
      stable: {{ host: {STABLE} }}
      canary: {{ host: {CANARY} }}
  steps: [50, 100]
  analysis:
    interval: 1s
    window: 5s
    prometheus: {{ address: "{prometheus}", timeout: 2s }}
    minRequests: 5
    metrics:
      - {{ name: error-rate, template: istio-error-rate, max: 0.05 }}
    failureLimit: 0
    inconclusiveLimit: 30
"#
        );
        let path = self.dir.path().join("policy.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `shiftgate run POLICY --state-dir …` with `KUBECONFIG` set, to its end.
    fn run(&self, policy: &Path) -> Output {
        self.run_with(policy, &[])
    }

    /// [`Self::run`] with more arguments.
    fn run_with(&self, policy: &Path, extra: &[&str]) -> Output {
        // Output goes to files, so a chatty child never blocks on a full pipe.
        let stdout = self.dir.path().join("stdout");
        let stderr = self.dir.path().join("stderr");
        let child = Command::new(shiftgate_binary())
            .arg("run")
            .arg(policy)
            .args(extra)
            .arg("--state-dir")
            .arg(self.state_dir())
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("SHIFTGATE_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let status = wait_with_timeout(child);
        Output {
            status,
            stdout: std::fs::read(&stdout).unwrap(),
            stderr: std::fs::read(&stderr).unwrap(),
        }
    }

    fn virtual_service(&self) -> Value {
        self.server
            .get_object(&vs_resource(), Some(NS), "checkout")
            .unwrap()
    }

    fn patches(&self) -> usize {
        self.server
            .requests_matching("PATCH", "/virtualservices/")
            .len()
    }
}

/// Kills the child when it outlives `RUN_TIMEOUT` (or the test panics).
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_with_timeout(child: Child) -> ExitStatus {
    const POLL: Duration = Duration::from_millis(100);
    let mut guard = ChildGuard(Some(child));
    // Polls (no clock read): at most RUN_TIMEOUT / POLL waits, each at least POLL long.
    for _ in 0..RUN_TIMEOUT.as_millis() / POLL.as_millis() {
        let child = guard.0.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            guard.0 = None;
            return status;
        }
        std::thread::sleep(POLL);
    }
    panic!("shiftgate run did not finish within {RUN_TIMEOUT:?}");
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The canary weight of the managed route `primary`.
fn canary_weight(vs: &Value) -> u64 {
    let route = vs["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "primary")
        .unwrap();
    route["route"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"]["host"] == CANARY)
        .unwrap()["weight"]
        .as_u64()
        .unwrap_or(0)
}

/// `vs` with the managed weights and server-maintained metadata removed.
fn without_weights(vs: &Value) -> Value {
    let mut vs = vs.clone();
    for field in ["resourceVersion", "generation", "managedFields"] {
        vs["metadata"].as_object_mut().unwrap().remove(field);
    }
    for route in vs["spec"]["http"].as_array_mut().unwrap() {
        for destination in route["route"].as_array_mut().unwrap() {
            destination.as_object_mut().unwrap().remove("weight");
        }
    }
    vs
}

/// Prometheus scraping an exporter with `ok`/`failed` canary requests per scrape, once it
/// has enough samples for a rate.
async fn prometheus_with(ok: u64, failed: u64) -> (Exporter, Prometheus) {
    require_binary("prometheus");
    let exporter = Exporter::start(move |n| istio_counters(n, ok, failed)).await;
    let prometheus = Prometheus::start_scraping(vec![ScrapeTarget::new(
        "istio",
        &exporter.address(),
        "/metrics",
    )])
    .await;
    let query = format!(r#"sum(rate(istio_requests_total{{destination_service="{CANARY}"}}[5s]))"#);
    prometheus
        .wait_for(&query, Duration::from_secs(30), |result| {
            result.as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    (exporter, prometheus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_is_promoted_and_only_weights_change() {
    let (_exporter, prometheus) = prometheus_with(20, 0).await;
    let cluster = cluster("primary");
    let original = cluster.virtual_service();
    let policy = cluster.policy(&prometheus.url());

    let output = tokio::task::block_in_place(|| cluster.run(&policy));
    let log = stderr(&output);
    eprintln!("{log}");
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("shop/checkout"), "{log}");
    assert!(log.contains("analysis passed"), "{log}");

    let promoted = cluster.virtual_service();
    assert_eq!(canary_weight(&promoted), 100, "{promoted:#}");
    assert_eq!(without_weights(&promoted), without_weights(&original));
    let state: Value = serde_json::from_slice(
        &std::fs::read(cluster.state_dir().join("shop/checkout.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["status"]["phase"], "Promoted", "{state:#}");

    // `status POLICY` finds the state although the file names no namespace.
    let status = Command::new(shiftgate_binary())
        .arg("status")
        .arg(&policy)
        .arg("--state-dir")
        .arg(cluster.state_dir())
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .unwrap();
    let shown = stderr(&status);
    assert_eq!(status.status.code(), Some(0), "{shown}");
    assert!(shown.contains("Promoted"), "{shown}");

    // A second run of the same revision finds it settled and writes nothing.
    let patches = cluster.patches();
    let again = tokio::task::block_in_place(|| cluster.run(&policy));
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(cluster.patches(), patches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_to_weight_zero() {
    let (_exporter, prometheus) = prometheus_with(10, 10).await;
    let cluster = cluster("primary");
    let original = cluster.virtual_service();
    let policy = cluster.policy(&prometheus.url());

    let output = tokio::task::block_in_place(|| cluster.run(&policy));
    let log = stderr(&output);
    eprintln!("{log}");
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("RolledBack"), "{log}");
    assert!(log.contains("error-rate 0.5 > max 0.05"), "{log}");

    let rolled_back = cluster.virtual_service();
    assert_eq!(canary_weight(&rolled_back), 0, "{rolled_back:#}");
    assert_eq!(without_weights(&rolled_back), without_weights(&original));
    assert!(cluster.patches() >= 2, "the canary got traffic, then none");
}

#[test]
fn a_missing_route_is_refused_before_anything_is_written() {
    let cluster = cluster("main");
    // Prometheus is never asked: the router's preflight fails first.
    let policy = cluster.policy("http://127.0.0.1:9");

    let output = cluster.run(&policy);
    let log = stderr(&output);
    eprintln!("{log}");
    assert_eq!(output.status.code(), Some(3), "{log}");
    assert!(log.contains("primary"), "{log}");
    assert!(log.contains("shop/checkout"), "{log}");
    assert_eq!(cluster.patches(), 0, "{log}");
    assert!(!cluster.state_dir().join("shop/checkout.json").exists());
}

/// Puts the policy of `file` in the cluster as `namespace/name` with `status`.
fn put_daemon_policy(cluster: &Cluster, file: &Path, namespace: &str, name: &str, status: Value) {
    let mut object: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    object["metadata"]["namespace"] = json!(namespace);
    object["metadata"]["name"] = json!(name);
    object["status"] = status;
    cluster
        .server
        .put_object(&ResourceRef::of::<RolloutPolicy>(), object)
        .unwrap();
}

#[test]
fn a_policy_the_daemon_drives_is_refused() {
    let cluster = cluster("primary");
    let policy = cluster.policy("http://127.0.0.1:9");
    let progressing = json!({ "phase": "Progressing", "revision": "v2", "canaryWeight": 50 });
    put_daemon_policy(&cluster, &policy, NS, "checkout", progressing);

    let output = cluster.run(&policy);
    let log = stderr(&output);
    eprintln!("{log}");
    assert_eq!(output.status.code(), Some(3), "{log}");
    assert!(log.contains("daemon is driving it"), "{log}");
    assert!(log.contains("Progressing"), "{log}");
    assert_eq!(cluster.patches(), 0, "{log}");
}

#[test]
fn a_service_policy_switches_the_selector_and_nothing_else() {
    let cluster = cluster("primary");
    let services = ResourceRef::new("", "v1", "services");
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "checkout", "namespace": NS },
        "spec": {
            "selector": { "app": "checkout", "color": "blue" },
            "ports": [{ "port": 80, "targetPort": 8080 }]
        }
    });
    cluster.server.put_object(&services, service).unwrap();
    // No metrics: the steps pass on their hold time alone (the policy draws a warning).
    let policy = cluster.dir.path().join("service.yaml");
    std::fs::write(
        &policy,
        r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: checkout, namespace: shop }
spec:
  revision: green
  router:
    service: { service: checkout, selectorKey: color, stableValue: blue, canaryValue: green }
  steps: [0, { weight: 100, hold: 1s }]
  analysis: { interval: 1s, metrics: [] }
"#,
    )
    .unwrap();

    let output = cluster.run(&policy);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let switched = cluster
        .server
        .get_object(&services, Some(NS), "checkout")
        .unwrap();
    assert_eq!(
        switched["spec"]["selector"],
        json!({ "app": "checkout", "color": "green" }),
        "{log}"
    );
    assert_eq!(
        cluster
            .server
            .requests_matching("PATCH", "/services/")
            .len(),
        1,
        "{log}"
    );
}

#[test]
fn a_daemon_policy_of_another_name_on_the_same_route_is_refused_until_it_settles() {
    let cluster = cluster("main");
    let policy = cluster.policy("http://127.0.0.1:9");
    // In another namespace, naming the VirtualService with its namespace.
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("virtualService: checkout", "virtualService: shop/checkout");
    let other = cluster.dir.path().join("other.yaml");
    std::fs::write(&other, text).unwrap();
    let progressing = json!({ "phase": "Progressing", "revision": "v2", "canaryWeight": 50 });
    put_daemon_policy(&cluster, &other, "payments", "checkout-green", progressing);

    let output = cluster.run(&policy);
    let log = stderr(&output);
    eprintln!("{log}");
    assert_eq!(output.status.code(), Some(3), "{log}");
    assert!(log.contains("payments/checkout-green"), "{log}");
    assert!(
        log.contains("VirtualService shop/checkout route primary"),
        "{log}"
    );

    // Once the daemon has settled it, the route is free: the run goes on to the
    // router's preflight (the VirtualService has no route `primary`: exit 3 there).
    let promoted = json!({ "phase": "Promoted", "revision": "v2", "canaryWeight": 100 });
    put_daemon_policy(&cluster, &other, "payments", "checkout-green", promoted);
    let output = cluster.run(&policy);
    let log = stderr(&output);
    eprintln!("{log}");
    assert_eq!(output.status.code(), Some(3), "{log}");
    assert!(!log.contains("payments/checkout-green"), "{log}");
    assert!(log.contains("primary"), "{log}");
    assert_eq!(cluster.patches(), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_exits_130_and_the_next_run_resumes() {
    let (_exporter, prometheus) = prometheus_with(20, 0).await;
    let cluster = cluster("primary");
    // A long hold at 50%: the run is still there when it is interrupted.
    let text = std::fs::read_to_string(cluster.policy(&prometheus.url()))
        .unwrap()
        .replace(
            "steps: [50, 100]",
            "steps: [{ weight: 50, hold: 10m }, 100]",
        );
    let policy = cluster.dir.path().join("long.yaml");
    std::fs::write(&policy, text).unwrap();
    let state_file = cluster.state_dir().join("shop/checkout.json");

    let stderr_file = cluster.dir.path().join("interrupted.stderr");
    let child = Command::new(shiftgate_binary())
        .arg("run")
        .arg(&policy)
        .arg("--state-dir")
        .arg(cluster.state_dir())
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(Some(child));
    // Polls the state file until the router confirmed 50%.
    let confirmed = (0..300).any(|_| {
        let state: Option<Value> = std::fs::read(&state_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let done = state.is_some_and(|s| {
            s["status"]["canaryWeight"] == 50 && s["status"]["stepStartedAt"].is_string()
        });
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    assert!(confirmed, "50% was never confirmed");
    let pid = guard.0.as_ref().unwrap().id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = wait_with_timeout(guard.0.take().unwrap());
    let log = std::fs::read_to_string(&stderr_file).unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert_eq!(canary_weight(&cluster.virtual_service()), 50, "{log}");

    // An operator command as a file, then the same command again: it resumes at 50%
    // (no write back to 0) and the promote ends the hold.
    let promote = Command::new(shiftgate_binary())
        .arg("promote")
        .arg(&policy)
        .arg("--state-dir")
        .arg(cluster.state_dir())
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .unwrap();
    assert_eq!(promote.status.code(), Some(0), "{}", stderr(&promote));
    let patches = cluster.patches();
    let output = tokio::task::block_in_place(|| cluster.run(&policy));
    let log = stderr(&output);
    eprintln!("{log}");
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert_eq!(canary_weight(&cluster.virtual_service()), 100, "{log}");
    assert_eq!(
        cluster.patches(),
        patches + 1,
        "one write: 50% to 100%\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_judges_every_step_and_writes_nothing() {
    let (_exporter, prometheus) = prometheus_with(20, 0).await;
    let cluster = cluster("primary");
    let original = cluster.virtual_service();
    let policy = cluster.policy(&prometheus.url());

    let output = tokio::task::block_in_place(|| cluster.run_with(&policy, &["--dry-run"]));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("analysis passed"), "{log}");
    assert_eq!(cluster.patches(), 0, "{log}");
    assert_eq!(cluster.virtual_service(), original);
    assert!(!cluster.state_dir().join("shop/checkout.json").exists());
}

#[test]
fn an_unknown_context_is_refused_before_the_cluster_is_asked() {
    let cluster = cluster("primary");
    let policy = cluster.policy("http://127.0.0.1:9");

    let output = cluster.run_with(&policy, &["--context", "nowhere"]);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{log}");
    assert!(log.contains("\"nowhere\""), "{log}");
    assert!(log.contains("kubectl config get-contexts"), "{log}");
    assert!(cluster.server.requests().is_empty(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_route_lease_is_taken_over_exits_8_and_writes_nothing_more() {
    let (_exporter, prometheus) = prometheus_with(20, 0).await;
    let cluster = cluster("primary");
    // A long hold at 50%, then 100%: only the Lease can end the run early.
    let text = std::fs::read_to_string(cluster.policy(&prometheus.url()))
        .unwrap()
        .replace(
            "steps: [50, 100]",
            "steps: [{ weight: 50, hold: 10m }, 100]",
        );
    let policy = cluster.dir.path().join("long.yaml");
    std::fs::write(&policy, text).unwrap();
    let state_file = cluster.state_dir().join("shop/checkout.json");
    let stderr_file = cluster.dir.path().join("taken.stderr");
    let child = Command::new(shiftgate_binary())
        .arg("run")
        .arg(&policy)
        .arg("--state-dir")
        .arg(cluster.state_dir())
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(Some(child));
    let confirmed = (0..300).any(|_| {
        let state: Option<Value> = std::fs::read(&state_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let done = state.is_some_and(|s| s["status"]["canaryWeight"] == 50);
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    assert!(confirmed, "50% was never confirmed");

    // Another run takes the route's Lease over.
    let leases = ResourceRef::new("coordination.k8s.io", "v1", "leases");
    let name = shiftgate::runtime::route_lease::lease_name("VirtualService shop/checkout");
    let mut lease = cluster
        .server
        .get_object(&leases, Some(NS), &name)
        .expect("the run holds a Lease");
    // Its renewal time stays the run's last one: the new holder is live from its change.
    lease["spec"]["holderIdentity"] = json!("pid 2 on ci-b");
    cluster.server.put_object(&leases, lease).unwrap();
    let patches = cluster.patches();

    let status = wait_with_timeout(guard.0.take().unwrap());
    let log = std::fs::read_to_string(&stderr_file).unwrap();
    assert_eq!(status.code(), Some(8), "{log}");
    assert!(
        log.contains("lost the run Lease of VirtualService shop/checkout"),
        "{log}"
    );
    assert_eq!(
        cluster.patches(),
        patches,
        "a write after the Lease was lost\n{log}"
    );
    assert_eq!(canary_weight(&cluster.virtual_service()), 50, "{log}");
}
