//! `undo`: the flip back after a promotion. While the previous stable still runs, one
//! route write (weight 0, no test route) puts every user back on it, and the rollout
//! ends as RolledBack with the reason `Undone`. Everything else is refused with why,
//! and nothing is written.
//!
//! Two places only: `undo_refusal` says whether there is something to undo, and
//! `start_undo` produces everything an undo does. Whatever else an undo must restore
//! (replicas of the previous stable, a hook) is added in `start_undo`.

use crate::engine::reasons;
use crate::engine::step::Tick;
use crate::engine::types::{OperatorCommand, TransitionKind};
use crate::policy::status::{Phase, RouteTarget, TargetPurpose};

impl Tick<'_> {
    /// Handles an `undo` given for the running revision.
    pub(crate) fn undo(&mut self, command: &OperatorCommand) {
        match self.undo_refusal() {
            Some(why) => self.refuse(command, &format!("{why}. Nothing was written")),
            None => self.start_undo(),
        }
    }

    /// Why there is nothing to undo, or `None` when the flip back can be written.
    fn undo_refusal(&self) -> Option<String> {
        let revision = self.plan.revision();
        let names = self.plan.destination_names();
        let (stable, canary) = (&names.stable, &names.canary);
        match self.s.phase {
            Phase::Promoted if self.s.target.is_none() => {}
            Phase::RolledBack if self.s.reason.as_deref() == Some(reasons::UNDONE) => {
                return Some(format!(
                    "nothing to undo: revision {revision} was already undone; every request \
                     is on {stable}"
                ));
            }
            Phase::Pending | Phase::Waiting => {
                return Some(format!(
                    "nothing to undo: revision {revision} has not moved any traffic yet"
                ));
            }
            Phase::RollingBack | Phase::RolledBack | Phase::Aborted => {
                return Some(format!(
                    "nothing to undo: revision {revision} is {}; every request is (or is \
                     going) back on {stable} already",
                    self.s.phase
                ));
            }
            phase => {
                return Some(format!(
                    "nothing to undo: revision {revision} is {phase} at {}, not promoted; \
                     `undo` flips back after a promotion, `abort` puts every request back on \
                     {stable} now",
                    self.step_label()
                ));
            }
        }
        match &self.obs.live {
            // The routers cannot read a route whose stable destination is gone (removed
            // from the VirtualService, the Envoy cluster no longer configured): there is
            // no previous release to flip back to.
            Err(error) => Some(format!(
                "the previous release ({stable}) cannot be reached through the route, so \
                 there is nothing to flip back to: {error}"
            )),
            Ok(live) if live.canary_weight != 100 || live.test_route => Some(format!(
                "the live route is no longer the promotion of {revision} (canary {canary} at \
                 {}%{}): someone changed it since; set it by hand, or start a new revision",
                live.canary_weight,
                if live.test_route {
                    ", test route on"
                } else {
                    ""
                }
            )),
            Ok(_) => crate::engine::previous_release::undo_blocked_by(
                self.obs.previous_release.as_ref(),
                &self.s,
                stable,
            ),
        }
    }

    /// Everything an undo does, produced in one place: one route write back to the
    /// previous stable (persisted as the target before it is sent), announced with why.
    fn start_undo(&mut self) {
        self.s.phase = Phase::RollingBack;
        self.s.pause_reason = None;
        // A previous stable scaled down (`workloads.scaleDown`) gets its replicas back
        // first; the write then waits until they are available (engine::workloads).
        let stable_ready = self.prepare_undo();
        self.s.target = stable_ready.then_some(RouteTarget {
            canary_weight: 0,
            test_route: false,
            purpose: TargetPurpose::Undo,
        });
        let names = self.plan.destination_names();
        let since = match self.s.promoted_at {
            Some(at) => format!(" (promoted at {})", at.to_rfc3339()),
            None => String::new(),
        };
        let message = format!(
            "undo by an operator after the promotion of revision {}{since}: putting every \
             request back on {}, off {}, in one write",
            self.plan.revision(),
            names.stable,
            names.canary
        );
        self.announce(
            TransitionKind::RollingBack,
            reasons::UNDO_REQUESTED,
            message,
        );
    }

    /// The router confirmed the flip back.
    pub(crate) fn confirm_undo(&mut self) {
        self.s.phase = Phase::RolledBack;
        let names = self.plan.destination_names();
        let message = format!(
            "undone by an operator: every request is back on {}; revision {} on {} serves \
             none",
            names.stable,
            self.plan.revision(),
            names.canary
        );
        self.announce(TransitionKind::RolledBack, reasons::UNDONE, message);
    }
}
