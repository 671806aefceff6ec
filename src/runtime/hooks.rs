//! The shell's side of `spec.hooks`: who calls the receivers (`HookRunner`: webhooks
//! for real, scripted answers for simulation), and `Hooks`, which runs gates in the
//! tick and informational hooks in the background, keeping their answers for the
//! next tick.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;

use super::webhook::{add_sensitive_header, deliver, Delivery};
use crate::engine::hooks::{HookBody, HookCall, HookOutcome};
use crate::metrics::secrets::{read_text, SecretReader};
use crate::metrics::PolicyRef;
use crate::policy::{HookHeader, HookPhase, HookResult, HookSpec, RolloutSpec};

/// Calls every hook of a spec at one phase, in policy order, and reports each. Never
/// fails as a whole: a hook that cannot be called is a failed hook with its reason.
#[async_trait]
pub trait HookRunner: Send + Sync {
    async fn call(&self, policy: &PolicyRef, spec: &RolloutSpec, call: &HookCall) -> HookOutcome;
}

/// The hooks of `spec` called at `phase`.
pub fn hooks_at(spec: &RolloutSpec, phase: HookPhase) -> impl Iterator<Item = &HookSpec> {
    spec.hooks.iter().filter(move |h| h.on.contains(&phase))
}

/// Why the daemon refuses `spec` before anything runs: a hook header read from an
/// environment variable (the daemon's environment is not the policy's).
pub fn daemon_refusal(spec: &RolloutSpec, namespace: &str) -> Option<String> {
    spec.hooks.iter().enumerate().find_map(|(i, hook)| {
        let h = hook.headers.iter().position(|h| h.value_env.is_some())?;
        Some(format!(
            "spec.hooks[{i}].headers[{h}].valueEnv: the daemon never reads its own environment              for a policy of namespace {namespace}; put the value in a Secret of {namespace}              and use `valueSecretRef: {{name, key}}`"
        ))
    })
}

/// Where header values that are secret come from.
#[derive(Clone)]
pub enum HeaderSecrets {
    /// `shiftgate run`: the user's own environment (`valueEnv`); `valueSecretRef` is
    /// refused.
    Environment,
    /// The daemon: Secrets in the policy's namespace (`valueSecretRef`), when the
    /// operator allows policy Secrets; `valueEnv` is refused, the daemon's environment
    /// is not the policy's.
    PolicySecrets(Option<Arc<dyn SecretReader>>),
}

/// Calls hooks as webhooks (`runtime::webhook::deliver`).
pub struct WebhookHooks {
    http: Result<reqwest::Client, String>,
    secrets: HeaderSecrets,
}

impl WebhookHooks {
    pub fn new(secrets: HeaderSecrets) -> Self {
        // Receivers are often local or in-cluster: no proxy from the environment.
        // Redirects are not followed: a receiver cannot bounce the headers elsewhere.
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for hooks: {e}"));
        WebhookHooks { http, secrets }
    }

    async fn headers(&self, policy: &PolicyRef, hook: &HookSpec) -> Result<HeaderMap, String> {
        let mut headers = HeaderMap::new();
        for header in &hook.headers {
            let value = self.header_value(policy, header).await?;
            add_sensitive_header(&mut headers, &header.name, &value).map_err(|e| e.to_string())?;
        }
        Ok(headers)
    }

    async fn header_value(
        &self,
        policy: &PolicyRef,
        header: &HookHeader,
    ) -> Result<String, String> {
        if let Some(value) = &header.value {
            return Ok(value.clone());
        }
        match (&self.secrets, &header.value_env, &header.value_secret_ref) {
            (HeaderSecrets::Environment, Some(var), _) => std::env::var(var).map_err(|_| {
                format!("header `{}`: environment variable `{var}` is not set", header.name)
            }),
            (HeaderSecrets::Environment, None, Some(_)) => Err(format!(
                "header `{}`: `valueSecretRef` is read by the daemon only; use `valueEnv` with `shiftgate run`",
                header.name
            )),
            (HeaderSecrets::PolicySecrets(_), Some(_), _) => Err(format!(
                "header `{}`: the daemon never reads its own environment for a policy; use `valueSecretRef`",
                header.name
            )),
            (HeaderSecrets::PolicySecrets(None), None, Some(_)) => Err(format!(
                "header `{}`: policy Secrets are switched off in this daemon (--allow-policy-secrets)",
                header.name
            )),
            (HeaderSecrets::PolicySecrets(Some(reader)), None, Some(reference)) => {
                read_text(reader.as_ref(), &policy.namespace, reference, "spec.hooks[].headers[].valueSecretRef")
                    .await
                    .map(|secret| secret.expose().to_owned())
                    .map_err(|e| format!("header `{}`: {e}", header.name))
            }
            (_, None, None) => Err(format!("header `{}` has no value", header.name)),
        }
    }

