//! Issue 3's end-to-end guarantees: `shiftgate run` (the built binary) drives a real
//! Envoy in front of two demo app instances, judged from a real Prometheus that scrapes
//! Envoy every second, with a 1 s analysis interval over a 5 s query window. Each test
//! starts its own stack on free 127.0.0.1 ports (tests/support/rollout.rs) and asserts
//! exit codes, the status file, `shiftgate status`, and what Envoy actually serves.
//! Faults (Prometheus down, shiftgate SIGKILLed) are in tests/local_rollout_faults.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::rollout::{
    stderr, ClusterCounts, PolicyOptions, Stack, ERROR_RATE_METRIC, LATENCY_METRIC,
};

/// Requests Envoy sent to each cluster while it served one canary weight.
#[derive(Default, Debug)]
struct Served {
    per_weight: BTreeMap<u8, ClusterCounts>,
}

impl Served {
    /// Adds `delta` to `weight` when the weight was the same at three polls in a row
    /// (requests in flight across a change are not attributed to either weight).
    fn record(&mut self, weights: [u8; 3], delta: ClusterCounts) {
        if weights.iter().all(|w| *w == weights[0]) {
            let entry = self.per_weight.entry(weights[0]).or_default();
            entry.stable += delta.stable;
            entry.canary += delta.canary;
        }
    }
}

