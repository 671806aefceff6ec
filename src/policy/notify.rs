//! `spec.notify` (webhooks told about a rollout's transitions: generic JSON, Slack,
//! Microsoft Teams) and `spec.grafana.annotations` (annotations posted to Grafana's HTTP
//! API), with their validation. What is sent is in `runtime::notify_payload`; the
//! delivery in `runtime::notify`. Documented in docs/notifications.md.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::diagnostic::{index, Issue};
use super::duration::Duration;
use super::hooks::HookHeader;
use super::names::http_url;
use super::types::SecretKeyRef;

/// Most retries of one notification.
pub const MAX_NOTIFY_RETRIES: u32 = 10;

/// One notification target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifySpec {
    /// Call this webhook on the rollout's transitions.
    pub webhook: WebhookSpec,
}

/// A webhook told about transitions: a POST per event, never awaited by the rollout.
/// Exactly one of `url`, `urlEnv`, `urlSecretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// The http(s) URL to call, written in the policy (not secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `shiftgate run` only: the URL is the value of this environment variable of the
    /// user's process (a Slack or Teams webhook URL is itself a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// Daemon only: the URL is a key of a Secret in the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// The body's shape: `json` (shiftgate's own, versioned), `slack` (`text` and
    /// `blocks`, for Slack incoming webhooks and compatible chats) or `teams` (a
    /// Microsoft Teams MessageCard).
    #[serde(default)]
    pub format: NotifyFormat,
    /// The events sent; empty (the default): every event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<NotifyEvent>,
    /// Per attempt.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Duration,
    /// Further attempts after a failed one (no answer, or not 2xx).
    #[serde(default = "default_notify_retries")]
    pub retries: u32,
    /// Pause before the first retry; doubled for each further one.
    #[serde(default = "default_notify_backoff")]
    pub backoff: Duration,
    /// Request headers, as in `spec.hooks[].headers`: secret values come from a Secret
    /// (daemon) or an environment variable (`shiftgate run`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HookHeader>,
}

fn default_notify_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_notify_retries() -> u32 {
    2
}
fn default_notify_backoff() -> Duration {
    Duration::from_secs(1)
}

/// The shape of a notification's body.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NotifyFormat {
    /// shiftgate's JSON document (`apiVersion: shiftgate.dev/v1`, `kind: RolloutNotification`).
    #[default]
    Json,
    /// Slack incoming-webhook payload: `text` plus `blocks`.
    Slack,
    /// Microsoft Teams incoming-webhook MessageCard.
    Teams,
}

/// What a notification is about.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum NotifyEvent {
    /// A new revision's rollout started.
    Started,
    /// A step passed its analysis and the next weight was written.
    StepAdvanced,
    /// Paused (by an operator, at a manual gate, or after too many inconclusive
    /// evaluations with `onInconclusive: pause`).
    Paused,
    /// An operator resumed a paused rollout.
    Resumed,
    /// Frozen at its weight after a failure (`onFailure: hold`).
    Held,
    /// Every request is back on stable after a failure; carries the cause and numbers.
    RolledBack,
    /// The canary serves every request.
    Promoted,
    /// An operator aborted the rollout.
    Aborted,
    /// An operator undid a promotion: every request is back on the previous release.
    Undone,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 9] = [
        NotifyEvent::Started,
        NotifyEvent::StepAdvanced,
        NotifyEvent::Paused,
        NotifyEvent::Resumed,
        NotifyEvent::Held,
        NotifyEvent::RolledBack,
        NotifyEvent::Promoted,
        NotifyEvent::Aborted,
        NotifyEvent::Undone,
    ];

    /// The name used in the policy and in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Started => "started",
            NotifyEvent::StepAdvanced => "stepAdvanced",
            NotifyEvent::Paused => "paused",
            NotifyEvent::Resumed => "resumed",
            NotifyEvent::Held => "held",
            NotifyEvent::RolledBack => "rolledBack",
            NotifyEvent::Promoted => "promoted",
            NotifyEvent::Aborted => "aborted",
            NotifyEvent::Undone => "undone",
        }
    }

    /// Something on-call must look at.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            NotifyEvent::Held | NotifyEvent::RolledBack | NotifyEvent::Aborted
        )
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl WebhookSpec {
    /// Whether this target is told about `event`.
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.on.is_empty() || self.on.contains(&event)
    }
}

/// `spec.grafana.annotations`: post an annotation to Grafana's HTTP API
/// (`POST /api/annotations`) on each step, promotion and rollback. The token is a
/// Grafana service-account token; exactly one of `tokenSecretRef`, `tokenEnv`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrafanaAnnotations {
    /// Daemon only: the token is a key of a Secret in the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// `shiftgate run` only: the token is the value of this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Per request.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Duration,
    /// Further attempts after a failed request.
    #[serde(default = "default_notify_retries")]
    pub retries: u32,
}

