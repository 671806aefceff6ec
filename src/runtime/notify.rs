//! Sends `spec.notify` webhooks and `spec.grafana.annotations` without ever holding up a
//! rollout: a tick only builds the bodies and puts them on a bounded queue
//! ([`Notifier::announce`] never waits); background workers deliver them through
//! `runtime::webhook`. The notifications of one (policy, target) are delivered one after
//! the other, in order (`runtime::notify_queue`); a receiver that hangs delays only its
//! own. A full queue drops the notification and counts it. One `Notifier` per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;

use super::hooks::HeaderSecrets;
use super::notify_payload::{body, event_of, Notification};
use super::notify_queue::KeyedQueue;
use super::webhook::{add_sensitive_header, backoff_before, send, Delivery};
use crate::engine::Transition;
use crate::metrics::secrets::read_text;
use crate::metrics::PolicyRef;
use crate::observe::grafana::dashboard_link;
use crate::observe::grafana_annotations::{
    annotations_url, create_body, created_id, end_body, request_for, AnnotationRequest,
};
use crate::observe::labels::{NotifyChannel, NotifyResult};
use crate::policy::{
    GrafanaSpec, NotifyEvent, RolloutSpec, RolloutStatus, SecretKeyRef, WebhookSpec,
};

/// Deliveries running at once, per process.
const CONCURRENT_DELIVERIES: usize = 8;
/// Notifications waiting or being sent, per process; past it, new ones are dropped
/// (and counted).
pub const QUEUE_LIMIT: usize = 1024;

/// Whose notifications are delivered in order: a policy's target (`None`: its Grafana).
type Key = (String, String, Option<usize>);

/// Where the outcome of each delivery goes: metrics and Events in the daemon, the log
/// in `shiftgate run`.
#[async_trait]
pub trait NotifyReport: Send + Sync {
    fn counted(&self, channel: NotifyChannel, result: NotifyResult);
    /// A delivery failed for good; `message` never holds a secret.
    async fn failed(&self, policy: &PolicyRef, message: &str);
}

/// `shiftgate run`: failures are warnings in the log (the webhook module logs them).
pub struct LogReport;

#[async_trait]
impl NotifyReport for LogReport {
    fn counted(&self, _channel: NotifyChannel, _result: NotifyResult) {}
    async fn failed(&self, policy: &PolicyRef, message: &str) {
        tracing::warn!(namespace = %policy.namespace, name = %policy.name, detail = %message, "notification failed");
    }
}

enum Job {
    Webhook {
        policy: PolicyRef,
        /// The index in `spec.notify`, to name it without its (maybe secret) URL.
        index: usize,
        target: WebhookSpec,
        event: NotifyEvent,
        body: Vec<u8>,
    },
    Annotation {
        policy: PolicyRef,
        grafana: GrafanaSpec,
        request: AnnotationRequest,
    },
}

struct Shared {
    http: Result<reqwest::Client, String>,
    secrets: HeaderSecrets,
    report: Arc<dyn NotifyReport>,
    /// The Grafana region of each rollout's current step: (namespace, name) → id.
    open_regions: Mutex<HashMap<(String, String), u64>>,
}

/// The process's notification queue.
pub struct Notifier {
    queue: KeyedQueue<Key, Job>,
    shared: Arc<Shared>,
}

impl Notifier {
    /// Starts the workers (call inside a tokio runtime). `secrets` says where secret
    /// URLs, header values and tokens come from, as for hooks.
    pub fn start(secrets: HeaderSecrets, report: Arc<dyn NotifyReport>) -> Arc<Self> {
        // No proxy from the environment, no redirects: a receiver cannot bounce the
        // headers (or the token) elsewhere.
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for notifications: {e}"));
        let shared = Arc::new(Shared {
            http,
            secrets,
            report,
            open_regions: Mutex::default(),
        });
        let worker = Arc::clone(&shared);
        let queue = KeyedQueue::start(QUEUE_LIMIT, CONCURRENT_DELIVERIES, move |job| {
            let shared = Arc::clone(&worker);
            async move { shared.run(job).await }
        });
        Arc::new(Notifier { queue, shared })
    }

