//! Drift keeps judging. When someone else moved the managed weights and the rollout
//! paused (`onDrift: pause`), users still reach the canary at the live weight: the
//! analysis goes on there, and a Fail rolls back (or holds, per `onFailure`) like
//! anywhere else. Nothing is advanced from a drifted weight; only `resume` writes the
//! expected weights back.

use crate::engine::step::Tick;
use crate::policy::status::{PauseReason, Phase};
use crate::router::ManagedRoute;

impl Tick<'_> {
    /// Judges a drifted canary at its live weight when an evaluation is due. Returns
    /// whether the verdict asked for a write (a rollback), so the route must be settled
    /// again to send it.
    pub(crate) fn judge_drift(&mut self, live: ManagedRoute) -> bool {
        let paused_by_drift =
            self.s.phase == Phase::Paused && self.s.pause_reason == Some(PauseReason::Drift);
        // At 0% no user reaches the canary: nothing to judge.
        if !paused_by_drift || live.canary_weight == 0 {
            return false;
        }
        let gap = crate::engine::cadence::next_gap(self.plan.interval(), &self.s);
        let due = self
            .s
            .last_evaluation_at
            .map_or(self.now, |last| crate::engine::plan::later(last, gap));
        let before = self.s.target;
        self.evaluate_from(due, live.canary_weight);
        self.s.target != before
    }
}
