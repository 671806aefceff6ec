//! The daemon's HTTP endpoints: `/healthz` (the process answers), `/readyz` (watches
//! synced and leader election settled: a follower is ready too, it keeps its caches warm
//! and takes over at once), `/metrics` (OpenMetrics or the text format 0.0.4, as the scraper asks).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::exposition::Format;
use super::metrics::Metrics;

/// What `/readyz` reports. Cheap to clone; every clone shares the same flags.
#[derive(Clone, Debug, Default)]
pub struct Health {
    flags: Arc<HealthFlags>,
}

#[derive(Debug, Default)]
struct HealthFlags {
    watches_synced: AtomicBool,
    election_settled: AtomicBool,
    shutting_down: AtomicBool,
}

impl Health {
    /// The RolloutPolicy watch has listed everything once (the cache is complete).
    pub fn set_watches_synced(&self) {
        self.flags.watches_synced.store(true, Ordering::Release);
    }

    /// Leader election has decided once: this daemon either holds the Lease or knows
    /// who does.
    pub fn set_election_settled(&self) {
        self.flags.election_settled.store(true, Ordering::Release);
    }

    /// Shutdown started: stop receiving traffic while the in-flight write finishes.
    pub fn set_shutting_down(&self) {
        self.flags.shutting_down.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else what is still missing.
    pub fn readiness(&self) -> Result<(), Vec<&'static str>> {
        let mut missing = Vec::new();
        if !self.flags.watches_synced.load(Ordering::Acquire) {
            missing.push("RolloutPolicy watch not synced yet");
        }
        if !self.flags.election_settled.load(Ordering::Acquire) {
            missing.push("leader election not settled yet");
        }
        if self.flags.shutting_down.load(Ordering::Acquire) {
            missing.push("shutting down");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// The endpoints as an axum `Router` (tests call it in-process).
pub fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, health })
}

/// Only `/metrics`, for a process with no health to report (`run --web`).
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(AppState {
            metrics,
            health: Health::default(),
        })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(missing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join("; ")),
        )
            .into_response(),
    }
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else text 0.0.4.
async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    match state.metrics.encode_as(format) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, format.content_type())],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics registry\n",
        )
            .into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the requests in
/// flight and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends on pod deletion).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: only SIGTERM can stop the daemon then.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_sync_and_settled_election() {
        let health = Health::default();
        assert_eq!(health.readiness().map_err(|m| m.len()), Err(2));
        health.set_watches_synced();
        assert!(health.readiness().is_err());
        health.set_election_settled();
        assert_eq!(health.readiness(), Ok(()));
        health.set_shutting_down();
        assert!(health.readiness().is_err());
    }
}
