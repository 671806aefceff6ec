//! The status page against the daemon driving a real rollout (the in-repo test API
//! server, the real kube client, Istio router and status store, a scripted metric
//! source), watched in a real headless Chromium: the page itself updates as the
//! weight moves and the verdict turns from Pass to Fail, and a name a page could
//! mistake for HTML stays text.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Wall-clock time only bounds the test's waits (timeouts) and dates a made-up status.
#![allow(clippy::disallowed_methods)]

mod support;

use support::http::http_get;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{RolloutPolicy, RolloutSpec, RolloutStatus, Timestamp};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::clock::SystemClock;
use shiftgate::runtime::commands_kube::KubeCommandSource;
use shiftgate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters};
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};
use shiftgate::web::Board;
use support::chromium::{Browser, Watched};

const NS: &str = "shop";
const WATCH_LIMIT: Duration = Duration::from_secs(40);

/// The canary's error rate, settable while the rollout runs; stable is always 0.001.
struct ScriptedErrorRate {
    canary: Mutex<f64>,
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
        let rate = *self.canary.lock().unwrap();
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

/// Holds at 20% briefly and at 50% long enough for the test to make the canary fail.
fn policy() -> RolloutPolicy {
    let spec: RolloutSpec = serde_json::from_value(json!({
        "revision": "v2",
        "router": { "istio": {
            "virtualService": "checkout",
            "routes": ["primary"],
            "stable": { "host": "checkout", "subset": "v1" },
            "canary": { "host": "checkout", "subset": "v2" }
        }},
        "steps": [0, { "weight": 20, "hold": "3s" }, { "weight": 50, "hold": "60s" }, 100],
        "analysis": {
            "interval": "1s",
            "prometheus": { "address": "http://127.0.0.1:1" },
            "metrics": [
                { "name": "error-rate", "query": "sum(rate(errors[1m]))", "max": 0.01 },
                { "name": "errors-vs-stable", "query": "c", "stableQuery": "s",
                  "compare": { "maxIncrease": 0.02 }, "judge": "threshold" }
            ],
            "failureLimit": 0
        }
    }))
    .unwrap();
    let mut policy = RolloutPolicy::new("checkout", spec);
    policy.metadata.namespace = Some(NS.to_owned());
    policy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_daemons_rollout_move_and_fail() {
    let server = TestApiServer::start().await.unwrap();
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    server.put_object(&vs, virtual_service()).unwrap();
    let client = server.client().unwrap();
    let metrics = Arc::new(ScriptedErrorRate {
        canary: Mutex::new(0.001),
    });
    let seams = DaemonSeams {
        client: client.clone(),
        routers: Arc::new(KubeRouters::new(client.clone())),
        metrics: metrics.clone(),
        store: Arc::new(KubeStatusStore::new(client.clone())),
        commands: Arc::new(KubeCommandSource::new(client.clone())),
        checks: Arc::new(ScriptedChecks::passing()),
        clock: Arc::new(SystemClock),
    };
    let options = DaemonOptions {
        namespace: Some(NS.to_owned()),
        pod_name: "pod-a".to_owned(),
        concurrency: 2,
        lease: None,
        resync: Duration::from_secs(30),
        shutdown_deadline: Duration::from_secs(5),
    };
    let board = Board::new();
    let bound = shiftgate::web::page::spawn("127.0.0.1:0".parse().unwrap(), board.clone())
        .await
        .unwrap();
    // A rollout whose name and message are HTML: the page must show them as text.
    let hostile = "<img src=x onerror=\"document.title='pwned'\">";
    board.record(
        &PolicyRef {
            namespace: "other".to_owned(),
            name: hostile.to_owned(),
        },
        &policy().spec,
        &RolloutStatus {
            message: Some(format!("<script>document.title='pwned'</script>{hostile}")),
            ..RolloutStatus::default()
        },
        false,
        chrono::Utc::now(),
    );
    let daemon = Daemon::new(options, seams).with_web(board);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async move {
        let _ = stop_rx.await;
    }));
    // The page is open before the rollout starts, so it sees every step.
    let url = format!("{}#/{NS}/checkout", shiftgate::web::page::url(bound));
    let mut browser = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::launch();
        browser.open(&url);
        browser
    })
    .await
    .unwrap();
    Api::<RolloutPolicy>::namespaced(client, NS)
        .create(&PostParams::default(), &policy())
        .await
        .unwrap();

    let watched = tokio::task::spawn_blocking(move || {
        let mut watched = Watched::default();
        let started = Instant::now();
        let mut failed_at = None;
        while started.elapsed() < WATCH_LIMIT {
            watched.note(browser.text());
            let now = watched.seen.last().cloned().unwrap();
            // Once the page shows 50% with a passing verdict, the canary turns bad.
            if now.weight == Some(50) && failed_at.is_none() {
                *metrics.canary.lock().unwrap() = 0.2;
                failed_at = Some(Instant::now());
            }
            if now.phase.as_deref() == Some("RolledBack") {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let shot = browser.screenshot("daemon-rolled-back.png");
        let title = browser.evaluate("document.title");
        let images = browser.evaluate("document.images.length");
        // The hostile rollout's own detail view, through the address.
        let hostile_url = format!(
            "{}#/other/{}",
            shiftgate::web::page::url(bound),
            urlencode(hostile)
        );
        browser.open(&hostile_url);
        let started = Instant::now();
        let mut hostile_text = String::new();
        while started.elapsed() < Duration::from_secs(10) && !hostile_text.contains("<script>") {
            std::thread::sleep(Duration::from_millis(200));
            hostile_text = browser.text();
        }
        let hostile_title = browser.evaluate("document.title");
        let hostile_images = browser.evaluate("document.images.length");
        (
            watched,
            shot,
            title,
            images,
            hostile_text,
            hostile_title,
            hostile_images,
        )
    })
    .await
    .unwrap();
    let (watched, shot, title, images, hostile_text, hostile_title, hostile_images) = watched;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;

    let text = &watched.last_text;
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    let weights = watched.weights();
    assert!(
        weights.contains(&20) && weights.contains(&50) && weights.last() == Some(&0),
        "the page did not show the weight move 20% → 50% → 0%: {weights:?}\n{:#?}\n{text}",
        watched.seen
    );
    let verdicts = watched.verdicts();
    let pass = verdicts.iter().position(|v| v == "Pass");
    let fail = verdicts.iter().rposition(|v| v == "Fail");
    assert!(
        matches!((pass, fail), (Some(p), Some(f)) if p < f),
        "the page did not show the verdict turn from Pass to Fail: {verdicts:?}\n{text}"
    );
    // The charts and the history are on screen too.
    for expected in [
        "error-rate: canary 0.2, limit ≤ 0.01, Fail",
        "errors-vs-stable: canary 0.2, stable 0.001, limit ≤ 0.021, Fail",
        "RolledBack",
        "StepAdvanced",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` is not on the page:\n{text}"
        );
    }
    assert_eq!(title, json!("shiftgate rollouts"));
    assert_eq!(images, json!(0));
    assert!(
        hostile_text.contains(hostile) && hostile_text.contains("<script>document.title"),
        "a name or message made of HTML is not shown as text:\n{hostile_text}"
    );
    assert_eq!(
        hostile_title,
        json!("shiftgate rollouts"),
        "a message ran as script"
    );
    assert_eq!(hostile_images, json!(0), "a name became an element");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The binary with `SHIFTGATE_WEB_LISTEN` serves the page (with its security headers)
/// on its own port, lists the rollout it drives, and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_binary_serves_the_page_on_web_listen() {
    let server = TestApiServer::start().await.unwrap();
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    server.put_object(&vs, virtual_service()).unwrap();
    let mut policy = policy();
    policy.spec.analysis.prometheus = Some(
        serde_json::from_value(
            json!({ "address": support::prometheus_stand_in::healthy_prometheus_stand_in().await }),
        )
        .unwrap(),
    );
    policy.spec.analysis.metrics.truncate(1);
    Api::<RolloutPolicy>::namespaced(server.client().unwrap(), NS)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path(), NS).unwrap();
    let port = support::ports::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("daemon")
        .env("KUBECONFIG", &kubeconfig)
        .env("SHIFTGATE_NAMESPACE", NS)
        .env("SHIFTGATE_LISTEN", "127.0.0.1:0")
        .env("SHIFTGATE_WEB_LISTEN", format!("127.0.0.1:{port}"))
        .env("SHIFTGATE_LEASE_NAME", "")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = support::process::KillOnDrop(child);
    let started = Instant::now();
    let listed = loop {
        let response = http_get(port, "/api/rollouts").await;
        let moved = ["20", "50"]
            .iter()
            .any(|w| response.contains(&format!("\"canaryWeight\":{w}")));
        if response.contains("\"name\":\"checkout\"") && moved {
            break response;
        }
        let exited = child.0.try_wait().unwrap();
        assert!(
            exited.is_none() && started.elapsed() < Duration::from_secs(30),
            "the page never listed shop/checkout past 0% (exit: {exited:?}): {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(listed.contains("\"namespace\":\"shop\""), "{listed}");
    let page = http_get(port, "/").await;
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    let headers = page.to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'none'; script-src 'self'",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
    ] {
        assert!(headers.contains(header), "no `{header}`:\n{page}");
    }
    let missing = http_get(port, "/api/rollouts/shop/nothing").await;
    assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
    let elsewhere = http_get(port, "/favicon.ico").await;
    assert!(elsewhere.starts_with("HTTP/1.0 404"), "{elsewhere}");
    assert!(
        elsewhere
            .to_ascii_lowercase()
            .contains("content-security-policy"),
        "{elsewhere}"
    );
    // Read-only: nothing answers a write.
    let write = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream
            .write_all(b"POST /api/rollouts/shop/checkout HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        response
    };
    assert!(write.starts_with("HTTP/1.0 405"), "{write}");

    let code = support::process::terminate(&mut child.0, "shiftgate daemon").await;
    assert_eq!(code, Some(0));
}