    async fn call_one(&self, policy: &PolicyRef, hook: &HookSpec, call: &HookCall) -> HookResult {
        let failed = |message: String| HookResult {
            hook: hook.name.clone(),
            phase: call.phase,
            passed: false,
            status: None,
            attempts: 0,
            message,
            step: call.step.saturating_sub(1),
            at: call.at,
        };
        let http = match &self.http {
            Ok(http) => http,
            Err(e) => return failed(e.clone()),
        };
        let headers = match self.headers(policy, hook).await {
            Ok(headers) => headers,
            Err(e) => return failed(e),
        };
        let body = HookBody::new(&policy.namespace, &policy.name, &hook.name, call);
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(e) => return failed(format!("cannot encode the body: {e}")),
        };
        let delivered = deliver(
            http,
            &Delivery {
                url: hook.url.clone(),
                headers,
                body,
                timeout: hook.timeout.std(),
                retries: hook.retries,
                backoff: hook.backoff.std(),
            },
        )
        .await;
        HookResult {
            hook: hook.name.clone(),
            phase: call.phase,
            passed: delivered.passed,
            status: delivered.status,
            attempts: delivered.attempts,
            message: delivered.message,
            step: call.step.saturating_sub(1),
            at: call.at,
        }
    }
}

#[async_trait]
impl HookRunner for WebhookHooks {
    async fn call(&self, policy: &PolicyRef, spec: &RolloutSpec, call: &HookCall) -> HookOutcome {
        let mut results = Vec::new();
        // In order, one at a time: the report's order is the policy's.
        for hook in hooks_at(spec, call.phase) {
            results.push(self.call_one(policy, hook, call).await);
        }
        HookOutcome {
            phase: call.phase,
            results,
        }
    }
}

/// Scripted answers (simulation, tests): every hook answers 2xx unless its phase was
/// set to fail.
#[derive(Debug, Default)]
pub struct ScriptedHooks {
    failing: Mutex<HashMap<HookPhase, String>>,
    calls: Mutex<Vec<HookCall>>,
}

impl ScriptedHooks {
    /// From now on the hooks of `phase` fail with `message`; `None` makes them pass.
    pub fn set_failing(&self, phase: HookPhase, message: Option<String>) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match message {
            Some(m) => failing.insert(phase, m),
            None => failing.remove(&phase),
        };
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<HookCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl HookRunner for ScriptedHooks {
    async fn call(&self, _policy: &PolicyRef, spec: &RolloutSpec, call: &HookCall) -> HookOutcome {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call.clone());
        let failing = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&call.phase)
            .cloned();
        let results = hooks_at(spec, call.phase)
            .map(|hook| HookResult {
                hook: hook.name.clone(),
                phase: call.phase,
                passed: failing.is_none(),
                status: Some(if failing.is_none() { 200 } else { 503 }),
                attempts: 1,
                message: failing
                    .clone()
                    .unwrap_or_else(|| "scripted: 200".to_owned()),
                step: call.step.saturating_sub(1),
                at: call.at,
            })
            .collect();
        HookOutcome {
            phase: call.phase,
            results,
        }
    }
}

/// Runs gates in the tick and informational hooks in the background; keeps what the
/// background ones answered until the policy's next tick takes it. Long-lived: one per
/// process, shared by every tick.
pub struct Hooks {
    runner: Arc<dyn HookRunner>,
    /// Informational hooks are called in the tick instead of the background
    /// (simulation: deterministic, and scripted answers are instant).
    inline: bool,
    finished: Mutex<HashMap<(String, String), Vec<HookOutcome>>>,
    in_flight: AtomicUsize,
    /// Background deliveries being sent: an owed hook asked for again while it is
    /// still being sent is not sent twice.
    sending: Mutex<HashSet<(String, String, HookPhase)>>,
    idle: tokio::sync::Notify,
}

impl Hooks {
    pub fn new(runner: Arc<dyn HookRunner>) -> Arc<Self> {
        Arc::new(Hooks {
            runner,
            inline: false,
            finished: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            sending: Mutex::new(HashSet::new()),
            idle: tokio::sync::Notify::new(),
        })
    }

    /// Like [`Hooks::new`], but informational hooks are called in the tick (for
    /// scripted runners only: a real receiver could delay the tick).
    pub fn inline(runner: Arc<dyn HookRunner>) -> Arc<Self> {
        Arc::new(Hooks {
            runner,
            inline: true,
            finished: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            sending: Mutex::new(HashSet::new()),
            idle: tokio::sync::Notify::new(),
        })
    }

    /// An informational hook: in the background (or inline, see [`Hooks::inline`]);
    /// its answer is taken by the policy's next tick.
    pub async fn dispatch(
        self: &Arc<Self>,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        call: HookCall,
    ) {
        if !self.inline {
            return self.spawn(policy, spec, call);
        }
        let outcome = self.runner.call(policy, spec, &call).await;
        self.finish(policy, outcome);
    }

    fn finish(&self, policy: &PolicyRef, outcome: HookOutcome) {
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((policy.namespace.clone(), policy.name.clone()))
            .or_default()
            .push(outcome);
    }

