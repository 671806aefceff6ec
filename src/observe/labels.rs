//! The closed sets of label values the daemon's metrics use: every value a label can
//! take is a variant here, so no label can grow without bound.

use crate::policy::Phase;

/// Every phase, so the phase gauge of a policy has one series per phase (1 for the
/// current one, 0 for the others) and a dashboard can draw a state timeline.
pub const ALL_PHASES: [Phase; 10] = [
    Phase::Pending,
    Phase::Waiting,
    Phase::Checking,
    Phase::Progressing,
    Phase::Paused,
    Phase::Promoted,
    Phase::RollingBack,
    Phase::RolledBack,
    Phase::Held,
    Phase::Aborted,
];

/// Every rollout result, verdict and write result: their series are created at 0.
pub const ALL_RESULTS: [RolloutResult; 4] = [
    RolloutResult::Promoted,
    RolloutResult::RolledBack,
    RolloutResult::Aborted,
    RolloutResult::Held,
];
pub const ALL_VERDICTS: [VerdictKind; 3] = [
    VerdictKind::Pass,
    VerdictKind::Fail,
    VerdictKind::Inconclusive,
];
pub const ALL_WRITE_RESULTS: [WriteResult; 4] = [
    WriteResult::Ok,
    WriteResult::Conflict,
    WriteResult::Invalid,
    WriteResult::Unavailable,
];

/// How a rollout ended (`shiftgate_rollouts_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RolloutResult {
    Promoted,
    RolledBack,
    Aborted,
    Held,
}

impl RolloutResult {
    /// The result a transition ends a rollout with; `None` for one that does not end it.
    pub fn of(kind: crate::engine::TransitionKind) -> Option<Self> {
        use crate::engine::TransitionKind;
        match kind {
            TransitionKind::Promoted => Some(RolloutResult::Promoted),
            TransitionKind::RolledBack => Some(RolloutResult::RolledBack),
            TransitionKind::Aborted => Some(RolloutResult::Aborted),
            TransitionKind::Held => Some(RolloutResult::Held),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutResult::Promoted => "promoted",
            RolloutResult::RolledBack => "rolled_back",
            RolloutResult::Aborted => "aborted",
            RolloutResult::Held => "held",
        }
    }

    /// The result a terminal phase stands for; `None` for a phase that is not an end.
    pub fn from_phase(phase: Phase) -> Option<Self> {
        match phase {
            Phase::Promoted => Some(RolloutResult::Promoted),
            Phase::RolledBack => Some(RolloutResult::RolledBack),
            Phase::Aborted => Some(RolloutResult::Aborted),
            Phase::Held => Some(RolloutResult::Held),
            _ => None,
        }
    }
}

/// The verdict of one analysis evaluation (`shiftgate_analysis_evaluations_total{verdict}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerdictKind {
    Pass,
    Fail,
    Inconclusive,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Pass => "pass",
            VerdictKind::Fail => "fail",
            VerdictKind::Inconclusive => "inconclusive",
        }
    }
}

/// The outcome of one router write (`shiftgate_router_writes_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteResult {
    Ok,
    Conflict,
    Invalid,
    Unavailable,
}

impl WriteResult {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteResult::Ok => "ok",
            WriteResult::Conflict => "conflict",
            WriteResult::Invalid => "invalid",
            WriteResult::Unavailable => "unavailable",
        }
    }

    pub fn from_router(
        result: &Result<crate::router::Version, crate::router::RouterError>,
    ) -> Self {
        use crate::router::RouterError;
        match result {
            Ok(_) => WriteResult::Ok,
            Err(RouterError::Conflict { .. }) => WriteResult::Conflict,
            Err(RouterError::Invalid(_)) => WriteResult::Invalid,
            Err(RouterError::Unavailable { .. }) => WriteResult::Unavailable,
        }
    }
}

/// Which release a metric value was measured for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Canary,
    Stable,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Canary => "canary",
            Target::Stable => "stable",
        }
    }
}

/// Which criterion of a metric a threshold is (`…_threshold{bound}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bound {
    /// The canary value must be at least this.
    Min,
    /// The canary value must be at most this.
    Max,
    /// The canary may exceed stable by at most this (absolute).
    MaxIncrease,
    /// The canary may exceed stable by at most this factor.
    MaxRatio,
}

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Min => "min",
            Bound::Max => "max",
            Bound::MaxIncrease => "max_increase",
            Bound::MaxRatio => "max_ratio",
        }
    }
}

/// Where a notification goes (`shiftgate_notifications_total{channel}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyChannel {
    /// A `spec.notify` webhook (JSON, Slack or Teams).
    Webhook,
    /// A Grafana annotation request (`spec.grafana.annotations`).
    Grafana,
}

/// What came of a notification (`shiftgate_notifications_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyResult {
    Delivered,
    /// Every attempt failed (no answer, or not 2xx), or the secret could not be read.
    Failed,
    /// The queue was full: never sent.
    Dropped,
}

pub const ALL_NOTIFY_CHANNELS: [NotifyChannel; 2] =
    [NotifyChannel::Webhook, NotifyChannel::Grafana];
pub const ALL_NOTIFY_RESULTS: [NotifyResult; 3] = [
    NotifyResult::Delivered,
    NotifyResult::Failed,
    NotifyResult::Dropped,
];

impl NotifyChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyChannel::Webhook => "webhook",
            NotifyChannel::Grafana => "grafana",
        }
    }
}

impl NotifyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyResult::Delivered => "delivered",
            NotifyResult::Failed => "failed",
            NotifyResult::Dropped => "dropped",
        }
    }
}
