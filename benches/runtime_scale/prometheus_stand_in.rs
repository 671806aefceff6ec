//! The Prometheus stand-in: answers the queries that learn scrape phases (raw range
//! selectors, `timestamp(…)` batches) with no series, so no phase is ever learned, and
//! every other instant query with one healthy sample and a
//! batched query (`label_replace(<member>, "shiftgate_batch_query", "<i>", "", "") or …`)
//! with one such series per member, labelled as asked, or per target of a grouped member
//! (`tests/support/batch_answer.rs`). It counts the HTTP queries it answers (Prometheus
//! queries per second) and notes, per member or target, which rollout (`app-N` in the
//! target's labels or the member's query) asked when: evaluations are counted per
//! rollout from those notes, batched or not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::routing::any;
use serde_json::{json, Value};

pub struct PrometheusStandIn {
    pub address: String,
    notes: Arc<Mutex<Vec<(Instant, u32)>>>,
    sent: Arc<AtomicU64>,
    /// Of `sent`, the queries that learn scrape phases: the raw range selectors and the
    /// `timestamp(…)` batches of the rollouts' newest samples (never metric batches; this
    /// stand-in's instant answers never tell a period, so they are asked again every
    /// `JOIN_WAIT`).
    phase: Arc<AtomicU64>,
}

impl PrometheusStandIn {
    pub fn start() -> PrometheusStandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let notes: Arc<Mutex<Vec<(Instant, u32)>>> = Arc::default();
        let sent: Arc<AtomicU64> = Arc::default();
        let phase: Arc<AtomicU64> = Arc::default();
        let (noted, counted, phased) = (notes.clone(), sent.clone(), phase.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/api/v1/query",
                    any(move |form: axum::Form<HashMap<String, String>>| {
                        let (noted, counted, phased) =
                            (noted.clone(), counted.clone(), phased.clone());
                        async move {
                            counted.fetch_add(1, Ordering::Relaxed);
                            let query = form.get("query").map_or("", String::as_str);
                            // The raw range selector, or the `timestamp(…)` batch of
                            // the rollouts' newest samples: both learn scrape phases.
                            let learning = !query.contains('(') || query.contains("timestamp(");
                            // Not an evaluation: no series (no phase), no notes.
                            let (result, apps) = if learning {
                                phased.fetch_add(1, Ordering::Relaxed);
                                (Vec::new(), Vec::new())
                            } else {
                                answer(query)
                            };
                            let now = Instant::now();
                            noted
                                .lock()
                                .unwrap()
                                .extend(apps.into_iter().map(|app| (now, app)));
                            axum::Json(json!({
                                "status": "success",
                                "data": { "resultType": "vector", "result": result }
                            }))
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        PrometheusStandIn {
            address,
            notes,
            sent,
            phase,
        }
    }

    /// The (instant, rollout) notes since the last call.
    pub fn take(&self) -> Vec<(Instant, u32)> {
        std::mem::take(&mut *self.notes.lock().unwrap())
    }

    /// HTTP queries answered since the start.
    pub fn queries_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Of [`PrometheusStandIn::queries_sent`], the scrape-phase queries.
    pub fn phase_queries_sent(&self) -> u64 {
        self.phase.load(Ordering::Relaxed)
    }
}

/// The series answering `query` and the rollouts its members (or it) are about: one
/// healthy series per member, or per target of a grouped member.
fn answer(query: &str) -> (Vec<Value>, Vec<u32>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut series = Vec::new();
    let mut apps = Vec::new();
    for asked in super::batch_answer::members(query) {
        for target in &asked.targets {
            series.push(json!({ "metric": asked.labels(target), "value": [now, "0.001"] }));
            let named: String = target.iter().map(|(_, v)| v.as_str()).collect();
            apps.extend(app_of(&named).or_else(|| app_of(&asked.text)));
        }
    }
    (series, apps)
}

/// The N of the first `app-N` in a query.
fn app_of(text: &str) -> Option<u32> {
    let at = text.find("app-")? + 4;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