    /// Queues what `transitions` announce to `spec`'s targets. Never waits.
    pub fn announce(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        status: &RolloutStatus,
        transitions: &[Transition],
    ) {
        let annotations = spec.grafana.as_deref().filter(|g| g.annotations.is_some());
        if spec.notify.is_empty() && annotations.is_none() {
            return;
        }
        let link = spec.grafana.as_ref().and_then(|g| {
            let (since, until) = crate::observe::grafana::rollout_range(status);
            dashboard_link(g, policy, since, until).ok()
        });
        for transition in transitions {
            let Some(event) = event_of(transition) else {
                continue;
            };
            let notification =
                Notification::new(policy, spec, status, transition, event, link.clone());
            for (index, notify) in spec.notify.iter().enumerate() {
                if !notify.webhook.wants(event) {
                    continue;
                }
                let body = body(notify.webhook.format, &notification);
                let job = Job::Webhook {
                    policy: policy.clone(),
                    index,
                    target: notify.webhook.clone(),
                    event,
                    body: serde_json::to_vec(&body).unwrap_or_default(),
                };
                self.enqueue(key(policy, Some(index)), job, NotifyChannel::Webhook);
            }
            if let Some(grafana) = annotations {
                let job = Job::Annotation {
                    policy: policy.clone(),
                    grafana: grafana.clone(),
                    request: request_for(policy, transition, event),
                };
                self.enqueue(key(policy, None), job, NotifyChannel::Grafana);
            }
        }
    }

    fn enqueue(&self, key: Key, job: Job, channel: NotifyChannel) {
        if !self.queue.push(key, job) {
            self.shared.report.counted(channel, NotifyResult::Dropped);
            tracing::warn!(
                channel = channel.as_str(),
                "notification dropped: the queue is full"
            );
        }
    }

    /// Waits until nothing is queued or being sent, at most `limit`. Returns whether
    /// everything went out.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        self.queue.wait_idle(limit).await
    }

    /// Before a process exits: lets the last notifications of `spec` go out, waiting
    /// at most as long as one delivery may take.
    pub async fn finish(&self, spec: &RolloutSpec) {
        let limit = Notifier::longest(spec).saturating_add(Duration::from_secs(1));
        if !self.wait_idle(limit).await {
            tracing::warn!("a notification was still being sent when the run ended");
        }
    }

    /// The longest one delivery of `spec` may take (every attempt timing out, every
    /// backoff waited): how long `run` waits for the last notifications before it exits.
    pub fn longest(spec: &RolloutSpec) -> Duration {
        let webhooks = spec.notify.iter().map(|n| {
            let w = &n.webhook;
            one_delivery(w.timeout.std(), w.retries, w.backoff.std())
        });
        // An annotation may be two requests: end the region, then create.
        let grafana = spec
            .grafana
            .as_ref()
            .and_then(|g| g.annotations.as_ref())
            .map(|a| {
                one_delivery(a.timeout.std(), a.retries, Duration::from_secs(1)).saturating_mul(2)
            });
        webhooks.chain(grafana).max().unwrap_or(Duration::ZERO)
    }
}

fn one_delivery(timeout: Duration, retries: u32, backoff: Duration) -> Duration {
    let attempts = retries.saturating_add(1);
    let pauses = (1..attempts)
        .map(|r| backoff_before(backoff, r))
        .fold(Duration::ZERO, Duration::saturating_add);
    timeout.saturating_mul(attempts).saturating_add(pauses)
}

fn key(policy: &PolicyRef, target: Option<usize>) -> Key {
    (policy.namespace.clone(), policy.name.clone(), target)
}

impl Shared {
    async fn run(&self, job: Job) {
        match job {
            Job::Webhook {
                policy,
                index,
                target,
                event,
                body,
            } => {
                let result = self.webhook(&policy, index, &target, body).await;
                self.settle(&policy, NotifyChannel::Webhook, event.as_str(), result)
                    .await;
            }
            Job::Annotation {
                policy,
                grafana,
                request,
            } => {
                let event = request_event(&request);
                let result = self.annotate(&policy, &grafana, &request).await;
                self.settle(&policy, NotifyChannel::Grafana, event, result)
                    .await;
            }
        }
    }

