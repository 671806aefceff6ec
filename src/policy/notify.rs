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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(notify: serde_json::Value, grafana: serde_json::Value) -> super::super::RolloutSpec {
        serde_json::from_value(serde_json::json!({
            "revision": "v2",
            "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
            "steps": [0, 100],
            "analysis": { "metrics": [ { "name": "e", "query": "x", "max": 1 } ] },
            "notify": notify,
            "grafana": grafana
        }))
        .unwrap()
    }

    fn paths(spec: &super::super::RolloutSpec) -> Vec<String> {
        super::super::validate::validate_spec(spec)
            .into_iter()
            .filter(|issue| issue.severity == super::super::diagnostic::Severity::Error)
            .map(|issue| issue.path)
            .collect()
    }

    #[test]
    fn the_old_form_stays_valid_and_every_event_is_wanted() {
        let spec = spec(
            serde_json::json!([{ "webhook": { "url": "https://hooks.example/x" } }]),
            serde_json::json!({ "url": "https://grafana.example" }),
        );
        assert!(paths(&spec).is_empty(), "{:?}", paths(&spec));
        let webhook = &spec.notify[0].webhook;
        assert_eq!(webhook.format, NotifyFormat::Json);
        assert!(NotifyEvent::ALL.iter().all(|e| webhook.wants(*e)));
    }

    #[test]
    fn a_target_needs_exactly_one_url_source_and_annotations_one_token() {
        let spec = spec(
            serde_json::json!([
                { "webhook": { "format": "slack" } },
                { "webhook": { "url": "https://a.example", "urlEnv": "URL", "on": ["promoted", "promoted"] } }
            ]),
            serde_json::json!({ "url": "https://grafana.example", "annotations": {} }),
        );
        let paths = paths(&spec);
        for expected in [
            "spec.notify[0].webhook",
            "spec.notify[1].webhook",
            "spec.notify[1].webhook.on",
            "spec.grafana.annotations",
        ] {
            assert!(paths.iter().any(|p| p == expected), "{expected}: {paths:?}");
        }
    }

    #[test]
    fn the_daemon_refuses_every_value_from_its_own_environment() {
        let from_env = spec(
            serde_json::json!([{ "webhook": { "urlEnv": "SLACK" } }]),
            serde_json::Value::Null,
        );
        let refusal = daemon_refusal(&from_env, "shop").unwrap();
        assert!(
            refusal.starts_with("spec.notify[0].webhook.urlEnv"),
            "{refusal}"
        );
        let token = spec(
            serde_json::json!([]),
            serde_json::json!({ "url": "https://g.example", "annotations": { "tokenEnv": "T" } }),
        );
        assert!(daemon_refusal(&token, "shop")
            .unwrap()
            .starts_with("spec.grafana.annotations.tokenEnv"));
        let from_secret = spec(
            serde_json::json!([{ "webhook": { "urlSecretRef": { "name": "s", "key": "url" } } }]),
            serde_json::Value::Null,
        );
        assert_eq!(daemon_refusal(&from_secret, "shop"), None);
    }
}
