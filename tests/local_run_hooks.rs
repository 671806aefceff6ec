//! `spec.hooks` in a local `shiftgate run` against a real Envoy, real Prometheus and
//! the demo apps, with a hook receiver on 127.0.0.1 that records every body in order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use shiftgate::demo::app::{set_remote_faults, FaultsUpdate};
use shiftgate::policy::EnvoyRouter as EnvoyRouterConfig;
use shiftgate::router::envoy::EnvoyRouter;
use shiftgate::router::TrafficRouter;
use support::envoy::shiftgate_binary;
use support::rollout::Stack;

/// One call the receiver got: its path, body, when, and the canary weight Envoy was
/// configured with at that moment.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    body: Value,
    at: Instant,
    weight_at_arrival: u8,
    /// The `x-token` header, if sent.
    token: Option<String>,
}

#[derive(Clone)]
struct Receiver {
    calls: Arc<Mutex<Vec<Received>>>,
    confirm: Arc<AtomicBool>,
    router: EnvoyRouterConfig,
}

impl Receiver {
    fn calls(&self) -> Vec<Received> {
        self.calls.lock().unwrap().clone()
    }

    async fn record(&self, path: &str, body: Value) {
        self.record_with_token(path, body, None).await;
    }

    async fn record_with_token(&self, path: &str, body: Value, token: Option<String>) {
        let router = EnvoyRouter::new(&self.router, None).unwrap();
        let weight = router.read().await.unwrap().route.canary_weight;
        self.calls.lock().unwrap().push(Received {
            path: path.to_owned(),
            body,
            at: now(),
            weight_at_arrival: weight,
            token,
        });
    }
}

