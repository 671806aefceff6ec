//! The labels the built-in queries select, against a real Prometheus: `shiftgate run` on
//! the in-repo test API server (127.0.0.1) with the seeds' own setups, a real Prometheus
//! scraping an in-test exporter of the series those setups produce, judged and
//! promoted.
//!
//! - seed 003: DestinationRule subsets `v1`/`v2` whose pods carry
//!   `version: blue-web-echo`/`green-web-echo` (Istio reports those as
//!   `destination_version`; the subset names appear nowhere in the metrics);
//! - seed 004: subsets selecting pods by `color`, judged through
//!   `analysis.targetLabels` on `destination_workload`;
//! - seed 001: a Service selector switch without a mesh, judged on the app's own
//!   `http_requests_total` (no `istio_requests_total` at all);
//! - and `shiftgate check`, which reads no cluster, saying what it will select.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};
use support::envoy::{require_binary, shiftgate_binary};
use support::exporter::Exporter;
use support::prometheus::{Prometheus, ScrapeTarget};

const NS: &str = "echo";
const HOST: &str = "web-echo.echo.svc.cluster.local";
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn virtual_services() -> ResourceRef {
    ResourceRef::new("networking.istio.io", "v1", "virtualservices")
}

fn destination_rules() -> ResourceRef {
    ResourceRef::new("networking.istio.io", "v1", "destinationrules")
}

/// Seed 003's VirtualService: one route, all on subset `v1`.
fn virtual_service(stable: &str, canary: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": "web-echo", "namespace": NS },
        "spec": {
            "hosts": ["service-mesh.dev"],
            "http": [{
                "route": [
                    { "destination": { "host": "web-echo", "subset": stable }, "weight": 100 },
                    { "destination": { "host": "web-echo", "subset": canary }, "weight": 0 }
                ]
            }]
        }
    })
}

fn destination_rule(subsets: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": { "name": "web-echo", "namespace": NS },
        "spec": { "host": "web-echo", "subsets": subsets }
    })
}

/// `istio_requests_total` as the destination sidecars report it, per scrape: 20 requests
/// on each release, none failed. `labels(release)` are each release's own labels.
fn istio_counters(scrape: u64, releases: [&str; 2], labels: fn(&str) -> String) -> String {
    let mut out = String::from("# TYPE istio_requests_total counter\n");
    for release in releases {
        out += &format!(
            "istio_requests_total{{reporter=\"destination\",destination_service=\"{HOST}\",{},response_code=\"200\"}} {}\n",
            labels(release),
            scrape * 20
        );
    }
    out
}

