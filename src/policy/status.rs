//! The rollout state as it is persisted: in the file store for local rollouts, in the
//! RolloutPolicy's status subresource in a cluster. The engine reads and returns it;
//! it is plain data with no behaviour beyond defaults.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::constant::Constant;

/// Wall-clock instant, always UTC. The engine never reads a clock: every instant comes
/// from an observation.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Where a rollout is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum Phase {
    /// No rollout has started for this revision yet.
    #[default]
    Pending,
    /// Waiting for a deployment window to open.
    Waiting,
    /// Running the pre-traffic checks at weight 0.
    Checking,
    /// Walking the steps.
    Progressing,
    /// Paused by an operator, a manual gate, drift, or an inconclusive analysis.
    Paused,
    /// Every request is on the canary; the rollout is done.
    Promoted,
    /// Putting every request back on stable.
    RollingBack,
    /// Every request is back on stable after a failed analysis.
    RolledBack,
    /// Frozen at the current weight after a failed analysis (`onFailure: hold`).
    Held,
    /// Stopped by an operator; every request is back on stable.
    Aborted,
}

impl Phase {
    /// A terminal phase ends the rollout of this revision.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Promoted | Phase::RolledBack | Phase::Aborted | Phase::Held
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Waiting => "Waiting",
            Phase::Checking => "Checking",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Promoted => "Promoted",
            Phase::RollingBack => "RollingBack",
            Phase::RolledBack => "RolledBack",
            Phase::Held => "Held",
            Phase::Aborted => "Aborted",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes-style condition (`Accepted`, `Progressing`, `Healthy`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Accepted`, `Progressing` or `Healthy`.
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub type_: Constant,
    /// `True`, `False` or `Unknown`.
    #[schemars(with = "String")]
    pub status: Constant,
    /// CamelCase constant.
    #[schemars(with = "String")]
    pub reason: Constant,
    /// Human-readable account of the condition, with numbers.
    pub message: String,
    /// `metadata.generation` of the spec the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Moves only when `status` flips.
    pub last_transition_time: Timestamp,
}

/// The persisted state of one policy's rollout. The engine owns its meaning; stores
/// treat it as an opaque document.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision this state belongs to; a different `spec.revision` starts anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default)]
    pub phase: Phase,
    /// Index of the current step in `spec.steps`.
    #[serde(default)]
    pub step: u32,
    /// The current step counted from 1, of the number of steps (`2/4`), as the CLI,
    /// the messages and the Events count it: the Step column of `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// Canary weight last confirmed by the router.
    #[serde(default)]
    pub canary_weight: u8,
    /// Whether the test route is installed, as last confirmed by the router.
    #[serde(default)]
    pub test_route: bool,
    /// CamelCase reason of the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub reason: Option<Constant>,
    /// Human-readable account of the last transition, with numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Kubernetes-style conditions: `Accepted`, `Progressing`, `Healthy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The write in flight, persisted before it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RouteTarget>,
    /// A step's route write stored as already confirmed (the weights above), then sent:
    /// the route it replaces, so a tick that still finds that route live sends the write
    /// again instead of calling it drift. Cleared by the next status write that follows
    /// a look at the new route (docs/architecture.md, "What one reconcile costs").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed_write: Option<UnconfirmedWrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    /// The phase `resume` returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_phase: Option<Phase>,
    /// When the rollout of this revision started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// With colours (`router.*.colors`): the colour this revision's stable is, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_color: Option<String>,
    /// … the colour it is deployed into, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_color: Option<String>,
    /// … and the colour that serves (most) users now, as last confirmed by the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_color: Option<String>,
    /// When the router confirmed the promotion (every request on the canary): from
    /// then on, while the previous stable still runs, `undo` flips back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Timestamp>,
    /// When the router confirmed the current step's weight: the step's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Timestamp>,
    /// When the analysis (or the checks) last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation_at: Option<Timestamp>,
    /// Whether the pre-traffic checks passed for this revision.
    #[serde(default)]
    pub checks_passed: bool,
    /// Failed evaluations since the last Pass.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Inconclusive evaluations since the last Pass.
    #[serde(default)]
    pub consecutive_inconclusive: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<AnalysisSummary>,
    /// The sequential judges' evidence for this revision, saved in the same write as
    /// the evaluation that counted it, so a restart neither loses nor repeats any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceStatus>,
    /// The pre-traffic checks' last results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_checks: Vec<CheckResult>,
    /// The last answer of each hook at each phase for this revision (docs/hooks.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_hooks: Vec<super::hooks::HookResult>,
    /// `postRollout`/`rollback` hooks owed for this revision: stored before they are
    /// sent, cleared once they answered (2xx, or every retry spent); a restart sends
    /// them again, so each is delivered at least once (docs/hooks.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_hooks: Vec<crate::policy::HookPhase>,
    /// The last transitions, newest last, at most `HISTORY_LIMIT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Id of the last operator command handled (applied or refused): the number of a
    /// local command file, or the annotation `shiftgate.dev/command-id`. Saved with the
    /// state the command led to, so a restart neither loses nor repeats a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command_id: Option<String>,
    /// The Deployments' side of the rollout (`spec.workloads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Box<super::workloads::WorkloadsStatus>>,
}

impl RolloutStatus {
    /// The managed route as last confirmed by the router.
    pub fn confirmed_route(&self) -> crate::router::ManagedRoute {
        crate::router::ManagedRoute {
            canary_weight: self.canary_weight,
            test_route: self.test_route,
        }
    }

