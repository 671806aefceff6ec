//! Where the sequential judges' evidence starts and ends. The evidence and the instant
//! up to which it was counted live in the status (`status.evidence`) and are saved in
//! the same write as the evaluation that counted them: after a restart the next
//! evaluation asks for the counts since that instant, so nothing is lost or counted
//! twice. Evidence carries across the steps of one revision (the judges condition on
//! each interval's own traffic split, so a weight change does not bias them) and
//! starts anew with a new revision.

use crate::analysis::comparison::sequential_metrics;
use crate::engine::plan::Plan;
use crate::policy::status::{EvidenceStatus, RolloutStatus, Timestamp};

/// The start of the range whose counts the next evaluation needs (`None`: the policy
/// has no sequential metric). The shell passes it to `MetricSource::observe`.
pub fn counts_since(plan: &Plan, state: &RolloutStatus) -> Option<Timestamp> {
    if sequential_metrics(plan.analysis()) == 0 {
        return None;
    }
    state
        .evidence
        .as_ref()
        .map(|e| e.counted_until)
        .or(state.step_started_at)
}

/// The evidence to keep after an evaluation: the judges' when they counted, else the
/// start of the range pinned, so the next evaluation counts from the same instant.
/// Evidence holding only `mannWhitney` series (the sequential judges could not count
/// yet) keeps the range's start too.
pub(crate) fn kept(
    counted: Option<EvidenceStatus>,
    since: Option<Timestamp>,
) -> Option<EvidenceStatus> {
    let only_series = |e: &EvidenceStatus| {
        e.metrics
            .iter()
            .all(|m| matches!(m.state, crate::policy::status::JudgeState::MannWhitney(_)))
    };
    let counted = counted.map(|mut e| {
        if let Some(since) = since.filter(|_| only_series(&e)) {
            e.counted_until = since;
        }
        e
    });
    counted.or_else(|| {
        since.map(|counted_until| EvidenceStatus {
            counted_until,
            metrics: Vec::new(),
        })
    })
}
