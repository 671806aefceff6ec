//! Faults in the middle of a local rollout, against the real Envoy and Prometheus:
//! Prometheus stopped (and started again, or not), and shiftgate itself SIGKILLed and
//! started again. See tests/local_rollout.rs for the plain outcomes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use tokio::time::Instant;

use support::rollout::{stderr, PolicyOptions, Stack, WAIT_LIMIT};

/// `shiftgate status` output (both streams).
fn status_text(stack: &Stack) -> String {
    let output = stack.command(&["status", "e2e/checkout"]).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    )
}

fn at_weight_after_a_pass(weight: u64) -> impl Fn(&serde_json::Value) -> bool {
    move |doc| {
        doc["status"]["canaryWeight"] == weight
            && doc["status"]["lastAnalysis"]["verdict"] == "Pass"
    }
}

/// Polls `shiftgate status` until it contains every needle.
async fn wait_for_status(stack: &Stack, needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let text = status_text(stack);
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "`shiftgate status` never showed {needles:?}; last:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_holds_the_step_and_the_rollout_continues_when_it_is_back() {
    let mut stack = Stack::start().await;
    let policy = stack.write_policy(&PolicyOptions {
        steps: "[0, {weight: 50, hold: 3s}, 100]".to_owned(),
        inconclusive_limit: 30,
        ..PolicyOptions::default()
    });
    let run = stack.spawn_run(&policy);
    stack
        .wait_for_state("50% after a passed analysis", at_weight_after_a_pass(50))
        .await;
    stack.stop_prometheus();
    let shown = wait_for_status(&stack, &["Inconclusive", "could not be reached"]).await;
    // The outage outlasts the 3 s hold: no promotion while Prometheus is down.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(5) {
        let state = stack.state().unwrap();
        assert_eq!(state["status"]["phase"], "Progressing", "{shown}");
        assert_eq!(state["status"]["canaryWeight"], 50, "{shown}");
        assert_eq!(stack.served().await.canary_weight, 50);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["lastAnalysis"]["verdict"], "Inconclusive");
    stack.restart_prometheus().await;
    let output = run.finish().await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert_eq!(stack.state().unwrap()["status"]["phase"], "Promoted");
    assert_eq!(stack.served().await.canary_weight, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_past_the_limit_triggers_on_inconclusive() {
    let mut stack = Stack::start().await;
    let limit = 4;
    let policy = stack.write_policy(&PolicyOptions {
        steps: "[0, {weight: 50, hold: 30s}, 100]".to_owned(),
        inconclusive_limit: limit,
        ..PolicyOptions::default()
    });
    let run = stack.spawn_run(&policy);
    stack
        .wait_for_state("50% after a passed analysis", at_weight_after_a_pass(50))
        .await;
    stack.stop_prometheus();
    let stopped = Instant::now();
    let output = run.finish().await;
    let waited = stopped.elapsed();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    // `limit` inconclusive evaluations are tolerated, one per second; the next acts.
    assert!(
        waited >= Duration::from_secs(u64::from(limit)),
        "rolled back after {waited:?}, before {limit} inconclusive evaluations:\n{log}"
    );
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "RolledBack", "{log}");
    let message = state["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("could not be reached") && message.contains("inconclusive"),
        "{message}"
    );
    assert_eq!(stack.served().await.canary_weight, 0);
}

/// A run killed at 50% and started again while Prometheus is down must not walk away
/// from the traffic it moved (exit 3 would leave the canary at 50% unattended): it goes
/// on, the outage is Inconclusive, and `onInconclusive` acts after its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resumed_while_prometheus_is_down_goes_on_and_acts_on_inconclusive() {
    let mut stack = Stack::start().await;
    let limit = 3;
    let policy = stack.write_policy(&PolicyOptions {
        steps: "[0, {weight: 50, hold: 10m}, 100]".to_owned(),
        inconclusive_limit: limit,
        ..PolicyOptions::default()
    });
    let mut first = stack.spawn_run(&policy);
    stack
        .wait_for_state("50% after a passed analysis", at_weight_after_a_pass(50))
        .await;
    first.kill_hard();
    stack.stop_prometheus();

    let output = stack.spawn_run(&policy).finish().await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("Prometheus is unavailable"),
        "the resumed run did not say why its evaluations are inconclusive:\n{log}"
    );
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "RolledBack", "{log}");
    let message = state["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("could not be reached") && message.contains("inconclusive"),
        "{message}"
    );
    assert_eq!(stack.served().await.canary_weight, 0);
}

/// The (phase, step, weight) transitions of a history, without repeats.
fn transitions(state: &serde_json::Value) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    for entry in state["status"]["history"].as_array().unwrap() {
        let item = (
            entry["phase"].as_str().unwrap().to_owned(),
            entry["step"].as_u64().unwrap(),
            entry["canaryWeight"].as_u64().unwrap(),
        );
        if out.last() != Some(&item) {
            out.push(item);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_step_resumes_at_the_same_step_and_ends_as_an_uninterrupted_run() {
    let stack = Stack::start().await;
    let policy = stack.write_policy(&PolicyOptions {
        steps: "[0, {weight: 50, hold: 8s}, 100]".to_owned(),
        ..PolicyOptions::default()
    });
    let mut run = stack.spawn_run(&policy);
    let before = stack
        .wait_for_state("50% after a passed analysis", at_weight_after_a_pass(50))
        .await;
    run.kill_hard();
    let killed = stack.state().unwrap();
    assert_eq!(killed["status"]["step"], 1);
    assert_eq!(killed["status"]["canaryWeight"], 50);
    assert_eq!(killed["status"]["phase"], "Progressing");
    assert_eq!(
        killed["status"]["stepStartedAt"],
        before["status"]["stepStartedAt"]
    );
    assert_eq!(stack.served().await.canary_weight, 50);

    let second = stack.spawn_run(&policy);
    // Right after the restart: same step, same step start, same weight in Envoy.
    let resumed = stack
        .wait_for_state("a tick of the second run", |doc| {
            doc["status"]["lastEvaluationAt"] != killed["status"]["lastEvaluationAt"]
        })
        .await;
    assert_eq!(resumed["status"]["step"], 1, "{resumed:#}");
    assert_eq!(resumed["status"]["canaryWeight"], 50);
    assert_eq!(
        resumed["status"]["stepStartedAt"],
        killed["status"]["stepStartedAt"]
    );
    assert_eq!(stack.served().await.canary_weight, 50);

    let output = second.finish().await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        !log.contains("Started"),
        "the second run started over:\n{log}"
    );
    let end = stack.state().unwrap();
    assert_eq!(end["status"]["phase"], "Promoted");
    assert_eq!(stack.served().await.canary_weight, 100);
    // What an uninterrupted run records: started at 0%, 50%, then promoted at 100%.
    let steps: Vec<(String, u64, u64)> = transitions(&end)
        .into_iter()
        .filter(|(phase, _, _)| phase != "Pending")
        .collect();
    let expected = vec![
        ("Progressing".to_owned(), 0, 0),
        ("Progressing".to_owned(), 1, 50),
        ("Progressing".to_owned(), 2, 100),
        ("Promoted".to_owned(), 2, 100),
    ];
    assert_eq!(steps, expected, "{log}");
    let starts = end["status"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "Started")
        .count();
    assert_eq!(starts, 1);
}
