//! Issue "scale" §3: Prometheus load does not grow with rollouts. The daemon's metric
//! source batches the built-in templates' queries of evaluations due together; every
//! rollout still gets exactly its own answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{json, Value};
use shiftgate::analysis::sample::{AnalysisInput, Sample};
use shiftgate::metrics::prometheus::PrometheusSource;
use shiftgate::metrics::providers::PrometheusAccess;
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{RolloutSpec, Timestamp};

use super::support::batch_answer::{members, Asked};

/// How the stand-in answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every query (or batch member) of rollout `app-N` answers N; `app-7` has no series.
    Healthy,
    /// HTTP 503 for everything.
    Down,
}

/// A Prometheus stand-in on 127.0.0.1 that counts its queries and answers batches
/// member by member (the number of the `app-N` the member's query selects).
struct StandIn {
    address: String,
    queries: Arc<AtomicU64>,
    mode: Arc<Mutex<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn app_number(text: &str) -> Option<u64> {
    let at = text.find("app-")? + 4;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Member `asked`'s series: per target it selects, the number of its `app-N`.
fn series(asked: &Asked) -> Vec<Value> {
    asked
        .targets
        .iter()
        .filter_map(|target| {
            let named: String = target.iter().map(|(_, v)| v.as_str()).collect();
            let n = app_number(&named).or_else(|| app_number(&asked.text))?;
            (n != 7)
                .then(|| json!({ "metric": asked.labels(target), "value": [1.0, n.to_string()] }))
        })
        .collect()
}

fn answer(query: &str) -> Value {
    let result: Vec<Value> = members(query).iter().flat_map(series).collect();
    json!({ "status": "success", "data": { "resultType": "vector", "result": result } })
}

async fn stand_in() -> StandIn {
    let queries = Arc::new(AtomicU64::new(0));
    let mode = Arc::new(Mutex::new(Mode::Healthy));
    let (counted, moded) = (queries.clone(), mode.clone());
    let app = axum::Router::new().route(
        "/api/v1/query",
        post(move |form: axum::Form<HashMap<String, String>>| {
            let (counted, moded) = (counted.clone(), moded.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let query = form.get("query").cloned().unwrap_or_default();
                if *moded.lock().unwrap() == Mode::Down {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "upstream down")
                        .into_response();
                }
                (axum::http::StatusCode::OK, answer(&query).to_string()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    StandIn {
        address,
        queries,
        mode,
        task,
    }
}

pub(super) fn rollout(i: usize, address: &str) -> (PolicyRef, RolloutSpec) {
    let yaml = format!(
        "revision: v2\nrouter: {{istio: {{virtualService: app-{i}, stable: {{host: app-{i}}}, canary: {{host: app-{i}-canary}}}}}}\nsteps: [0, 100]\nanalysis:\n  interval: 10s\n  prometheus: {{address: '{address}'}}\n  metrics: [{{name: errors, template: istio-error-rate, max: 0.01}}]\n"
    );
    let spec: RolloutSpec = serde_yaml_ng::from_str(&yaml).unwrap();
    let policy = PolicyRef {
        namespace: "shop".to_owned(),
        name: format!("app-{i}"),
    };
    (policy, spec)
}

/// A millisecond past a 20 ms boundary: the evaluations' batch waits for the next one.
/// (The test stands in for the runtime's clock.)
#[allow(clippy::disallowed_methods)]
pub(super) fn due_together() -> Timestamp {
    let now = chrono::Utc::now().timestamp_millis();
    chrono::DateTime::from_timestamp_millis(now - now.rem_euclid(20) + 1).unwrap()
}

async fn observe_all(
    source: &PrometheusSource,
    rollouts: &[(PolicyRef, RolloutSpec)],
    at: Timestamp,
) -> Vec<AnalysisInput> {
    futures::future::join_all(
        rollouts
            .iter()
            .map(|(policy, spec)| source.observe(policy, spec, at, None)),
    )
    .await
}

const ROLLOUTS: usize = 50;

/// `rollouts` rollouts due together with one template: at most 2 Prometheus queries,
/// each rollout its own number, and the one without series no data.
async fn due_together_send_one_batch(rollouts: usize) {
    let prometheus = stand_in().await;
    let policies: Vec<_> = (0..rollouts)
        .map(|i| rollout(i, &prometheus.address))
        .collect();
    let source = PrometheusSource::for_daemon(PrometheusAccess::open(), None);
    let inputs = observe_all(&source, &policies, due_together()).await;
    let sent = prometheus.queries.load(Ordering::SeqCst);
    assert!(
        sent <= 2,
        "{rollouts} rollouts due together with one template sent {sent} Prometheus queries"
    );
    for (i, input) in inputs.iter().enumerate() {
        match (&input.metrics[0].canary, i) {
            (Sample::NoData, 7) => {}
            (Sample::Value(m), _) => assert_eq!(m.value, i as f64, "rollout app-{i}"),
            (other, _) => panic!("rollout app-{i}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn prometheus_queries_grow_with_rollouts() {
    // Alone, each evaluation sends 3 queries (value, requests, errors): 150.
    due_together_send_one_batch(ROLLOUTS).await;
}

/// Issue 12: at 10,000 rollouts the daemon sent 2.1–2.5× the Prometheus queries of
/// 1,000, as the batch cap counted every rollout's query: an instant's ~400 member
/// queries took two or three batches. The same query of many targets is now one grouped
/// query, so an instant's batch holds a few queries whatever the number of rollouts.
#[tokio::test]
async fn a_busy_instants_queries_grew_with_rollouts_past_the_batch_cap() {
    // 3,000 member queries due together: 12 batches of at most 256 before.
    due_together_send_one_batch(1_000).await;
}

#[tokio::test]
async fn a_batch_answers_each_rollout_as_its_own_query_would() {
    let prometheus = stand_in().await;
    let rollouts: Vec<_> = (0..12).map(|i| rollout(i, &prometheus.address)).collect();
    let batched = PrometheusSource::for_daemon(PrometheusAccess::open(), None);
    let alone =
        PrometheusSource::for_daemon(PrometheusAccess::open(), None).with_batch_window(None);
    for mode in [Mode::Healthy, Mode::Down] {
        *prometheus.mode.lock().unwrap() = mode;
        let together = observe_all(&batched, &rollouts, due_together()).await;
        for ((policy, spec), input) in rollouts.iter().zip(&together) {
            // The batch's instant is the one the analysis is told.
            let single = alone.observe(policy, spec, input.at, None).await;
            assert_eq!(input, &single, "{}", policy.name);
        }
        if mode == Mode::Down {
            let Sample::Unreachable { message } = &together[3].metrics[0].canary else {
                panic!("{:?}", together[3].metrics[0].canary);
            };
            assert!(
                message.contains("app-3-canary") && !message.contains("app-4"),
                "{message}"
            );
        }
    }
}

#[tokio::test]
async fn batches_never_mix_namespaces_or_prometheus_addresses() {
    let (first, second) = (stand_in().await, stand_in().await);
    // Namespaces `shop` and `bank` on the first Prometheus, `shop` also on the second.
    let mut rollouts: Vec<_> = (0..30).map(|i| rollout(i, &first.address)).collect();
    for (policy, _) in &mut rollouts[10..20] {
        policy.namespace = "bank".to_owned();
    }
    rollouts.extend((30..40).map(|i| rollout(i, &second.address)));
    let source = PrometheusSource::for_daemon(PrometheusAccess::open(), None);
    let inputs = observe_all(&source, &rollouts, due_together()).await;
    // A policy's own address is a connection of its namespace: one batch per namespace
    // and address.
    assert_eq!(first.queries.load(Ordering::SeqCst), 2, "shop and bank");
    assert_eq!(second.queries.load(Ordering::SeqCst), 1);
    for (i, input) in inputs.iter().enumerate() {
        if let Sample::Value(m) = &input.metrics[0].canary {
            assert_eq!(m.value, i as f64, "rollout app-{i}");
        }
    }
}

#[tokio::test]
async fn a_cancelled_evaluation_does_not_strand_the_batch_it_was_sending() {
    let prometheus = stand_in().await;
    let source = PrometheusSource::for_daemon(PrometheusAccess::open(), None);
    let ((first, first_spec), (second, second_spec)) = (
        rollout(1, &prometheus.address),
        rollout(2, &prometheus.address),
    );
    let at = due_together();
    // The first evaluation opens the batch and waits to send it; the second joins it.
    let mut sender = Box::pin(source.observe(&first, &first_spec, at, None));
    assert!(futures::poll!(&mut sender).is_pending());
    let joined = source.observe(&second, &second_spec, at, None);
    tokio::pin!(joined);
    assert!(futures::poll!(&mut joined).is_pending());
    // Its reconcile ends (shutdown, a lost lease): the member asks alone.
    drop(sender);
    let input = joined.await;
    let Sample::Value(m) = &input.metrics[0].canary else {
        panic!("{:?}", input.metrics[0].canary);
    };
    assert_eq!(m.value, 2.0);
    // Alone: its three queries one by one (had it sent a batch of its own: one).
    assert_eq!(prometheus.queries.load(Ordering::SeqCst), 3);
}

/// Issue 12: learning scrape phases asked Prometheus one `timestamp(…)` query per 200
/// rollouts of a group, every 10 s while no period could be learned (an idle canary, a
/// Prometheus that keeps no raw samples): 50 queries per round at 10,000 rollouts. The
/// members of a group are now read with one grouped query.
#[tokio::test]
async fn scrape_phase_reads_grew_with_rollouts() {
    let prometheus = stand_in().await;
    let rollouts: Vec<_> = (0..1_000)
        .map(|i| rollout(i, &prometheus.address))
        .collect();
    let source = PrometheusSource::for_daemon(PrometheusAccess::open(), None);
    let start = due_together();
    // Every rollout asks once: the first one's query has only itself; the rest join.
    for (policy, spec) in &rollouts {
        assert_eq!(source.scrape_phase(policy, spec, start).await, None);
    }
    // After the join wait the next question reads every member: the stand-in's instant
    // answers tell no period, so it is also asked again.
    let before = prometheus.queries.load(Ordering::SeqCst);
    let later = start + chrono::Duration::seconds(11);
    let (policy, spec) = &rollouts[0];
    assert_eq!(source.scrape_phase(policy, spec, later).await, None);
    let sent = prometheus.queries.load(Ordering::SeqCst) - before;
    // The raw samples of the asking rollout, and one query for all 1,000 members (six
    // before: one per 200).
    assert!(
        sent <= 2,
        "reading 1,000 rollouts' newest samples took {sent} queries"
    );
}
