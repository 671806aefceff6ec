//! Issue 12, "Must hold": Prometheus queries per second at 10,000 rollouts at most twice
//! those at 1,000 for the same templates. A batch per connection per 20 ms instant
//! bounded them only at 50 a second per connection, a bound 1,000 rollouts do not reach
//! and 10,000 do; now a connection sends at most one instant per `MIN_SPACING`, and a
//! lone evaluation still goes at its own 20 ms instant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::batch::{due_together, rollout};
use super::support::batch_answer::members;
use axum::routing::post;
use serde_json::{json, Value};
use shiftgate::analysis::sample::Sample;
use shiftgate::metrics::batch::DEFAULT_WINDOW;
use shiftgate::metrics::prometheus::PrometheusSource;
use shiftgate::metrics::providers::PrometheusAccess;
use shiftgate::metrics::MetricSource;

/// `metrics::batch::MIN_SPACING`, the documented bound (written out so that this test
/// also builds, and fails, on the code before it).
const SPACING_MS: i64 = 100;

/// Answers every member of a batch (or a query alone) with 1, and counts HTTP queries.
async fn stand_in() -> (String, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let queries = Arc::new(AtomicU64::new(0));
    let counted = queries.clone();
    let app = axum::Router::new().route(
        "/api/v1/query",
        post(move |form: axum::Form<HashMap<String, String>>| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let query = form.get("query").cloned().unwrap_or_default();
                // Every member, and every target of a grouped one, answers 1.
                let result: Vec<Value> = members(&query)
                    .iter()
                    .flat_map(|asked| {
                        asked.targets.iter().map(
                            |target| json!({ "metric": asked.labels(target), "value": [1.0, "1"] }),
                        )
                    })
                    .collect();
                json!({ "status": "success", "data": { "resultType": "vector", "result": result } })
                    .to_string()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address, queries, task)
}

#[tokio::test]
async fn prometheus_batches_per_second_grow_with_rollouts() {
    let (address, queries, task) = stand_in().await;
    let source = PrometheusSource::for_daemon(PrometheusAccess::open(), None);
    // 200 evaluations on one connection whose clocks read 5 ms apart: a second of a busy
    // daemon (10,000 rollouts at 10 s are 1,000 a second), every 20 ms window hit.
    let start = due_together();
    let rollouts: Vec<_> = (0..200).map(|i| rollout(i, &address)).collect();
    let source = &source;
    let inputs = futures::future::join_all(rollouts.iter().zip(0i64..).map(|((p, s), i)| {
        let called = start + chrono::Duration::milliseconds(5 * i);
        async move { (called, source.observe(p, s, called, None).await) }
    }))
    .await;
    let sent = queries.load(Ordering::SeqCst);
    let spacing = chrono::Duration::milliseconds(SPACING_MS);
    let window = chrono::Duration::from_std(DEFAULT_WINDOW).unwrap();
    // ⌈1 s / spacing⌉ + 1 instants; with a batch per 20 ms window it was 50.
    let most = (1_000 / SPACING_MS + 1) as u64;
    assert!(
        sent <= most,
        "a second of evaluations on one connection sent {sent} Prometheus queries (at most {most})"
    );
    for (called, input) in &inputs {
        // The instant queried is the one the analysis is told: never earlier than the
        // clock, at most a spacing and a window later.
        assert!(input.at >= *called && input.at - *called <= spacing + window);
        let Sample::Value(m) = &input.metrics[0].canary else {
            panic!("{:?}", input.metrics[0].canary);
        };
        assert_eq!(m.value, 1.0);
    }

    // A lone evaluation after a quiet spacing goes at its own 20 ms instant.
    let (policy, spec) = rollout(0, &address);
    let quiet = inputs.iter().map(|(_, i)| i.at).max().unwrap() + spacing;
    let called = quiet + chrono::Duration::milliseconds(1);
    let before = queries.load(Ordering::SeqCst);
    let input = source.observe(&policy, &spec, called, None).await;
    assert_eq!(input.at, quiet + window, "no wait beyond its window");
    assert_eq!(queries.load(Ordering::SeqCst), before + 1);
    task.abort();
}
