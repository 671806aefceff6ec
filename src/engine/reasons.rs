//! Reasons recorded in the status, conditions, events and notifications: CamelCase
//! constants, never free text.

pub const REVISION_ACCEPTED: &str = "RevisionAccepted";
pub const STARTED: &str = "Started";
pub const WINDOW_CLOSED: &str = "WindowClosed";
pub const STEP_CONFIRMED: &str = "StepConfirmed";
pub const STEP_ADVANCED: &str = "StepAdvanced";
pub const CHECKS_PASSED: &str = "ChecksPassed";
pub const CHECKS_FAILED: &str = "ChecksFailed";
pub const ANALYSIS_PASSED: &str = "AnalysisPassed";
pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
pub const ANALYSIS_INCONCLUSIVE: &str = "AnalysisInconclusive";
pub const INCONCLUSIVE_LIMIT: &str = "InconclusiveLimit";
pub const AWAITING_PROMOTION: &str = "AwaitingPromotion";
pub const PAUSED_BY_OPERATOR: &str = "PausedByOperator";
pub const RESUMED: &str = "Resumed";
pub const PROMOTED_BY_OPERATOR: &str = "PromotedByOperator";
pub const ABORTED: &str = "Aborted";
pub const ROLLED_BACK: &str = "RolledBack";
pub const PROMOTED: &str = "Promoted";
pub const HELD: &str = "Held";
pub const DRIFT_DETECTED: &str = "DriftDetected";
pub const DRIFT_REASSERTED: &str = "DriftReasserted";
pub const ROUTE_UNREADABLE: &str = "RouteUnreadable";
pub const COMMAND_REFUSED: &str = "CommandRefused";
/// An operator asked to flip back to the previous stable after a promotion.
pub const UNDO_REQUESTED: &str = "UndoRequested";
/// Every request is back on the previous stable after `undo`.
pub const UNDONE: &str = "Undone";
/// An operator restarted a rolled-back or aborted revision from step 0.
pub const RETRIED: &str = "Retried";
/// A new rollout refused: the canary already serves more than the first step.
pub const CANARY_IS_LIVE: &str = "CanaryIsLive";

/// Condition types.
pub const ACCEPTED: &str = "Accepted";
pub const PROGRESSING: &str = "Progressing";
pub const HEALTHY: &str = "Healthy";