/// Issues of the readable notify targets (`None`: an item that could not be read).
pub(super) fn notify_issues(list: &[Option<&NotifySpec>], issues: &mut Vec<Issue>) {
    for (i, notify) in list.iter().enumerate() {
        let Some(notify) = notify else { continue };
        let path = format!("{}.webhook", index("spec.notify", i));
        let hook = &notify.webhook;
        let sources = [
            hook.url.is_some(),
            hook.url_env.is_some(),
            hook.url_secret_ref.is_some(),
        ];
        match sources.iter().filter(|set| **set).count() {
            1 => {}
            0 => issues.push(Issue::error(&path, "the webhook has no URL").with_hint(
                "set one of `url`, `urlEnv` (shiftgate run) or `urlSecretRef` (daemon)",
            )),
            _ => issues.push(
                Issue::error(
                    &path,
                    "more than one of `url`, `urlEnv`, `urlSecretRef` is set",
                )
                .with_hint("keep one of them"),
            ),
        }
        if let Some(url) = &hook.url {
            http_url(url, &format!("{path}.url"), issues);
        }
        if hook.timeout.std().is_zero() {
            issues.push(
                Issue::error(
                    format!("{path}.timeout"),
                    "timeout is 0s: every call would fail",
                )
                .with_hint("write e.g. `5s`"),
            );
        }
        if hook.retries > MAX_NOTIFY_RETRIES {
            issues.push(
                Issue::error(
                    format!("{path}.retries"),
                    format!("{} retries is more than {MAX_NOTIFY_RETRIES}", hook.retries),
                )
                .with_hint("a receiver that needs more is down"),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for event in &hook.on {
            if !seen.insert(*event) {
                issues.push(
                    Issue::error(format!("{path}.on"), format!("`{event}` is listed twice"))
                        .with_hint("list each event once"),
                );
            }
        }
        for (h, header) in hook.headers.iter().enumerate() {
            super::hook_rules::header_rule(header, &index(&format!("{path}.headers"), h), issues);
        }
    }
}

/// Issues of `spec.grafana.annotations`.
pub(super) fn annotation_issues(annotations: &GrafanaAnnotations, issues: &mut Vec<Issue>) {
    let path = "spec.grafana.annotations";
    match (&annotations.token_secret_ref, &annotations.token_env) {
        (Some(_), None) | (None, Some(_)) => {}
        (None, None) => issues.push(
            Issue::error(path, "annotations need a Grafana token").with_hint(
                "set `tokenSecretRef: {name, key}` (daemon) or `tokenEnv` (shiftgate run)",
            ),
        ),
        (Some(_), Some(_)) => issues.push(
            Issue::error(path, "both `tokenSecretRef` and `tokenEnv` are set")
                .with_hint("keep one of them"),
        ),
    }
    if annotations.timeout.std().is_zero() {
        issues.push(
            Issue::error(
                format!("{path}.timeout"),
                "timeout is 0s: every call would fail",
            )
            .with_hint("write e.g. `5s`"),
        );
    }
    if annotations.retries > MAX_NOTIFY_RETRIES {
        issues.push(Issue::error(
            format!("{path}.retries"),
            format!(
                "{} retries is more than {MAX_NOTIFY_RETRIES}",
                annotations.retries
            ),
        ));
    }
}

/// Why the daemon refuses `spec` before anything runs: a notification URL, header or
/// Grafana token read from an environment variable (the daemon's environment is not
/// the policy's).
pub fn daemon_refusal(spec: &super::RolloutSpec, namespace: &str) -> Option<String> {
    let advice = format!(
        "the daemon never reads its own environment for a policy of namespace {namespace}; \
         put the value in a Secret of {namespace} and refer to it with a `…SecretRef: {{name, key}}`"
    );
    for (i, notify) in spec.notify.iter().enumerate() {
        if notify.webhook.url_env.is_some() {
            return Some(format!("spec.notify[{i}].webhook.urlEnv: {advice}"));
        }
        if let Some(h) = notify
            .webhook
            .headers
            .iter()
            .position(|h| h.value_env.is_some())
        {
            return Some(format!(
                "spec.notify[{i}].webhook.headers[{h}].valueEnv: {advice}"
            ));
        }
    }
    let annotations = spec.grafana.as_ref()?.annotations.as_ref()?;
    annotations
        .token_env
        .is_some()
        .then(|| format!("spec.grafana.annotations.tokenEnv: {advice}"))
}
