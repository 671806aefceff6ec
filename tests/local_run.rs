//! `shiftgate run` as a user runs it: the built binary against a real Envoy, real
//! Prometheus and two demo app instances; exit codes, state file, interruption and
//! resumption, operator commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::process::KillOnDrop;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use shiftgate::demo::app::{set_remote_faults, FaultsUpdate};
use shiftgate::demo::load::{run_load, LoadConfig, LoadCounters};
use shiftgate::demo::processes::start_prometheus;
use shiftgate::router::envoy::EnvoyRouter;
use shiftgate::router::TrafficRouter;
use support::envoy::{require_binary, shiftgate_binary, start, LocalEnvoy};
use tokio_util::sync::CancellationToken;

/// Real components plus steady load; the load stops when this is dropped.
struct Harness {
    local: LocalEnvoy,
    prometheus: std::net::SocketAddr,
    state_dir: tempfile::TempDir,
    load_stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.load_stop.cancel();
    }
}

async fn harness() -> Harness {
    require_binary("prometheus");
    let mut local = start().await;
    let prometheus = start_prometheus(&mut local.supervisor, local.envoy.admin)
        .await
        .unwrap();
    let load_stop = CancellationToken::new();
    let config = LoadConfig {
        target: local.envoy.listener,
        requests_per_second: 40,
        duration: Duration::from_secs(120),
        headers: Vec::new(),
    };
    let stop = load_stop.clone();
    tokio::spawn(async move { run_load(&config, &LoadCounters::default(), &stop).await });
    Harness {
        local,
        prometheus,
        state_dir: tempfile::tempdir().unwrap(),
        load_stop,
    }
}

