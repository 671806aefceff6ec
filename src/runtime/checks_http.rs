//! The HTTP check runner: runs `spec.checks` (method, headers, expected status and
//! body, timeout, attempts) for real, and says for each check what it saw.

use std::time::Duration;

use async_trait::async_trait;

use super::checks::{check_name, CheckRunner};
use crate::engine::ChecksOutcome;
use crate::metrics::PolicyRef;
use crate::policy::status::CheckResult;
use crate::policy::{HttpCheck, RolloutSpec};

/// Pause between two attempts of one check.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// At most this much of an unexpected body is quoted in a result.
const BODY_EXCERPT_CHARS: usize = 120;

/// Runs HTTP checks with reqwest.
#[derive(Clone, Debug)]
pub struct HttpChecks {
    http: reqwest::Client,
}

impl HttpChecks {
    pub fn new() -> Result<Self, reqwest::Error> {
        // Checks usually target local gateways: no proxy from the environment.
        let http = reqwest::Client::builder().no_proxy().build()?;
        Ok(HttpChecks { http })
    }

    /// Tries `check` up to `attempts` times; passes on the first good answer.
    async fn run_one(&self, name: String, check: &HttpCheck) -> CheckResult {
        let attempts = check.attempts.max(1);
        let mut last_failure = String::new();
        for attempt in 1..=attempts {
            match self.attempt(check).await {
                Ok(status) => {
                    return CheckResult {
                        name,
                        passed: true,
                        message: format!(
                            "{} {}: {status} (attempt {attempt} of {attempts})",
                            check.method,
                            crate::redact::urls(&check.url)
                        ),
                    }
                }
                Err(failure) => last_failure = failure,
            }
            if attempt < attempts {
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
        let last_failure = crate::redact::urls(&last_failure);
        tracing::warn!(check = %name, failure = %last_failure, "check failed");
        CheckResult {
            name,
            passed: false,
            message: format!(
                "{} {}: {last_failure} (after {attempts} attempt{})",
                check.method,
                crate::redact::urls(&check.url),
                if attempts == 1 { "" } else { "s" }
            ),
        }
    }

    /// One try: `Ok(status)` when status and body are as expected, else what was wrong.
    async fn attempt(&self, check: &HttpCheck) -> Result<u16, String> {
        let method = reqwest::Method::from_bytes(check.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("{:?} is not an HTTP method", check.method))?;
        let mut request = self
            .http
            .request(method, &check.url)
            .timeout(check.timeout.std());
        for (name, value) in &check.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &check.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {:?}", check.timeout.std())
            } else {
                format!("request failed: {e}")
            }
        })?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| format!("{status}, but the body could not be read: {e}"))?;
        if status != check.expect_status {
            return Err(format!(
                "{status}, expected {} (body: {:?})",
                check.expect_status,
                excerpt(&body)
            ));
        }
        if let Some(expected) = &check.expect_body {
            if !body.contains(expected.as_str()) {
                return Err(format!(
                    "{status}, but the body does not contain {expected:?} (body: {:?})",
                    excerpt(&body)
                ));
            }
        }
        super::checks_json::check_json(&body, &check.expect_json)
            .map_err(|broken| format!("{status}, but {broken} (body: {:?})", excerpt(&body)))?;
        Ok(status)
    }
}

fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

#[async_trait]
impl CheckRunner for HttpChecks {
    async fn run(&self, _policy: &PolicyRef, spec: &RolloutSpec) -> ChecksOutcome {
        let mut results = Vec::with_capacity(spec.checks.len());
        // In order, one at a time: checks are few, and their order is the report's order.
        for (index, check) in spec.checks.iter().enumerate() {
            results.push(self.run_one(check_name(spec, index), &check.http).await);
        }
        ChecksOutcome { results }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;

    use super::*;
    use crate::policy::Duration as PolicyDuration;

    /// `/flaky` fails twice then answers; `/tagged` needs the test cookie.
    async fn server() -> std::net::SocketAddr {
        let calls = Arc::new(AtomicU32::new(0));
        let app = axum::Router::new()
            .route(
                "/flaky",
                get(move || {
                    let calls = Arc::clone(&calls);
                    async move {
                        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                            (StatusCode::SERVICE_UNAVAILABLE, "warming up")
                        } else {
                            (StatusCode::OK, "ready v2")
                        }
                    }
                }),
            )
            .route(
                "/tagged",
                get(|headers: HeaderMap| async move {
                    match headers.get("cookie").and_then(|v| v.to_str().ok()) {
                        Some("test=true") => (StatusCode::OK, "v2"),
                        _ => (StatusCode::OK, "v1"),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn check(url: String, attempts: u32) -> HttpCheck {
        HttpCheck {
            url,
            method: "GET".into(),
            headers: BTreeMap::new(),
            expect_status: 200,
            body: None,
            expect_body: None,
            expect_json: Vec::new(),
            timeout: PolicyDuration::from_secs(2),
            attempts,
        }
    }

    #[tokio::test]
    async fn retries_until_the_check_passes() {
        let addr = server().await;
        let checks = HttpChecks::new().unwrap();
        let result = checks
            .run_one("ready".into(), &check(format!("http://{addr}/flaky"), 3))
            .await;
        assert!(result.passed, "{result:?}");
        assert!(
            result.message.contains("attempt 3 of 3"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn a_failure_names_what_was_seen() {
        let addr = server().await;
        let checks = HttpChecks::new().unwrap();
        let result = checks
            .run_one("ready".into(), &check(format!("http://{addr}/flaky"), 1))
            .await;
        assert!(!result.passed);
        assert_eq!(result.name, "ready");
        assert!(
            result.message.contains("503, expected 200"),
            "{}",
            result.message
        );
        assert!(result.message.contains("warming up"), "{}", result.message);

        let mut tagged = check(format!("http://{addr}/tagged"), 1);
        tagged.expect_body = Some("v2".into());
        let result = checks.run_one("canary".into(), &tagged).await;
        assert!(!result.passed);
        assert!(
            result.message.contains("does not contain \"v2\""),
            "{}",
            result.message
        );
        tagged.headers.insert("cookie".into(), "test=true".into());
        assert!(checks.run_one("canary".into(), &tagged).await.passed);
    }

    #[tokio::test]
    async fn an_unreachable_target_fails_with_the_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let checks = HttpChecks::new().unwrap();
        let result = checks
            .run_one(
                "down".into(),
                &check(format!("http://127.0.0.1:{port}/"), 1),
            )
            .await;
        assert!(!result.passed);
        assert!(
            result.message.contains("request failed"),
            "{}",
            result.message
        );
    }
}
