//! `shiftgate run --web 127.0.0.1:0` serves the status page of its rollout (real Envoy,
//! real Prometheus): it prints the URL, the page's JSON follows the weight as the
//! rollout runs, and an open page gets the final state before the run exits. The same
//! server answers `/metrics` in Prometheus' text format, which `promtool check metrics`
//! accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use support::rollout::{http, ChildGuard, PolicyOptions, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_the_page_of_its_rollout() {
    let stack = Stack::start().await;
    let policy = stack.write_policy(&PolicyOptions::default());
    let mut run = ChildGuard(Some(
        stack
            .command(&["run", policy.to_str().unwrap(), "--web", "127.0.0.1:0"])
            .spawn()
            .unwrap(),
    ));
    let stderr = run.0.as_mut().unwrap().stderr.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let url = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no page URL printed:\n{}", log.join("\n")));
        log.push(line.clone());
        if let Some(url) = line.strip_prefix("shiftgate: watch it at ") {
            break url.trim().to_owned();
        }
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let client = http();
    let detail_url = format!("{url}api/rollouts/e2e/checkout");
    let mut weights = BTreeSet::new();
    let mut last = serde_json::Value::Null;
    let mut exposition = String::new();
    // Polled like the page does, until the run has ended and the page is gone.
    while let Ok(answer) = client.get(&detail_url).send().await {
        if answer.status().is_success() {
            last = answer.json().await.unwrap();
            weights.insert(last["canaryWeight"].as_u64().unwrap());
        }
        if let Ok(answer) = client
            .get(format!("{url}metrics"))
            .header("accept", "text/plain;version=0.0.4")
            .send()
            .await
        {
            if answer.status().is_success() {
                exposition = answer.text().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let output = run.finish().await;
    assert_eq!(output.status.code(), Some(0), "{}", log.join("\n"));
    assert_eq!(last["phase"], "Promoted", "{last:#}");
    assert!(weights.len() >= 2, "one weight only: {weights:?}");
    let samples = last["samples"].as_array().unwrap();
    assert!(
        samples.iter().any(|s| s["verdict"] == "Pass"
            && s["metrics"][0]["name"] == "error-rate"
            && s["metrics"][0]["upper"] == 0.05),
        "{last:#}"
    );
    // The last exposition read while the rollout ran: its weight, linted by promtool.
    assert!(
        exposition.contains("shiftgate_canary_weight_ratio{namespace=\"e2e\",name=\"checkout\"}"),
        "{exposition}"
    );
    support::process::promtool_check_metrics(&exposition, "run's /metrics");
}