    /// Whether nothing more will happen for this revision without a new spec: a terminal
    /// phase with no write in flight.
    pub fn is_settled(&self) -> bool {
        self.phase.is_terminal() && self.target.is_none()
    }
}

/// The route an unconfirmed step write replaces (`status.unconfirmedWrite`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnconfirmedWrite {
    /// The canary weight before the write.
    pub previous_canary_weight: u8,
    /// Whether the test route was installed before the write.
    pub previous_test_route: bool,
}

impl UnconfirmedWrite {
    pub fn previous_route(&self) -> crate::router::ManagedRoute {
        crate::router::ManagedRoute {
            canary_weight: self.previous_canary_weight,
            test_route: self.previous_test_route,
        }
    }
}

/// Why a write was asked for; decides what its confirmation means.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TargetPurpose {
    /// The weight of the current step: its confirmation starts the step's clock.
    Step,
    /// Writing the confirmed weights back after drift.
    Reassert,
    /// Every request back on stable after a failed analysis.
    Rollback,
    /// Every request back on stable after an operator's abort.
    Abort,
    /// Every request on the canary, test route removed.
    Promote,
    /// Every request back on the previous stable after a promotion (`undo`).
    Undo,
}

/// A write shiftgate asked for and the router has not confirmed yet. Persisted before
/// the write, so a restart adopts a write that landed instead of calling it drift.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTarget {
    /// The canary weight being written.
    pub canary_weight: u8,
    /// Whether the write installs the test route.
    pub test_route: bool,
    pub purpose: TargetPurpose,
}

impl RouteTarget {
    pub fn route(&self) -> crate::router::ManagedRoute {
        crate::router::ManagedRoute {
            canary_weight: self.canary_weight,
            test_route: self.test_route,
        }
    }
}

/// Why a rollout is paused; decides what `resume` and `promote` do.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PauseReason {
    /// An operator said `pause`; `resume` continues.
    Operator,
    /// A `pause: true` step passed its analysis and waits for `promote`.
    ManualGate,
    /// Too many inconclusive evaluations with `onInconclusive: pause`.
    Inconclusive,
    /// Someone else changed the managed weights (`onDrift: pause`); `resume` writes them back.
    Drift,
}

/// The three verdicts, as persisted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum VerdictKind {
    Pass,
    Fail,
    Inconclusive,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Pass => "Pass",
            VerdictKind::Fail => "Fail",
            VerdictKind::Inconclusive => "Inconclusive",
        }
    }
}

/// One metric of the last evaluation. Values are absent when nothing finite was measured.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    /// The metric's name in `spec.analysis.metrics`.
    pub name: String,
    /// The canary's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<f64>,
    /// Stable's value (compared metrics only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    pub verdict: VerdictKind,
    /// CamelCase constant.
    #[schemars(with = "String")]
    pub reason: Constant,
    /// The value against its limit, with numbers.
    pub message: String,
    /// A sequential comparison's evidence as a share of what rolls back: 0.48 is "48 of
    /// 100 needed", 1 rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f64>,
}

/// The last evaluation of the analysis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSummary {
    /// When the evaluation ran.
    pub at: Timestamp,
    pub verdict: VerdictKind,
    /// CamelCase constant.
    #[schemars(with = "String")]
    pub reason: Constant,
    /// The evaluation in one line, with numbers.
    pub message: String,
    /// Canary requests in the evaluation's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_requests: Option<f64>,
    /// Each metric's value and verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSummary>,
}

/// What the sequential judges have counted for this revision. Carries across steps; a
/// new revision starts without it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceStatus {
    /// Counts up to this instant are in the evidence; the next evaluation counts from
    /// here to its own instant.
    pub counted_until: Timestamp,
    /// Each sequential metric's evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricEvidence>,
}

/// One sequential metric's evidence: O(1) (a few dozen numbers).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricEvidence {
    /// The metric's name in `spec.analysis.metrics`.
    pub name: String,
    #[schemars(schema_with = "judge_state_schema")]
    pub state: JudgeState,
}

/// The state of one sequential judge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum JudgeState {
    ErrorRate(crate::analysis::sequential::RatioEvidence),
    Latency(crate::analysis::sequential::LatencyEvidence),
    /// `judge: mannWhitney`: the last per-interval values (at most
    /// `analysis::mann_whitney_run::MAX_INTERVALS` per side).
    MannWhitney(crate::analysis::mann_whitney_run::MannWhitneySeries),
}

impl JudgeState {
    /// Canary requests the comparison has counted so far.
    pub fn canary_requests(&self) -> f64 {
        match self {
            JudgeState::ErrorRate(e) => e.canary_trials,
            JudgeState::Latency(l) => l
                .edges
                .first()
                .map_or(0.0, |edge| edge.evidence.canary_trials),
            // It keeps values per interval, not request counts.
            JudgeState::MannWhitney(_) => 0.0,
        }
    }
}

/// The judge's numbers are the engine's business: kept as they are, not described.
fn judge_state_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The judge's evidence (`errorRate`, `latency` or `mannWhitney`), as the engine keeps it.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The result of one pre-traffic check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The check's `name`, or `checks[INDEX]` when it has none.
    pub name: String,
    /// Whether the check passed.
    pub passed: bool,
    /// What was seen, e.g. `GET http://gateway/ready: 503, expected 200`.
    pub message: String,
}

/// One transition of the rollout, kept in a bounded history (newest last).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When the transition happened.
    pub at: Timestamp,
    pub phase: Phase,
    /// Index of the step in `spec.steps` at the transition.
    pub step: u32,
    /// The canary weight at the transition.
    pub canary_weight: u8,
    /// CamelCase constant.
    #[schemars(with = "String")]
    pub reason: Constant,
    /// Human-readable account of the transition, with numbers.
    #[schemars(with = "String")]
    pub message: Box<str>,
}

/// How many transitions the status keeps.
pub const HISTORY_LIMIT: usize = 20;