    async fn settle(
        &self,
        policy: &PolicyRef,
        channel: NotifyChannel,
        event: &str,
        result: Result<(), String>,
    ) {
        match result {
            Ok(()) => self.report.counted(channel, NotifyResult::Delivered),
            Err(why) => {
                self.report.counted(channel, NotifyResult::Failed);
                let what = match channel {
                    NotifyChannel::Webhook => "notification",
                    NotifyChannel::Grafana => "Grafana annotation",
                };
                self.report
                    .failed(policy, &format!("{what} `{event}` not delivered: {why}"))
                    .await;
            }
        }
    }

    async fn webhook(
        &self,
        policy: &PolicyRef,
        index: usize,
        target: &WebhookSpec,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let field = format!("spec.notify[{index}].webhook");
        let url = self
            .resolve(
                policy,
                Source {
                    plain: target.url.as_deref(),
                    env: target.url_env.as_deref(),
                    secret: target.url_secret_ref.as_ref(),
                    secret_field: "spec.notify[].webhook.urlSecretRef",
                },
                &format!("{field}.url"),
            )
            .await?;
        // A URL from a Secret or the environment is itself a secret (Slack, Teams): it
        // is never shown, the target is named by its place in the policy.
        let shown = match &target.url {
            Some(url) => crate::redact::urls(url).into_owned(),
            None => format!("{field} (URL kept secret)"),
        };
        let mut headers = HeaderMap::new();
        for header in &target.headers {
            let value = self
                .resolve(
                    policy,
                    Source {
                        plain: header.value.as_deref(),
                        env: header.value_env.as_deref(),
                        secret: header.value_secret_ref.as_ref(),
                        secret_field: "spec.notify[].webhook.headers[].valueSecretRef",
                    },
                    &format!("{field}.headers `{}`", header.name),
                )
                .await?;
            add_sensitive_header(&mut headers, &header.name, &value).map_err(|e| e.to_string())?;
        }
        let delivery = Delivery {
            url,
            headers,
            body,
            timeout: target.timeout.std(),
            retries: target.retries,
            backoff: target.backoff.std(),
        };
        let (delivered, _) = send(http, reqwest::Method::POST, &delivery, &shown).await;
        if delivered.passed {
            Ok(())
        } else {
            Err(delivered.message)
        }
    }

    async fn annotate(
        &self,
        policy: &PolicyRef,
        grafana: &GrafanaSpec,
        request: &AnnotationRequest,
    ) -> Result<(), String> {
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let Some(settings) = &grafana.annotations else {
            return Ok(());
        };
        let token = self
            .resolve(
                policy,
                Source {
                    plain: None,
                    env: settings.token_env.as_deref(),
                    secret: settings.token_secret_ref.as_ref(),
                    secret_field: "spec.grafana.annotations.tokenSecretRef",
                },
                "spec.grafana.annotations token",
            )
            .await?;
        let mut headers = HeaderMap::new();
        add_sensitive_header(&mut headers, "authorization", &format!("Bearer {token}"))
            .map_err(|e| e.to_string())?;
        let base = annotations_url(&grafana.url);
        let shown = crate::redact::urls(&base).into_owned();
        let delivery = |url: String, body: serde_json::Value| Delivery {
            url,
            headers: headers.clone(),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            timeout: settings.timeout.std(),
            retries: settings.retries,
            backoff: Duration::from_secs(1),
        };
        let key = (policy.namespace.clone(), policy.name.clone());
        let annotation = request.annotation();
        if !matches!(request, AnnotationRequest::Point(_)) {
            let open = self.regions().remove(&key);
            if let Some(id) = open {
                let url = format!("{base}/{id}");
                let (ended, _) = send(
                    http,
                    reqwest::Method::PATCH,
                    &delivery(url, end_body(annotation.at_ms)),
                    &format!("{shown}/{id}"),
                )
                .await;
                if !ended.passed {
                    tracing::warn!(detail = %ended.message, "a step's Grafana region was not ended");
                }
            }
        }
        let (created, answer) = send(
            http,
            reqwest::Method::POST,
            &delivery(base.clone(), create_body(&grafana.dashboard, annotation)),
            &shown,
        )
        .await;
        if !created.passed {
            return Err(created.message);
        }
        if let AnnotationRequest::OpenStep(_) = request {
            match answer.as_deref().and_then(created_id) {
                Some(id) => {
                    self.regions().insert(key, id);
                }
                None => tracing::warn!(
                    "Grafana answered no annotation id: the step's region stays a point"
                ),
            }
        }
        Ok(())
    }