/// Polls Envoy's live route and per-cluster stats every 200 ms until `stop` is set.
async fn watch_served(stack: &Stack, stop: &tokio::sync::watch::Receiver<bool>) -> Served {
    let mut served = Served::default();
    let mut weights = [stack.served().await.canary_weight; 3];
    let mut counts = stack.upstream_requests().await;
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let weight = stack.served().await.canary_weight;
        let now = stack.upstream_requests().await;
        weights = [weights[1], weights[2], weight];
        served.record(weights, now.since(&counts));
        counts = now;
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_is_promoted_and_envoy_serves_each_step_weight() {
    let stack = Stack::start().await;
    let policy = stack.write_policy(&PolicyOptions {
        steps: "[0, {weight: 20, hold: 4s}, {weight: 50, hold: 4s}, 100]".to_owned(),
        ..PolicyOptions::default()
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = async {
        let output = stack.run(&policy).await;
        // Keep measuring for a while at 100%.
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop_tx.send(true).unwrap();
        output
    };
    let (output, served) = tokio::join!(run, watch_served(&stack, &stop_rx));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert_eq!(stack.state().unwrap()["status"]["phase"], "Promoted");
    assert_eq!(stack.served().await.canary_weight, 100);

    for weight in [20, 50, 100] {
        let counts = served.per_weight.get(&weight).copied().unwrap_or_default();
        let total = counts.stable + counts.canary;
        assert!(
            total >= 80,
            "too few requests seen at {weight}%: {served:?}\n{log}"
        );
    }
    for (weight, counts) in &served.per_weight {
        assert!(
            [0, 20, 50, 100].contains(weight),
            "Envoy served a weight no step has: {served:?}"
        );
        let total = (counts.stable + counts.canary) as f64;
        if total == 0.0 {
            continue;
        }
        let expected = f64::from(*weight) / 100.0;
        let seen = counts.canary as f64 / total;
        // Binomial: 5 standard deviations, plus one request's worth for rounding.
        let tolerance = 5.0 * (expected * (1.0 - expected) / total).sqrt() + 1.0 / total;
        assert!(
            (seen - expected).abs() <= tolerance,
            "at {weight}% Envoy sent {:.3} of {total} requests to the canary (±{tolerance:.3}): {served:?}",
            seen
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_rate_regression_is_rolled_back() {
    let stack = Stack::start().await;
    stack.set_canary_faults(Some(0.5), None).await;
    let policy = stack.write_policy(&PolicyOptions::default());
    let output = stack.run(&policy).await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "RolledBack", "{log}");
    let message = state["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("error-rate"), "{message}");
    let served = stack.served().await;
    assert_eq!(served.canary_weight, 0, "{log}");
    assert!(!served.test_route);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_regression_is_rolled_back() {
    let stack = Stack::start().await;
    stack.set_canary_faults(None, Some(250)).await;
    let policy = stack.write_policy(&PolicyOptions {
        metrics: format!("{ERROR_RATE_METRIC}\n{LATENCY_METRIC}"),
        ..PolicyOptions::default()
    });
    let output = stack.run(&policy).await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "RolledBack", "{log}");
    let message = state["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("p99-latency-ms"), "{message}");
    assert_eq!(stack.served().await.canary_weight, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_without_traffic_is_never_promoted() {
    // No user load at all: whatever the weight, the canary serves no request, so every
    // evaluation is Inconclusive (minRequests) and `onInconclusive: rollback` happens.
    let stack = Stack::start_with_load(false).await;
    let policy = stack.write_policy(&PolicyOptions {
        inconclusive_limit: 3,
        ..PolicyOptions::default()
    });
    let output = stack.run(&policy).await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "RolledBack", "{log}");
    let message = state["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too few canary requests"), "{message}");
    let history = state["status"]["history"].as_array().unwrap();
    assert!(
        history.iter().all(|e| e["phase"] != "Promoted"),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .all(|e| e["canaryWeight"].as_u64() <= Some(50)),
        "{history:?}"
    );
    assert_eq!(stack.served().await.canary_weight, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_without_traffic_pauses_when_on_inconclusive_says_pause() {
    let stack = Stack::start_with_load(false).await;
    let policy = stack.write_policy(&PolicyOptions {
        inconclusive_limit: 2,
        on_inconclusive: "pause".to_owned(),
        ..PolicyOptions::default()
    });
    let output = stack.run(&policy).await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{log}");
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "Paused", "{log}");
    // Paused where it was: the weight neither grows nor drops without an operator.
    assert_eq!(state["status"]["canaryWeight"], 50, "{log}");
    assert_eq!(stack.served().await.canary_weight, 50, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_moves() {
    let stack = Stack::start().await;
    let before = stack.live_route_config().await;
    let run_expecting = |options: PolicyOptions, code: i32, needles: Vec<String>| {
        let stack = &stack;
        async move {
            let policy = stack.write_policy(&options);
            let output = stack.run(&policy).await;
            let log = stderr(&output);
            eprintln!("{log}");
            assert_eq!(output.status.code(), Some(code), "{log}");
            assert!(
                log.contains("e2e/checkout"),
                "the error names no policy: {log}"
            );
            for needle in &needles {
                assert!(log.contains(needle.as_str()), "no `{needle}` in: {log}");
            }
            assert!(stack.state().is_none(), "a state was written: {log}");
        }
    };

    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    drop(std::net::TcpListener::bind(nobody));
    run_expecting(
        PolicyOptions {
            prometheus_address: Some(format!("http://{nobody}")),
            ..PolicyOptions::default()
        },
        3,
        vec![
            format!("prometheus at http://{nobody}"),
            "could not be reached".to_owned(),
        ],
    )
    .await;
    run_expecting(
        PolicyOptions {
            metrics: "      - { name: broken, query: 'sum(rate(envoy_cluster_upstream_rq_total[5s])', max: 1 }"
                .to_owned(),
            ..PolicyOptions::default()
        },
        2,
        vec!["`broken`".to_owned(), "parse error".to_owned()],
    )
    .await;
    run_expecting(
        PolicyOptions {
            metrics: "      - { name: per-cluster, query: 'envoy_cluster_upstream_rq_total', max: 1000000 }"
                .to_owned(),
            ..PolicyOptions::default()
        },
        2,
        vec!["`per-cluster`".to_owned(), "series".to_owned(), "sum()".to_owned()],
    )
    .await;
    assert_eq!(stack.live_route_config().await, before);

    // A state dir that cannot be created (its parent is a file).
    let file = stack.state_dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let state_dir = file.join("state");
    let policy = stack.write_policy(&PolicyOptions::default());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .args(["run", policy.to_str().unwrap(), "--state-dir"])
        .arg(&state_dir)
        .output()
        .unwrap();
    let log = stderr(&output);
    eprintln!("{log}");
    assert_eq!(output.status.code(), Some(3), "{log}");
    assert!(
        log.contains("e2e/checkout"),
        "the error names no policy: {log}"
    );
    assert!(
        log.contains(&state_dir.display().to_string()) && log.contains("Not a directory"),
        "the error names neither the state dir nor the cause: {log}"
    );
    assert_eq!(stack.live_route_config().await, before);
}
