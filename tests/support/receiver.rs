//! An HTTP receiver on 127.0.0.1 that records every request (method, path, the
//! `authorization` and `x-token` headers, JSON body, arrival time), for notifications
//! and Grafana annotations. Paths starting with `/hang` never answer, with `/fail`
//! answer 500; `POST /api/annotations` answers like Grafana (`{"id": n, …}`), every
//! other request 200.

#![allow(clippy::unwrap_used)] // test support: a panic is the failure report

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub body: Value,
    pub at: Instant,
}

#[derive(Clone, Default)]
pub struct Receiver {
    calls: Arc<Mutex<Vec<Received>>>,
    next_id: Arc<AtomicU64>,
}

/// Arrival times are wall-clock: the tests compare them with a rollout's.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub async fn start() -> (SocketAddr, Receiver) {
        let receiver = Receiver::default();
        let state = receiver.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.record(method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, receiver)
    }

    async fn record(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let path = uri.path().to_owned();
        self.calls.lock().unwrap().push(Received {
            method: method.to_string(),
            path: path.clone(),
            authorization: header("authorization"),
            token: header("x-token"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            at: now(),
        });
        if path.starts_with("/hang") {
            return std::future::pending().await;
        }
        if path.starts_with("/fail") {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        if method == Method::POST && path.ends_with("/api/annotations") {
            let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
            return axum::Json(json!({ "id": id, "message": "Annotation added" })).into_response();
        }
        StatusCode::OK.into_response()
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<Received> {
        self.calls.lock().unwrap().clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn under(&self, prefix: &str) -> Vec<Received> {
        self.calls()
            .into_iter()
            .filter(|c| c.path.starts_with(prefix))
            .collect()
    }

    /// The `event` field of the bodies under `prefix`, in order.
    pub fn events(&self, prefix: &str) -> Vec<String> {
        self.under(prefix)
            .iter()
            .map(|c| c.body["event"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// Polls until `predicate` holds on the calls, at most `limit`.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        predicate: impl Fn(&Receiver) -> bool,
    ) {
        let polled = async {
            while !predicate(self) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(limit, polled).await.is_err() {
            panic!("the receiver never saw {what}: {:#?}", self.calls());
        }
    }
}