/// `/ok` answers 200; `/confirm` 503 until `confirm` is set; `/hang` never answers.
async fn receiver(router: EnvoyRouterConfig) -> (std::net::SocketAddr, Receiver) {
    let state = Receiver {
        calls: Arc::default(),
        confirm: Arc::default(),
        router,
    };
    let app = axum::Router::new()
        .route(
            "/ok",
            post(
                |State(r): State<Receiver>,
                 headers: axum::http::HeaderMap,
                 body: axum::Json<Value>| async move {
                    let token = headers
                        .get("x-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    r.record_with_token("/ok", body.0, token).await;
                    StatusCode::OK
                },
            ),
        )
        .route(
            "/confirm",
            post(
                |State(r): State<Receiver>, body: axum::Json<Value>| async move {
                    r.record("/confirm", body.0).await;
                    if r.confirm.load(Ordering::SeqCst) {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                },
            ),
        )
        .route(
            "/hang",
            post(
                |State(r): State<Receiver>, body: axum::Json<Value>| async move {
                    r.record("/hang", body.0).await;
                    std::future::pending::<StatusCode>().await
                },
            ),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

struct Harness {
    stack: Stack,
    hooks: std::net::SocketAddr,
    receiver: Receiver,
}

async fn harness() -> Harness {
    let stack = Stack::start().await;
    let (hooks, receiver) = receiver(stack.local.envoy.router.clone()).await;
    Harness {
        stack,
        hooks,
        receiver,
    }
}

impl Harness {
    fn policy(&self, steps: &str, hooks: &str) -> PathBuf {
        let router = &self.stack.local.envoy.router;
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
  analysis:
    interval: 3s
    prometheus: {{ address: "http://{prometheus}", timeout: 2s }}
    minRequests: 5
    metrics:
      - {{ name: error-rate, template: envoy-error-rate, max: 0.05 }}
    failureLimit: 0
    inconclusiveLimit: 10
  hooks:
{hooks}"#,
            routes = router.routes_file,
            admin = router.admin_address,
            stable = router.stable_cluster,
            canary = router.canary_cluster,
            prometheus = self.stack.prometheus,
            hooks = hooks.replace("HOOKS", &format!("http://{}", self.hooks)),
        );
        let path = self.stack.state_dir.path().join("policy.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, policy: &std::path::Path) -> Child {
        Command::new(shiftgate_binary())
            .env("HOOK_TOKEN", TOKEN)
            .args(["run", policy.to_str().unwrap(), "--state-dir"])
            .arg(self.stack.state_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn state(&self) -> Value {
        let path = self.stack.state_dir.path().join("test/checkout.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Polls the receiver until `predicate` holds on its calls (at most 60 s).
    async fn wait_for_calls(&self, predicate: impl Fn(&[Received]) -> bool) {
        let polled = async {
            while !predicate(&self.receiver.calls()) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), polled)
            .await
            .expect("the hook receiver never saw the expected calls");
    }
}

/// A secret header value, from the environment of `run`.
const TOKEN: &str = "tok-3f9a-never-printed";

/// Kills the child when a test fails half-way.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn finish(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

/// The test measures how long `run` waited for a hanging hook: wall-clock time.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn phases(calls: &[Received]) -> Vec<String> {
    calls
        .iter()
        .map(|c| c.body["phase"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The fields docs/hooks.md documents, and no others.
const BODY_FIELDS: [&str; 18] = [
    "apiVersion",
    "kind",
    "hook",
    "namespace",
    "name",
    "phase",
    "revision",
    "rolloutPhase",
    "step",
    "stepCount",
    "weights",
    "nextWeights",
    "at",
    "reason",
    "message",
    "analysis",
    "checks",
    "hooks",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hook_phase_is_called_in_order_with_the_documented_body() {
    let h = harness().await;
    let policy = h.policy(
        "[0, 50, 100]",
        "    - { name: audit, url: \"HOOKS/ok\", on: [preRollout, step, confirmPromotion, postRollout, rollback], timeout: 2s, retries: 0, headers: [{ name: x-token, valueEnv: HOOK_TOKEN }] }\n",
    );
    let output = finish(h.run(&policy)).await;
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let calls = h.receiver.calls();
    assert_eq!(
        phases(&calls),
        [
            "preRollout",
            "step",
            "step",
            "step",
            "confirmPromotion",
            "postRollout"
        ],
        "{calls:#?}"
    );
    for call in &calls {
        let body = call.body.as_object().unwrap();
        for key in body.keys() {
            assert!(
                BODY_FIELDS.contains(&key.as_str()),
                "undocumented field {key} in {body:?}"
            );
        }
        assert_eq!(body["apiVersion"], "shiftgate.dev/v1alpha1");
        assert_eq!(body["kind"], "RolloutHook");
        assert_eq!(body["hook"], "audit");
        assert_eq!(body["namespace"], "test");
        assert_eq!(body["name"], "checkout");
        assert_eq!(body["revision"], "v2");
        assert_eq!(body["stepCount"], 3);
    }
    // Before the first write: nothing moved yet, the next weights are step 1's.
    assert_eq!(calls[0].body["weights"]["canary"], 0);
    assert_eq!(calls[0].body["nextWeights"]["canary"], 0);
    // Each step hook comes after the step was judged and before the next weight.
    assert_eq!(calls[1].body["step"], 1);
    assert_eq!(calls[1].body["nextWeights"]["canary"], 50);
    assert_eq!(calls[1].weight_at_arrival, 0);
    assert_eq!(calls[2].body["step"], 2);
    assert_eq!(
        calls[2].body["weights"],
        serde_json::json!({"canary": 50, "stable": 50})
    );
    assert_eq!(calls[2].body["analysis"]["verdict"], "Pass");
    assert_eq!(calls[2].weight_at_arrival, 50);
    assert_eq!(calls[4].body["nextWeights"]["canary"], 100);
    // The promotion hook comes after the promotion write.
    assert_eq!(calls[5].body["rolloutPhase"], "Promoted");
    assert_eq!(calls[5].weight_at_arrival, 100);
    assert!(calls[5].body["nextWeights"].is_null());
    // Their verdicts are in the status, postRollout's too (recorded before `run` ends).
    let hooks = h.state()["status"]["lastHooks"].clone();
    let recorded: Vec<&str> = hooks
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["phase"].as_str().unwrap())
        .collect();
    for phase in ["preRollout", "step", "confirmPromotion", "postRollout"] {
        assert!(recorded.contains(&phase), "{phase} missing in {hooks}");
    }
    assert!(hooks
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["passed"] == true && r["status"] == 200));
    // The secret header reached the receiver, and nothing else.
    assert!(calls.iter().all(|c| c.token.as_deref() == Some(TOKEN)));
    let state =
        std::fs::read_to_string(h.stack.state_dir.path().join("test/checkout.json")).unwrap();
    assert!(!state.contains(TOKEN) && !log.contains(TOKEN));
    // `run` shows each answer as it comes.
    assert!(
        log.contains("hook audit (confirmPromotion) passed: POST http://"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_confirm_promotion_holds_at_the_last_step_until_it_answers_2xx() {
    let h = harness().await;
    let policy = h.policy(
        "[0, 100]",
        "    - { name: release-manager, url: \"HOOKS/confirm\", on: [confirmPromotion], timeout: 2s, retries: 0 }\n",
    );
    let mut guard = ChildGuard(Some(h.run(&policy)));
    // Asked twice and refused twice: the rollout holds at 100% with its test route.
    h.wait_for_calls(|calls| calls.len() >= 2).await;
    let status = h.state()["status"].clone();
    assert_eq!(status["phase"], "Progressing", "{status}");
    assert_eq!(status["reason"], "PromotionNotConfirmed", "{status}");
    assert_eq!(status["canaryWeight"], 100, "{status}");
    assert_eq!(status["testRoute"], true, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("503"),
        "{status}"
    );
    // Once it answers 2xx, the promotion goes ahead.
    h.receiver.confirm.store(true, Ordering::SeqCst);
    let output = finish(guard.0.take().unwrap()).await;
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert_eq!(h.state()["status"]["phase"], "Promoted");
    assert!(phases(&h.receiver.calls())
        .iter()
        .all(|p| p == "confirmPromotion"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_rollback_hook_does_not_delay_the_rollback_beyond_its_timeout() {
    let h = harness().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let broken = FaultsUpdate {
        error_rate: Some(0.5),
        latency_ms: None,
    };
    set_remote_faults(&http, h.stack.local.canary_app, broken)
        .await
        .unwrap();
    let policy = h.policy(
        "[0, 50, 100]",
        "    - { name: audit, url: \"HOOKS/ok\", on: [preRollout, step], timeout: 2s, retries: 0 }\n    - { name: pager, url: \"HOOKS/hang\", on: [rollback], timeout: 2s, retries: 0 }\n",
    );
    let output = finish(h.run(&policy)).await;
    let ended = now();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let calls = h.receiver.calls();
    assert_eq!(
        phases(&calls),
        ["preRollout", "step", "rollback"],
        "{calls:#?}"
    );
    let rollback = &calls[2];
    assert_eq!(rollback.path, "/hang");
    // The rollback write came first: every request was on stable when the hook was called.
    assert_eq!(rollback.weight_at_arrival, 0);
    assert_eq!(rollback.body["rolloutPhase"], "RolledBack");
    assert!(
        rollback.body["message"]
            .as_str()
            .unwrap()
            .contains("error-rate"),
        "{:?}",
        rollback.body
    );
    // The hook hangs; `run` waits for it no longer than its timeout (2 s) and a margin.
    let waited = ended.duration_since(rollback.at);
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    let hooks = h.state()["status"]["lastHooks"].clone();
    let pager = hooks
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["hook"] == "pager")
        .unwrap_or_else(|| panic!("no pager result in {hooks}"))
        .clone();
    assert_eq!(pager["passed"], false);
    assert!(
        pager["message"]
            .as_str()
            .unwrap()
            .contains("no answer within 2s"),
        "{pager}"
    );
}
