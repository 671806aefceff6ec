//! One webhook delivery: a POST with a timeout per attempt, retries with a doubling
//! backoff, and an account of what was seen that never contains a header value or the
//! credentials of a URL. Generic on purpose: hooks use it, notifications can too.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// The longest pause between two attempts, however many retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// At most this much of an answer's body is quoted.
const BODY_EXCERPT_CHARS: usize = 120;

/// What to send, and how hard to try.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub url: String,
    /// Marked sensitive: reqwest and this module never print them.
    pub headers: HeaderMap,
    /// Sent as `application/json`.
    pub body: Vec<u8>,
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// Pause before the first retry, doubled for each further one (at most 5 minutes).
    pub backoff: Duration,
}

/// What came of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The receiver answered 2xx.
    pub passed: bool,
    /// The last HTTP status seen.
    pub status: Option<u16>,
    pub attempts: u32,
    /// E.g. `POST http://hooks.example/confirm: 503 "not yet" (after 3 attempts)`.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("`{0}` is not a valid header name")]
    Name(String),
    /// The value is not repeated: it may be a secret.
    #[error("the value of header `{0}` is not valid in HTTP (control characters?)")]
    Value(String),
}

/// Adds a header whose value is never printed.
pub fn add_sensitive_header(
    headers: &mut HeaderMap,
    name: &str,
    value: &str,
) -> Result<(), HeaderError> {
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::Name(name.to_owned()))?;
    let mut header_value =
        HeaderValue::from_str(value).map_err(|_| HeaderError::Value(name.to_owned()))?;
    header_value.set_sensitive(true);
    headers.append(header_name, header_value);
    Ok(())
}

/// The pause before retry `retry` (1-based): `backoff × 2^(retry-1)`, capped.
pub fn backoff_before(backoff: Duration, retry: u32) -> Duration {
    let factor = 2u32
        .checked_pow(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    backoff
        .checked_mul(factor)
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// POSTs `delivery` until a 2xx or the attempts run out. Never fails as a whole: what
/// went wrong is in the answer.
pub async fn deliver(http: &reqwest::Client, delivery: &Delivery) -> Delivered {
    let shown = crate::redact::urls(&delivery.url).into_owned();
    send(http, reqwest::Method::POST, delivery, &shown).await.0
}

/// Like [`deliver`] with any method, naming the receiver `shown` in every message and
/// log line instead of its URL (a Slack or Teams webhook URL is itself a secret).
/// With a 2xx answer, its body comes back too (Grafana answers an annotation's id).
pub async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    delivery: &Delivery,
    shown: &str,
) -> (Delivered, Option<String>) {
    let attempts = delivery.retries.saturating_add(1);
    let mut status = None;
    let mut last = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            tokio::time::sleep(backoff_before(delivery.backoff, attempt - 1)).await;
        }
        match attempt_once(http, &method, delivery).await {
            Ok((code, body)) if (200..300).contains(&code) => {
                let delivered = Delivered {
                    passed: true,
                    status: Some(code),
                    attempts: attempt,
                    message: format!("{method} {shown}: {code} (attempt {attempt} of {attempts})"),
                };
                return (delivered, Some(body));
            }
            Ok((code, body)) => {
                status = Some(code);
                last = format!("{code} {:?}", excerpt(&body));
            }
            Err(failure) => last = crate::redact::urls(&failure).into_owned(),
        }
    }
    tracing::warn!(url = %shown, failure = %last, attempts, "webhook not delivered");
    let delivered = Delivered {
        passed: false,
        status,
        attempts,
        message: format!(
            "{method} {shown}: {last} (after {attempts} attempt{})",
            if attempts == 1 { "" } else { "s" }
        ),
    };
    (delivered, None)
}

async fn attempt_once(
    http: &reqwest::Client,
    method: &reqwest::Method,
    delivery: &Delivery,
) -> Result<(u16, String), String> {
    let request = http
        .request(method.clone(), &delivery.url)
        .timeout(delivery.timeout)
        .headers(delivery.headers.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(delivery.body.clone());
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {:?}", delivery.timeout)
        } else {
            // Without the URL: the caller names it, redacted.
            format!("request failed: {}", e.without_url())
        }
    })?;
    let code = response.status().as_u16();
    // The body explains a failure, or carries the answer; read within the same timeout.
    let body = tokio::time::timeout(delivery.timeout, response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok((code, body))
}

fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_backoff_doubles_and_is_capped() {
        let one = Duration::from_secs(1);
        assert_eq!(backoff_before(one, 1), one);
        assert_eq!(backoff_before(one, 3), Duration::from_secs(4));
        assert_eq!(backoff_before(one, 40), MAX_BACKOFF);
    }

    #[test]
    fn a_bad_header_value_is_not_repeated_in_the_error() {
        let mut headers = HeaderMap::new();
        let error = add_sensitive_header(&mut headers, "x-token", "s3cr3t\n").unwrap_err();
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
        assert!(add_sensitive_header(&mut headers, "x-token", "fine").is_ok());
        assert!(headers["x-token"].is_sensitive());
    }
}