    /// A gate: called now, in the tick, bounded by the hooks' own timeouts.
    pub async fn gate(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        call: &HookCall,
    ) -> HookOutcome {
        self.runner.call(policy, spec, call).await
    }

    /// An informational hook: started in the background; nothing waits for it.
    fn spawn(self: &Arc<Self>, policy: &PolicyRef, spec: &RolloutSpec, call: HookCall) {
        let key = (policy.namespace.clone(), policy.name.clone(), call.phase);
        let fresh = self
            .sending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        if !fresh {
            return;
        }
        let hooks = Arc::clone(self);
        let (policy, spec) = (policy.clone(), spec.clone());
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let outcome = hooks.runner.call(&policy, &spec, &call).await;
            for result in outcome.results.iter().filter(|r| !r.passed) {
                tracing::warn!(namespace = %policy.namespace, name = %policy.name, hook = %result.hook, phase = %result.phase, detail = %result.message, "hook failed");
            }
            hooks.finish(&policy, outcome);
            hooks
                .sending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            hooks.in_flight.fetch_sub(1, Ordering::SeqCst);
            hooks.idle.notify_waiters();
        });
    }

    /// What the policy's background hooks answered since the last call.
    pub fn take_finished(&self, policy: &PolicyRef) -> Vec<HookOutcome> {
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(policy.namespace.clone(), policy.name.clone()))
            .unwrap_or_default()
    }

    /// Waits until no background hook runs, at most `limit`. Returns whether none runs.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// How long the background hooks of `spec` may take at most (every attempt timing
    /// out, every backoff waited): what `run` waits before it exits.
    pub fn longest(spec: &RolloutSpec) -> Duration {
        spec.hooks
            .iter()
            .filter(|h| h.on.iter().any(|p| !p.is_gate()))
            .map(|h| {
                let attempts = h.retries.saturating_add(1);
                let calls = h.timeout.std().saturating_mul(attempts);
                let pauses = (1..attempts)
                    .map(|r| super::webhook::backoff_before(h.backoff.std(), r))
                    .fold(Duration::ZERO, Duration::saturating_add);
                calls.saturating_add(pauses)
            })
            .fold(Duration::ZERO, Duration::saturating_add)
    }
}

/// The process-wide webhook caller for reconcilers given no `Hooks` of their own: real
/// webhooks that read neither the environment nor Secrets (the safe default; `run`
/// and the daemon pass their own).
pub fn default_hooks() -> Arc<Hooks> {
    static DEFAULT: std::sync::OnceLock<Arc<Hooks>> = std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            Hooks::new(Arc::new(WebhookHooks::new(HeaderSecrets::PolicySecrets(
                None,
            ))))
        })
        .clone()
}

/// One line per hook answer, as `status` and `run` show them:
/// `hook release-manager (confirmPromotion) FAILED: POST …: 503 (after 1 attempt)`.
pub fn describe_hook(result: &HookResult) -> String {
    format!(
        "hook {} ({}) {}: {}",
        result.hook,
        result.phase,
        if result.passed { "passed" } else { "FAILED" },
        result.message
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::SecretKeyRef;

    fn header(env: Option<&str>, secret: bool) -> HookHeader {
        HookHeader {
            name: "authorization".into(),
            value: None,
            value_env: env.map(str::to_owned),
            value_secret_ref: secret.then(|| SecretKeyRef {
                name: "token".into(),
                key: "t".into(),
            }),
        }
    }

    fn policy() -> PolicyRef {
        PolicyRef {
            namespace: "shop".into(),
            name: "checkout".into(),
        }
    }

    #[tokio::test]
    async fn each_process_reads_header_values_only_from_its_own_sources() {
        let run = WebhookHooks::new(HeaderSecrets::Environment);
        let error = run
            .header_value(&policy(), &header(None, true))
            .await
            .unwrap_err();
        assert!(error.contains("daemon only"), "{error}");
        let daemon = WebhookHooks::new(HeaderSecrets::PolicySecrets(None));
        let error = daemon
            .header_value(&policy(), &header(Some("PATH"), false))
            .await
            .unwrap_err();
        assert!(error.contains("never reads its own environment"), "{error}");
        let error = daemon
            .header_value(&policy(), &header(None, true))
            .await
            .unwrap_err();
        assert!(error.contains("switched off"), "{error}");
    }

    #[test]
    fn the_daemon_refuses_a_policy_whose_header_comes_from_its_environment() {
        let mut spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "revision": "v2",
            "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
            "steps": [0, 100],
            "analysis": { "metrics": [ { "name": "e", "query": "x", "max": 1 } ] },
            "hooks": [ { "name": "h", "url": "http://h/", "on": ["step"] } ]
        }))
        .unwrap();
        assert_eq!(daemon_refusal(&spec, "shop"), None);
        spec.hooks[0].headers.push(header(Some("TOKEN"), false));
        let refusal = daemon_refusal(&spec, "shop").unwrap();
        assert!(
            refusal.starts_with("spec.hooks[0].headers[0].valueEnv"),
            "{refusal}"
        );
    }
}
