//! The read-only HTTP side of the status page: the page itself (HTML, JS and CSS built
//! into the binary, no build step), and the JSON it polls. Only `GET`s; nothing here
//! changes a rollout.

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use super::board::{Board, MAX_METRICS, MAX_ROLLOUTS, MAX_SAMPLES};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const CHARTS_JS: &str = include_str!("assets/charts.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Only this origin's own script, style and JSON; no inline script, no frames, no
/// forms: names and messages from policies can never run as code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page and its API as an axum `Router` (tests call it in-process).
pub fn router(board: Board) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/assets/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/assets/charts.js",
            get(|| asset("text/javascript; charset=utf-8", CHARTS_JS)),
        )
        .route(
            "/assets/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route("/api/rollouts", get(rollouts))
        .route("/api/rollouts/{namespace}/{name}", get(rollout))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::map_response(secure))
        .with_state(board)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn rollouts(State(board): State<Board>) -> Response {
    Json(serde_json::json!({
        "rollouts": board.rows(),
        "caps": {
            "maxRollouts": MAX_ROLLOUTS,
            "maxSamples": MAX_SAMPLES,
            "maxMetrics": MAX_METRICS,
        },
    }))
    .into_response()
}

async fn rollout(
    State(board): State<Board>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match board.detail(&namespace, &name) {
        Some(detail) => Json(detail).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "error": format!("no rollout {namespace}/{name} has been seen by this process"),
            })),
        )
            .into_response(),
    }
}

/// Headers every answer carries.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Serves the page on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    board: Board,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(board))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `address` and serves the page in the background for as long as the process
/// (its tokio runtime) lives; returns the address bound (a port 0 becomes the real one).
pub async fn spawn(address: SocketAddr, board: Board) -> std::io::Result<SocketAddr> {
    spawn_app(address, router(board)).await
}

/// [`spawn`], with the process's metrics at `/metrics` beside the page (`run --web`:
/// the same families the daemon exports, so the same alerts and dashboards read them).
pub async fn spawn_with_metrics(
    address: SocketAddr,
    board: Board,
    metrics: std::sync::Arc<crate::observe::metrics::Metrics>,
) -> std::io::Result<SocketAddr> {
    let app = crate::observe::http::metrics_router(metrics).merge(router(board));
    spawn_app(address, app).await
}

async fn spawn_app(address: SocketAddr, app: Router) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(std::future::pending())
            .await;
        if let Err(error) = served {
            tracing::warn!(error = %error, "the status page stopped");
        }
    });
    Ok(bound)
}

/// The URL to open for a bound address (an unspecified address is reachable on
/// loopback).
pub fn url(bound: SocketAddr) -> String {
    let mut shown = bound;
    if shown.ip().is_unspecified() {
        shown.set_ip(match bound {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{shown}/")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_url_of_an_unspecified_address_is_loopback() {
        assert_eq!(
            url("0.0.0.0:8081".parse().unwrap()),
            "http://127.0.0.1:8081/"
        );
        assert_eq!(url("[::1]:80".parse().unwrap()), "http://[::1]:80/");
    }

    #[test]
    fn the_page_never_uses_inline_script_or_html_from_data() {
        // Inline script would need 'unsafe-inline'; innerHTML would parse names and
        // messages as HTML. Text goes through textContent only.
        for (file, text) in [("app.js", APP_JS), ("charts.js", CHARTS_JS)] {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!text.contains(forbidden), "{file} uses {forbidden}");
            }
        }
        assert!(
            !INDEX_HTML.contains("<script>"),
            "inline script in index.html"
        );
        assert!(!INDEX_HTML.contains("style="), "inline style in index.html");
    }
}
