//! The demo HTTP app: a tiny release that answers `GET /` with its version, and fails or
//! slows down on demand so a release can go bad in the middle of a rollout.
//!
//! Faults (error rate, added latency) are set at start and changed at run time with
//! `POST /admin/faults` (`{"errorRate": 0.5, "latencyMs": 20}`). Failures are drawn from
//! a seeded RNG, so a demo run is reproducible request for request. The version it
//! answers with changes with `POST /admin/version` (`{"version": "v3"}`): the playground
//! "deploys" the next release that way, without restarting the instance.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Response header naming the version that answered (also on failures).
pub const VERSION_HEADER: &str = "x-shiftgate-demo-version";

/// What a release does wrong.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Share of `GET /` requests answered with 500, from 0 to 1.
    pub error_rate: f64,
    /// Latency added to every `GET /`, in milliseconds.
    pub latency_ms: u64,
}

/// A change to the faults; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

impl Faults {
    /// Checks the faults are meaningful: an error rate is a share, from 0 to 1.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error rate {} is not between 0 and 1",
                self.error_rate
            ));
        }
        if self.latency_ms > 60_000 {
            return Err(format!("latency {} ms is over a minute", self.latency_ms));
        }
        Ok(())
    }
}

/// The version an instance answers with (`/admin/version`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppVersion {
    pub version: String,
}

impl AppVersion {
    /// A version is a short label: letters, digits, `.`, `_`, `-` (it goes in a header).
    pub fn validate(&self) -> Result<(), String> {
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.version.is_empty() || self.version.len() > 64 || !self.version.chars().all(fine) {
            return Err(format!(
                "version {:?} is not 1 to 64 letters, digits, '.', '_' or '-'",
                self.version
            ));
        }
        Ok(())
    }
}

struct AppState {
    version: Mutex<String>,
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
}

/// The app's routes, for serving or for in-process tests.
pub fn router(version: &str, faults: Faults, seed: u64) -> Router {
    let state = Arc::new(AppState {
        version: Mutex::new(version.to_owned()),
        faults: Mutex::new(faults),
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
    });
    Router::new()
        .route("/", get(answer))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/admin/faults", get(get_faults).post(set_faults))
        .route("/admin/version", get(get_version).post(set_version))
        .with_state(state)
}

async fn answer(State(state): State<Arc<AppState>>) -> Response {
    let faults = current(&state);
    let version = current_version(&state);
    // A poisoned lock only means another request panicked; the RNG is still usable.
    let roll: f64 = match state.rng.lock() {
        Ok(mut rng) => rng.random(),
        Err(poisoned) => poisoned.into_inner().random(),
    };
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let (status, body) = if roll < faults.error_rate {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("injected failure from {version}\n"),
        )
    } else {
        (StatusCode::OK, format!("{version}\n"))
    };
    let mut response = (status, body).into_response();
    if let Ok(value) = HeaderValue::from_str(&version) {
        response.headers_mut().insert(VERSION_HEADER, value);
    }
    response
}

fn current(state: &AppState) -> Faults {
    match state.faults.lock() {
        Ok(faults) => *faults,
        Err(poisoned) => *poisoned.into_inner(),
    }
}

