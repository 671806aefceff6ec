//! `spec.hooks` (webhooks at the rollout's phases) and the JSONPath expectations that
//! HTTP checks share with them. The body a hook receives is in `engine::hooks`; the
//! delivery in `runtime::webhook`. Documented in docs/hooks.md.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::types::SecretKeyRef;

/// When a hook is called.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum HookPhase {
    /// Before the first weight is written; a failure follows `onFailure`.
    PreRollout,
    /// After a step was judged, before the next weight is written; a failure follows
    /// `onFailure`.
    Step,
    /// Before the final promotion write; until it answers 2xx the rollout holds at its
    /// last step (an operator's `promote` skips it).
    ConfirmPromotion,
    /// After the promotion write landed. Informational.
    PostRollout,
    /// After a rollback (or abort) write landed, in the background. Informational.
    Rollback,
}

impl HookPhase {
    pub const ALL: [HookPhase; 5] = [
        HookPhase::PreRollout,
        HookPhase::Step,
        HookPhase::ConfirmPromotion,
        HookPhase::PostRollout,
        HookPhase::Rollback,
    ];

    /// The name used in the policy and in the hook body.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::PreRollout => "preRollout",
            HookPhase::Step => "step",
            HookPhase::ConfirmPromotion => "confirmPromotion",
            HookPhase::PostRollout => "postRollout",
            HookPhase::Rollback => "rollback",
        }
    }

    /// Gates decide whether the rollout moves on; the others only inform, and run after
    /// the route write, in the background, so they never delay anything.
    pub fn is_gate(self) -> bool {
        matches!(
            self,
            HookPhase::PreRollout | HookPhase::Step | HookPhase::ConfirmPromotion
        )
    }
}

impl std::fmt::Display for HookPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One webhook: a JSON POST to `url` at each phase in `on`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookSpec {
    /// Unique among the hooks; shown in status, events and the body.
    pub name: String,
    /// The phases it is called at.
    pub on: Vec<HookPhase>,
    /// Where the JSON body is POSTed (http or https).
    pub url: String,
    /// Per attempt.
    #[serde(default = "default_hook_timeout")]
    pub timeout: Duration,
    /// Further attempts after a failed one (no answer, or not 2xx).
    #[serde(default = "default_hook_retries")]
    pub retries: u32,
    /// Pause before the first retry; doubled for each further one.
    #[serde(default = "default_hook_backoff")]
    pub backoff: Duration,
    /// Request headers; secret values come from a Secret (daemon) or an environment
    /// variable (`shiftgate run`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HookHeader>,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_hook_retries() -> u32 {
    2
}
fn default_hook_backoff() -> Duration {
    Duration::from_secs(1)
}

/// One request header. Exactly one of `value`, `valueEnv`, `valueSecretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookHeader {
    /// The header's name, e.g. `authorization`.
    pub name: String,
    /// A value that is not secret, written in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `shiftgate run` only: the value of this environment variable of the user's process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_env: Option<String>,
    /// Daemon only: a key of a Secret in the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_secret_ref: Option<SecretKeyRef>,
}

/// An expectation on a JSON response body: the JSONPath `path` (RFC 9535) selects at
/// least one value, and with `equals` the first selected value equals it: a string
/// exactly, any other value by its JSON text (`"200"` matches `200`, `"true"` matches
/// `true`). A string keeps the CRD schema structural.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonExpectation {
    /// A JSONPath such as `$.status` or `$.checks[0].ok`.
    pub path: String,
    /// The value the path must select. Without it, the path must only select something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
}

/// What one hook answered at one phase, kept in the status (the last result of each
/// hook and phase of this revision).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookResult {
    /// The hook's `name`.
    pub hook: String,
    /// The phase it was called at.
    pub phase: HookPhase,
    /// Answered 2xx.
    pub passed: bool,
    /// The last HTTP status seen, if any answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Attempts made (1 + retries used).
    pub attempts: u32,
    /// What was seen, e.g. `POST http://hooks/confirm: 503 (after 3 attempts)`; never a
    /// header value.
    pub message: String,
    /// The step (index) the call was about.
    pub step: u32,
    /// When the engine asked for the call.
    pub at: super::status::Timestamp,
}