struct Cluster {
    server: TestApiServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn start(objects: &[(ResourceRef, Value)]) -> Cluster {
        let server = TestApiServer::start_background().unwrap();
        for (resource, object) in objects {
            server.put_object(resource, object.clone()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = server.write_kubeconfig(dir.path(), NS).unwrap();
        Cluster {
            server,
            dir,
            kubeconfig,
        }
    }

    fn policy(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("policy.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn state(&self, name: &str) -> Value {
        let file = self.dir.path().join(format!("state/{NS}/{name}.json"));
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    }

    /// `shiftgate run POLICY` with `KUBECONFIG` set, to its end.
    fn run(&self, policy: &Path) -> Output {
        let stdout = self.dir.path().join("stdout");
        let stderr = self.dir.path().join("stderr");
        let child = Command::new(shiftgate_binary())
            .arg("run")
            .arg(policy)
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
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

/// Prometheus scraping `render`, once `ready` (a query) has a rate.
async fn prometheus_serving(
    render: impl Fn(u64) -> String + Send + Sync + 'static,
    ready: &str,
) -> (Exporter, Prometheus) {
    require_binary("prometheus");
    let exporter = Exporter::start(render).await;
    let prometheus = Prometheus::start_scraping(vec![ScrapeTarget::new(
        "app",
        &exporter.address(),
        "/metrics",
    )])
    .await;
    prometheus
        .wait_for(
            &format!("sum(rate({ready}[5s]))"),
            Duration::from_secs(30),
            |result| result.as_array().is_some_and(|r| !r.is_empty()),
        )
        .await;
    (exporter, prometheus)
}

/// A subset-level policy on seed 003's VirtualService, stepping 50 → 100, every step
/// judged (error rate and `minRequests` from the built-in's counts). `extra` goes into
/// `analysis`.
fn subset_policy(prometheus: &str, stable: &str, canary: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: web-echo }}
spec:
  revision: v2
  router:
    istio:
      virtualService: web-echo
      stable: {{ host: web-echo, subset: {stable} }}
      canary: {{ host: web-echo, subset: {canary} }}
  steps: [50, 100]
  analysis:
    interval: 1s
    window: 5s
    prometheus: {{ address: "{prometheus}", timeout: 2s }}
    minRequests: 5
    metrics:
      - {{ name: error-rate, template: istio-error-rate, max: 0.05 }}
      - {{ name: errors-vs-stable, template: istio-error-rate, compare: {{ maxIncrease: 0.05 }}, judge: threshold }}
    failureLimit: 0
    inconclusiveLimit: 3
{extra}"#
    )
}

/// The rollout was judged (its last analysis passed) and promoted.
fn assert_judged_and_promoted(cluster: &Cluster, output: &Output, name: &str) {
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let state = cluster.state(name);
    assert_eq!(state["status"]["phase"], "Promoted", "{state:#}\n{log}");
    assert_eq!(
        state["status"]["lastAnalysis"]["verdict"], "Pass",
        "{state:#}\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_subsets_are_selected_by_their_pods_version_labels() {
    let render = |n| {
        istio_counters(n, ["blue-web-echo", "green-web-echo"], |r| {
            format!("destination_version=\"{r}\"")
        })
    };
    let (_exporter, prometheus) = prometheus_serving(render, "istio_requests_total").await;
    let rule = destination_rule(json!([
        { "name": "v1", "labels": { "version": "blue-web-echo" } },
        { "name": "v2", "labels": { "version": "green-web-echo" } }
    ]));
    let cluster = Cluster::start(&[
        (virtual_services(), virtual_service("v1", "v2")),
        (destination_rules(), rule),
    ]);
    let policy = cluster.policy(&subset_policy(&prometheus.url(), "v1", "v2", ""));
    let output = tokio::task::block_in_place(|| cluster.run(&policy));
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        log.contains(r#"destination_version="green-web-echo""#),
        "the run says what it selects: {log}"
    );
    assert_judged_and_promoted(&cluster, &output, "web-echo");
    assert!(
        !cluster
            .server
            .requests_matching("GET", "/destinationrules")
            .is_empty(),
        "the DestinationRule was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_colour_subsets_are_judged_through_target_labels() {
    // Pods labelled `color` only: Istio reports destination_version "unknown" for both.
    let render = |n| {
        istio_counters(n, ["myapp-blue", "myapp-green"], |r| {
            format!("destination_version=\"unknown\",destination_workload=\"{r}\"")
        })
    };
    let (_exporter, prometheus) = prometheus_serving(render, "istio_requests_total").await;
    let rule = destination_rule(json!([
        { "name": "blue", "labels": { "color": "blue" } },
        { "name": "green", "labels": { "color": "green" } }
    ]));
    let cluster = Cluster::start(&[
        (virtual_services(), virtual_service("blue", "green")),
        (destination_rules(), rule),
    ]);
    let labels = "    targetLabels:\n      stable: { destination_workload: myapp-blue }\n      canary: { destination_workload: myapp-green }\n";
    let policy = cluster.policy(&subset_policy(&prometheus.url(), "blue", "green", labels));
    let output = tokio::task::block_in_place(|| cluster.run(&policy));
    assert_judged_and_promoted(&cluster, &output, "web-echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_service_switch_without_a_mesh_is_judged_on_the_apps_counters() {
    // Only the app's own counters: no istio_requests_total anywhere.
    let render = |n: u64| {
        let mut out = String::from("# TYPE http_requests_total counter\n");
        for version in ["1.10", "1.11"] {
            out += &format!(
                "http_requests_total{{version=\"{version}\",code=\"200\"}} {}\n",
                n * 20
            );
        }
        out
    };
    let (_exporter, prometheus) = prometheus_serving(render, "http_requests_total").await;
    let services = ResourceRef::new("", "v1", "services");
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "nginx", "namespace": NS },
        "spec": {
            "selector": { "name": "nginx", "version": "1.10" },
            "ports": [{ "port": 80, "targetPort": 80 }]
        }
    });
    let cluster = Cluster::start(&[(services.clone(), service)]);
    // policies/service-blue-green.yaml, with this test's Prometheus and a short cadence.
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/service-blue-green.yaml"),
    )
    .unwrap();
    let text = shipped
        .replace("default/nginx", &format!("{NS}/nginx"))
        .replace("hold: 5m", "hold: 3s")
        .replace(
            "interval: 30s",
            "interval: 1s\n    window: 5s\n    inconclusiveLimit: 3",
        )
        .replace(
            r#"{ address: "http://prometheus.monitoring:9090" }"#,
            &format!(r#"{{ address: "{}", timeout: 2s }}"#, prometheus.url()),
        );
    let text = drop_checks(&text);
    let policy = cluster.policy(&text.replace(
        "name: nginx\n",
        &format!("name: nginx\n  namespace: {NS}\n"),
    ));
    let output = tokio::task::block_in_place(|| cluster.run(&policy));
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        log.contains(r#"app-* queries select stable {version="1.10"}, canary {version="1.11"}"#),
        "the run says what it selects: {log}"
    );
    assert_judged_and_promoted(&cluster, &output, "nginx");
    let switched = cluster
        .server
        .get_object(&services, Some(NS), "nginx")
        .unwrap();
    assert_eq!(switched["spec"]["selector"]["version"], "1.11");
}

/// The policy without its `checks:` (they name an in-cluster URL).
fn drop_checks(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with("  checks:") {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with("    ") {
            continue;
        }
        skipping = false;
        out += line;
        out.push('\n');
    }
    out
}

/// `shiftgate check` reads no cluster: it says what the queries will select and what it
/// assumes about the labels it cannot see.
#[test]
fn check_says_what_the_queries_select_and_what_it_assumes() {
    let output = Command::new(shiftgate_binary())
        .args([
            "check",
            "policies/istio-subset-labels.yaml",
            "policies/service-blue-green.yaml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains(r#"destination_version="v2"} (assumed: Istio reports each subset's pod `version` label as destination_version, which the rollout reads from the subsets' DestinationRule"#),
        "{said}"
    );
    assert!(
        said.contains(
            r#"minRequests counts `sum(increase(http_requests_total{version="1.11"}[30s]))`"#
        ),
        "{said}"
    );
}