fn current_version(state: &AppState) -> String {
    match state.version.lock() {
        Ok(version) => version.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

async fn get_version(State(state): State<Arc<AppState>>) -> Json<AppVersion> {
    Json(AppVersion {
        version: current_version(&state),
    })
}

async fn set_version(
    State(state): State<Arc<AppState>>,
    Json(next): Json<AppVersion>,
) -> Result<Json<AppVersion>, (StatusCode, String)> {
    next.validate()
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")))?;
    match state.version.lock() {
        Ok(mut version) => version.clone_from(&next.version),
        Err(poisoned) => poisoned.into_inner().clone_from(&next.version),
    }
    tracing::info!(version = %next.version, "version changed");
    Ok(Json(next))
}

async fn get_faults(State(state): State<Arc<AppState>>) -> Json<Faults> {
    Json(current(&state))
}

async fn set_faults(
    State(state): State<Arc<AppState>>,
    Json(update): Json<FaultsUpdate>,
) -> Result<Json<Faults>, (StatusCode, String)> {
    let mut faults = match state.faults.lock() {
        Ok(faults) => faults,
        Err(poisoned) => poisoned.into_inner(),
    };
    let next = Faults {
        error_rate: update.error_rate.unwrap_or(faults.error_rate),
        latency_ms: update.latency_ms.unwrap_or(faults.latency_ms),
    };
    next.validate()
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")))?;
    *faults = next;
    tracing::info!(
        version = %current_version(&state),
        error_rate = next.error_rate,
        latency_ms = next.latency_ms,
        "faults changed"
    );
    Ok(Json(next))
}

/// Serves the app on `listen` until `shutdown` completes.
pub async fn serve(
    listen: SocketAddr,
    version: &str,
    faults: Faults,
    seed: u64,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    faults.validate().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router(version, faults, seed))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Sets a running app's faults through its admin endpoint.
pub async fn set_remote_faults(
    http: &reqwest::Client,
    app: SocketAddr,
    update: FaultsUpdate,
) -> Result<Faults, String> {
    post_admin(http, app, "faults", &update).await
}

/// Sets the version a running app answers with, through its admin endpoint.
pub async fn set_remote_version(
    http: &reqwest::Client,
    app: SocketAddr,
    version: &str,
) -> Result<AppVersion, String> {
    let body = AppVersion {
        version: version.to_owned(),
    };
    post_admin(http, app, "version", &body).await
}

/// The version a running app answers with.
pub async fn remote_version(http: &reqwest::Client, app: SocketAddr) -> Result<String, String> {
    let url = format!("http://{app}/admin/version");
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot reach the demo app at {url}: {e}"))?;
    let answer: AppVersion = response
        .json()
        .await
        .map_err(|e| format!("cannot decode the answer of {url}: {e}"))?;
    Ok(answer.version)
}

async fn post_admin<B: Serialize, T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    app: SocketAddr,
    what: &str,
    body: &B,
) -> Result<T, String> {
    let url = format!("http://{app}/admin/{what}");
    let response = http
        .post(&url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach the demo app at {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "{url} refused the change ({status}): {}",
            body.trim()
        ));
    }
    response
        .json()
        .await
        .map_err(|e| format!("cannot decode the answer of {url}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn start(faults: Faults) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router("v7", faults, 42))
                .await
                .unwrap();
        });
        (addr, server)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    #[tokio::test]
    async fn answers_with_its_version_and_injects_errors_at_run_time() {
        let healthy = Faults {
            error_rate: 0.0,
            latency_ms: 0,
        };
        let (addr, server) = start(healthy).await;
        let http = client();
        let response = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[VERSION_HEADER], "v7");
        assert_eq!(response.text().await.unwrap(), "v7\n");

        let all_errors = FaultsUpdate {
            error_rate: Some(1.0),
            latency_ms: None,
        };
        let faults = set_remote_faults(&http, addr, all_errors).await.unwrap();
        assert_eq!(
            faults,
            Faults {
                error_rate: 1.0,
                latency_ms: 0
            }
        );
        let response = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[VERSION_HEADER], "v7");

        let invalid = FaultsUpdate {
            error_rate: Some(1.5),
            latency_ms: None,
        };
        let err = set_remote_faults(&http, addr, invalid).await.unwrap_err();
        assert!(err.contains("not between 0 and 1"), "{err}");
        server.abort();
    }

    #[tokio::test]
    async fn the_version_changes_at_run_time_and_must_be_a_label() {
        let (addr, server) = start(Faults {
            error_rate: 0.0,
            latency_ms: 0,
        })
        .await;
        let http = client();
        assert_eq!(remote_version(&http, addr).await.unwrap(), "v7");
        let changed = set_remote_version(&http, addr, "v8").await.unwrap();
        assert_eq!(changed.version, "v8");
        let response = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(response.headers()[VERSION_HEADER], "v8");
        assert_eq!(response.text().await.unwrap(), "v8\n");
        let err = set_remote_version(&http, addr, "v 9\r\n")
            .await
            .unwrap_err();
        assert!(err.contains("is not 1 to 64 letters"), "{err}");
        assert_eq!(remote_version(&http, addr).await.unwrap(), "v8");
        server.abort();
    }

    #[tokio::test]
    async fn error_rate_is_honoured_over_many_requests() {
        let (addr, server) = start(Faults {
            error_rate: 0.25,
            latency_ms: 0,
        })
        .await;
        let http = client();
        let mut failures = 0;
        for _ in 0..400 {
            let status = http
                .get(format!("http://{addr}/"))
                .send()
                .await
                .unwrap()
                .status();
            if status == 500 {
                failures += 1;
            }
        }
        // 400 draws at p = 0.25: mean 100, sd ~8.7; ±4 sd.
        assert!((65..=135).contains(&failures), "{failures} failures");
        server.abort();
    }
}
