//! A/B testing without weights (`analysis.judgeTestRoute`), on the real local stack: a
//! real Envoy routing by a cookie test route, a real Prometheus scraping it, users
//! without the cookie on stable and testers with it on the canary. At 0 % the canary is
//! judged on the testers' requests alone: a good canary passes the 0 % step on its
//! analysis, a failing one is rolled back before any user reaches it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use shiftgate::demo::load::{run_load, LoadConfig, LoadCounters};
use support::rollout::{PolicyOptions, Stack};
use tokio_util::sync::CancellationToken;

const COOKIE: &str = "ab=canary";

/// Testers with the cookie, until dropped.
struct Testers(CancellationToken);

impl Drop for Testers {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn testers(stack: &Stack) -> Testers {
    let stop = CancellationToken::new();
    let config = LoadConfig {
        target: stack.local.envoy.listener,
        requests_per_second: 20,
        duration: Duration::from_secs(600),
        headers: vec![("cookie".to_owned(), COOKIE.to_owned())],
    };
    let (counters, until) = (LoadCounters::default(), stop.clone());
    tokio::spawn(async move { run_load(&config, &counters, &until).await });
    Testers(stop)
}

/// The stack's policy with a cookie test route judged at 0 %. The 0 % step is held a few
/// seconds, so it is judged on several windows of the testers' traffic (the very first
/// window after the route appears can miss a brand-new 5xx series).
fn ab_policy(stack: &Stack) -> std::path::PathBuf {
    let options = PolicyOptions {
        steps: "[{ weight: 0, hold: 6s }, 100]".to_owned(),
        inconclusive_limit: 5,
        ..PolicyOptions::default()
    };
    let text = stack
        .policy_text(&options)
        .replace(
            "  steps:",
            &format!("  testRoute: {{ cookie: \"{COOKIE}\" }}\n  steps:"),
        )
        .replace("    metrics:\n", "    judgeTestRoute: true\n    metrics:\n");
    let path = stack.state_dir.path().join("ab.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn history_reasons(state: &serde_json::Value) -> Vec<String> {
    state["status"]["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| format!("{} {}", e["reason"], e["message"]))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_passes_the_zero_step_on_test_route_traffic() {
    let stack = Stack::start().await;
    let _testers = testers(&stack);
    let policy = ab_policy(&stack);
    let output = stack.run(&policy).await;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("from 0%: analysis of the test route's traffic passed"),
        "the 0 % step was judged: {log}"
    );
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "Promoted", "{state:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_at_zero_on_test_route_traffic() {
    let stack = Stack::start().await;
    stack.set_canary_faults(Some(1.0), None).await;
    let _testers = testers(&stack);
    let before = stack.upstream_requests().await;
    let policy = ab_policy(&stack);
    let output = stack.run(&policy).await;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{log}");
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "RolledBack", "{state:#}");
    assert!(
        history_reasons(&state)
            .iter()
            .any(|r| r.contains("AnalysisFailed") && r.contains("error-rate")),
        "{:#?}",
        history_reasons(&state)
    );
    // No user weight ever moved: every canary request came from the testers.
    assert!(
        !log.contains("canary 100%") && !log.contains("StepAdvanced"),
        "{log}"
    );
    let canary = stack.upstream_requests().await.since(&before).canary;
    assert!(canary > 0, "the testers reached the canary");
}
