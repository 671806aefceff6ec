//! Issue "operate" §3: `spec.notify` is a promise to tell people what a rollout does.

use std::sync::Arc;
use std::time::Duration;

use shiftgate::router::memory::MemoryRouter;
use shiftgate::router::ManagedRoute;
use shiftgate::runtime::local::{load_policy, LocalRun, RunEnd, RunOptions};
use tokio_util::sync::CancellationToken;

use super::support::receiver::Receiver;

/// `spec.notify` was parsed and validated, and nothing was ever sent: a rollout that
/// starts and rolls back (Prometheus unreachable, `onInconclusive: rollback`) must
/// reach the webhook with `started` then `rolledBack`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_is_parsed_and_nothing_is_sent() {
    let (addr, receiver) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: checkout, namespace: shop }}
spec:
  revision: v2
  router:
    istio:
      virtualService: checkout
      stable: {{ host: checkout, subset: v1 }}
      canary: {{ host: checkout, subset: v2 }}
  steps: [10, 100]
  analysis:
    interval: 1s
    prometheus: {{ address: "http://127.0.0.1:9", timeout: 500ms }}
    metrics:
      - {{ name: errors, query: "sum(rate(errors_total[1m]))", max: 0.01 }}
    inconclusiveLimit: 1
    onInconclusive: rollback
  notify:
    - webhook: {{ url: "http://{addr}/notify" }}
"#
        ),
    )
    .unwrap();
    let local = load_policy(&policy).unwrap();
    let router = Arc::new(MemoryRouter::new(ManagedRoute {
        canary_weight: 0,
        test_route: false,
    }));
    let run = LocalRun::with_router(local, router, dir.path(), RunOptions::default()).unwrap();
    let end = tokio::time::timeout(
        Duration::from_secs(30),
        run.run(&mut |_| {}, &CancellationToken::new()),
    )
    .await
    .expect("the run ended")
    .unwrap();
    assert!(matches!(end, RunEnd::Settled(_)), "{end:?}");
    assert_eq!(end.status().phase.as_str(), "RolledBack");
    // `run` returns once its notifications went out.
    assert_eq!(receiver.events("/notify"), ["started", "rolledBack"]);
    let rollback = &receiver.under("/notify")[1].body;
    assert_eq!(rollback["apiVersion"], "shiftgate.dev/v1");
    assert_eq!(rollback["canaryWeight"], 0);
    assert!(
        rollback["message"].as_str().unwrap().contains("cause"),
        "{rollback}"
    );
}
