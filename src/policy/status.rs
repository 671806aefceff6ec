//! The rollout state as it is persisted: in the file store for local rollouts, in the
//! RolloutPolicy's status subresource in a cluster. The engine reads and returns it;
//! it is plain data with no behaviour beyond defaults.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase constant.
    pub reason: String,
    pub message: String,
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
    /// Canary weight last confirmed by the router.
    #[serde(default)]
    pub canary_weight: u8,
    /// Whether the test route is installed, as last confirmed by the router.
    #[serde(default)]
    pub test_route: bool,
    /// CamelCase reason of the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable account of the last transition, with numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