    fn regions(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
        self.open_regions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A value written in the policy, or read from the environment (`run`) or a
    /// Secret of the policy's namespace (the daemon). Errors name `field`, never the
    /// value.
    async fn resolve(
        &self,
        policy: &PolicyRef,
        source: Source<'_>,
        field: &str,
    ) -> Result<String, String> {
        if let Some(value) = source.plain {
            return Ok(value.to_owned());
        }
        match (&self.secrets, source.env, source.secret) {
            (HeaderSecrets::Environment, Some(var), _) => std::env::var(var)
                .map_err(|_| format!("{field}: environment variable `{var}` is not set")),
            (HeaderSecrets::Environment, None, Some(_)) => Err(format!(
                "{field}: a `…SecretRef` is read by the daemon only; use `…Env` with `shiftgate run`"
            )),
            (HeaderSecrets::PolicySecrets(_), Some(_), _) => Err(format!(
                "{field}: the daemon never reads its own environment for a policy; use a `…SecretRef`"
            )),
            (HeaderSecrets::PolicySecrets(None), None, Some(_)) => Err(format!(
                "{field}: policy Secrets are switched off in this daemon (--allow-policy-secrets)"
            )),
            (HeaderSecrets::PolicySecrets(Some(reader)), None, Some(reference)) => {
                read_text(reader.as_ref(), &policy.namespace, reference, source.secret_field)
                    .await
                    .map(|secret| secret.expose().to_owned())
                    .map_err(|e| format!("{field}: {e}"))
            }
            (_, None, None) => Err(format!("{field} has no value")),
        }
    }
}

struct Source<'a> {
    plain: Option<&'a str>,
    env: Option<&'a str>,
    secret: Option<&'a SecretKeyRef>,
    /// Named in a Secret's errors.
    secret_field: &'static str,
}

fn request_event(request: &AnnotationRequest) -> &'static str {
    match request {
        AnnotationRequest::OpenStep(_) => "step",
        AnnotationRequest::Finish(_) => "end",
        AnnotationRequest::Point(_) => "point",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::TransitionKind;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Counted {
        dropped: AtomicU64,
        failed: AtomicU64,
    }

    #[async_trait]
    impl NotifyReport for Counted {
        fn counted(&self, _channel: NotifyChannel, result: NotifyResult) {
            match result {
                NotifyResult::Dropped => self.dropped.fetch_add(1, Ordering::SeqCst),
                NotifyResult::Failed => self.failed.fetch_add(1, Ordering::SeqCst),
                NotifyResult::Delivered => 0,
            };
        }
        async fn failed(&self, _policy: &PolicyRef, _message: &str) {}
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        // Accepts connections (the kernel's backlog) and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "revision": "v2",
            "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
            "steps": [0, 100],
            "analysis": { "metrics": [ { "name": "e", "query": "x", "max": 1 } ] },
            "notify": [ { "webhook": { "url": format!("http://{addr}/"), "timeout": "30s", "retries": 0 } } ]
        }))
        .unwrap();
        let report = Arc::new(Counted::default());
        let notifier = Notifier::start(HeaderSecrets::Environment, report.clone());
        let policy = PolicyRef {
            namespace: "shop".into(),
            name: "checkout".into(),
        };
        let transition = Transition {
            kind: TransitionKind::StepAdvanced,
            at: chrono::DateTime::UNIX_EPOCH,
            revision: "v2".into(),
            phase: crate::policy::Phase::Progressing,
            step: 1,
            canary_weight: 100,
            reason: "StepAdvanced".into(),
            message: "advanced".into(),
        };
        let many = vec![transition; QUEUE_LIMIT + 10];
        // Returns at once although every delivery hangs.
        notifier.announce(&policy, &spec, &RolloutStatus::default(), &many);
        // QUEUE_LIMIT wait or hang, the rest are dropped.
        assert_eq!(report.dropped.load(Ordering::SeqCst), 10);
        assert!(!notifier.wait_idle(Duration::from_millis(50)).await);
        assert_eq!(Notifier::longest(&spec), Duration::from_secs(30));
    }
}