impl Harness {
    fn policy(&self, steps: &str) -> PathBuf {
        let router = &self.local.envoy.router;
        let text = format!(
            r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: checkout, namespace: test }}
spec:
  revision: v2
  router:
    envoy:
      routesFile: "{routes}"
      adminAddress: "{admin}"
      stableCluster: {stable}
      canaryCluster: {canary}
  steps: {steps}
  testRoute: {{ cookie: "test=true" }}
  checks:
    - http: {{ url: "http://{listener}/", headers: {{ cookie: "test=true" }}, expectBody: v2 }}
  analysis:
    interval: 3s
    prometheus: {{ address: "http://{prometheus}", timeout: 2s }}
    minRequests: 5
    metrics:
      - {{ name: error-rate, template: envoy-error-rate, max: 0.05 }}
    failureLimit: 0
    inconclusiveLimit: 10
"#,
            routes = router.routes_file,
            admin = router.admin_address,
            stable = router.stable_cluster,
            canary = router.canary_cluster,
            listener = self.local.envoy.listener,
            prometheus = self.prometheus,
        );
        let path = self.state_dir.path().join("policy.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(shiftgate_binary());
        command
            .args(args)
            .arg("--state-dir")
            .arg(self.state_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    async fn served_weight(&self) -> u8 {
        let router = EnvoyRouter::new(&self.local.envoy.router, None).unwrap();
        router.read().await.unwrap().route.canary_weight
    }

    fn state(&self) -> serde_json::Value {
        let path = self.state_dir.path().join("test/checkout.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }
}

async fn finish(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls the state file until `phase` and `weight` (if given) show up.
async fn wait_for_state(state_file: &Path, predicate: impl Fn(&serde_json::Value) -> bool) {
    let polled = async {
        loop {
            if let Ok(bytes) = std::fs::read(state_file) {
                if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    if predicate(&doc) {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), polled)
        .await
        .expect("state never reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_release_is_promoted_and_exits_zero() {
    let h = harness().await;
    let policy = h.policy("[0, 50, 100]");
    let child = h
        .command(&["run", policy.to_str().unwrap(), "--output", "json"])
        .spawn()
        .unwrap();
    let output = finish(child).await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("check checks[0] passed"), "{log}");
    assert!(log.contains("error-rate: 0 ≤ max 0.05"), "{log}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["phase"], "Promoted");
    assert_eq!(json["exitCode"], 0);
    assert_eq!(h.state()["status"]["phase"], "Promoted");
    assert_eq!(h.served_weight().await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_and_exits_one() {
    let h = harness().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let broken = FaultsUpdate {
        error_rate: Some(0.5),
        latency_ms: None,
    };
    set_remote_faults(&http, h.local.canary_app, broken)
        .await
        .unwrap();
    let policy = h.policy("[0, 50, 100]");
    // The smoke check would catch it first; take the check out to exercise the analysis.
    let text = std::fs::read_to_string(&policy).unwrap();
    let start = text.find("  checks:").unwrap();
    let end = text.find("  analysis:").unwrap();
    std::fs::write(&policy, format!("{}{}", &text[..start], &text[end..])).unwrap();

    let output = finish(
        h.command(&["run", policy.to_str().unwrap()])
            .spawn()
            .unwrap(),
    )
    .await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("RolledBack"), "{log}");
    assert!(log.contains("error-rate"), "{log}");
    assert_eq!(h.state()["status"]["phase"], "RolledBack");
    assert_eq!(h.served_weight().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_saves_the_state_and_a_second_run_resumes() {
    let h = harness().await;
    // A hold keeps the first run busy at 50% long enough to interrupt it there.
    let policy = h.policy("[0, {weight: 50, hold: 30s}, 100]");
    let child = h
        .command(&["run", policy.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let state_file = h.state_dir.path().join("test/checkout.json");
    wait_for_state(&state_file, |doc| doc["status"]["canaryWeight"] == 50).await;
    let pid = guard.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || {
        let status = guard.0.wait().unwrap();
        (status, guard)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(130));
    assert_eq!(h.state()["status"]["phase"], "Progressing");
    assert_eq!(h.served_weight().await, 50);

    // The second run continues at 50% (no new start, no second pass through 0%), then
    // `promote --full` skips the hold.
    let second = h
        .command(&["run", policy.to_str().unwrap()])
        .spawn()
        .unwrap();
    let promote = h
        .command(&["promote", "--full", policy.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(promote.status.code(), Some(0), "{}", stderr(&promote));
    let output = finish(second).await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        !log.contains("Started"),
        "the second run started over:\n{log}"
    );
    assert_eq!(h.served_weight().await, 100);
    let history = h.state()["status"]["history"].as_array().unwrap().clone();
    let starts = history.iter().filter(|e| e["reason"] == "Started").count();
    assert!(starts <= 1, "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_makes_run_exit_four_and_status_shows_it() {
    let h = harness().await;
    let policy = h.policy("[0, {weight: 50, hold: 30s}, 100]");
    let child = h
        .command(&["run", policy.to_str().unwrap()])
        .spawn()
        .unwrap();
    let state_file = h.state_dir.path().join("test/checkout.json");
    let mut guard = KillOnDrop(child);
    wait_for_state(&state_file, |doc| doc["status"]["canaryWeight"] == 50).await;
    let pause = h.command(&["pause", "test/checkout"]).output().unwrap();
    assert_eq!(pause.status.code(), Some(0), "{}", stderr(&pause));
    let status = tokio::task::spawn_blocking(move || {
        let status = guard.0.wait().unwrap();
        (status, guard)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(4));
    let shown = h.command(&["status", "test/checkout"]).output().unwrap();
    assert_eq!(
        shown.status.code(),
        Some(4),
        "status of a paused rollout: held or paused"
    );
    assert!(stderr(&shown).contains("Paused"), "{}", stderr(&shown));
    assert_eq!(h.served_weight().await, 50);
}

#[test]
fn an_invalid_policy_exits_two_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("bad.yaml");
    std::fs::write(
        &policy,
        "apiVersion: shiftgate.dev/v1alpha1\nkind: RolloutPolicy\nmetadata: { name: x }\nspec:\n  revision: v2\n  stepz: [0]\n",
    )
    .unwrap();
    let output = Command::new(shiftgate_binary())
        .args([
            "run",
            policy.to_str().unwrap(),
            "--state-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(log.contains("bad.yaml:6:"), "{log}");
}

#[test]
fn an_unreachable_envoy_exits_three_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let policy = dir.path().join("policy.yaml");
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: shiftgate.dev/v1alpha1\nkind: RolloutPolicy\nmetadata: {{ name: x }}\nspec:\n  revision: v2\n  router:\n    envoy: {{ routesFile: \"{}\", adminAddress: \"127.0.0.1:{port}\", stableCluster: s, canaryCluster: c }}\n  steps: [0, 100]\n  analysis:\n    prometheus: {{ address: \"http://127.0.0.1:{port}\" }}\n    metrics: [{{ name: e, template: envoy-error-rate, max: 0.1 }}]\n",
            routes.display()
        ),
    )
    .unwrap();
    let output = Command::new(shiftgate_binary())
        .args([
            "run",
            policy.to_str().unwrap(),
            "--state-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");
    assert!(!routes.exists());
    assert!(!dir.path().join("default/x.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_evaluates_for_real_but_writes_nothing() {
    let h = harness().await;
    let policy = h.policy("[0, 100]");
    let text = std::fs::read_to_string(&policy).unwrap();
    let start = text.find("  checks:").unwrap();
    let end = text.find("  analysis:").unwrap();
    let text = format!("{}{}", &text[..start], &text[end..]);
    std::fs::write(
        &policy,
        text.replace("inconclusiveLimit: 10", "inconclusiveLimit: 0"),
    )
    .unwrap();
    let router = EnvoyRouter::new(&h.local.envoy.router, None).unwrap();
    let before = router.read().await.unwrap();
    let routes_before = std::fs::read(&h.local.envoy.router.routes_file).unwrap();

    let output = finish(
        h.command(&["run", "--dry-run", policy.to_str().unwrap()])
            .spawn()
            .unwrap(),
    )
    .await;
    let log = stderr(&output);
    // Pretending 100%, the real canary got no requests: the real analysis says so.
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("dry run"), "{log}");
    assert!(log.contains("too few canary requests: 0 < 5"), "{log}");
    assert_eq!(router.read().await.unwrap(), before);
    assert_eq!(
        std::fs::read(&h.local.envoy.router.routes_file).unwrap(),
        routes_before
    );
    assert!(!h.state_dir.path().join("test/checkout.json").exists());
}
