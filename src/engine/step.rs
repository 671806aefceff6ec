//! `step`: one pure decision from (plan, stored state, observation). No clock, no I/O:
//! the same inputs always give the same decision, which is what makes the engine
//! testable by simulation and safe to restart at any instant.

use crate::engine::plan::{Plan, RETRY_DELAY};
use crate::engine::reasons;
use crate::engine::types::{Action, Decision, Observation, TransitionKind};
use crate::policy::status::{PauseReason, Phase, RolloutStatus, RouteTarget, TargetPurpose};
use crate::policy::{OnDrift, Timestamp};
use crate::router::ManagedRoute;

/// How many times one tick may confirm a write and decide again (start → confirm →
/// checks, or step advance → confirm). Bounds the loop; each round is cheap.
const MAX_ROUNDS: usize = 4;

/// Decides what happens next. Persisting is implied when `Decision::state` differs from
/// `state`; an `ApplyRoute` must be sent only after that state is persisted.
pub fn step(plan: &Plan, state: &RolloutStatus, obs: &Observation) -> Decision {
    let mut tick = Tick::new(plan, state, obs);
    tick.run();
    tick.workloads_after_route();
    tick.finish()
}

/// The working state of one `step` call.
pub(crate) struct Tick<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) obs: &'a Observation,
    pub(crate) now: Timestamp,
    pub(crate) s: RolloutStatus,
    pub(crate) actions: Vec<Action>,
    pub(crate) wake_at: Option<Timestamp>,
    /// This tick's evaluation showed every sequential metric no worse than stable.
    pub(crate) shown_no_worse: bool,
}

impl<'a> Tick<'a> {
    pub(crate) fn new(plan: &'a Plan, state: &RolloutStatus, obs: &'a Observation) -> Self {
        Tick {
            plan,
            obs,
            now: obs.now,
            s: state.clone(),
            actions: Vec::new(),
            wake_at: None,
            shown_no_worse: false,
        }
    }

    pub(crate) fn finish(mut self) -> Decision {
        // `step` is an index; people read steps counted from 1 (see `step_label`).
        self.s.current_step = Some(format!(
            "{}/{}",
            self.s.step.saturating_add(1),
            self.plan.steps().len()
        ));
        crate::engine::colours::record_colours(self.plan, &mut self.s);
        Decision {
            state: self.s,
            actions: self.actions,
            wake_at: self.wake_at,
        }
    }

    /// Asks to be woken at `at` (the earliest request wins).
    pub(crate) fn wake(&mut self, at: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    pub(crate) fn retry_soon(&mut self) {
        self.wake(crate::engine::plan::later(
            self.now,
            crate::engine::plan::to_chrono(RETRY_DELAY),
        ));
    }

    fn run(&mut self) {
        if self.s.revision.as_deref() != Some(self.plan.revision()) {
            self.start_revision();
        }
        self.enforce_step_ceiling();
        self.record_finished_hooks();
        for command in &self.obs.commands {
            self.handle_command(command);
        }
        let live = match &self.obs.live {
            Ok(live) => *live,
            Err(_) => {
                // Nothing is guessed about the live route: no write, look again soon.
                if !self.s.is_settled() {
                    self.retry_soon();
                }
                return;
            }
        };
        for _ in 0..MAX_ROUNDS {
            if !self.settle_route(live) {
                if self.judge_drift(live) {
                    continue;
                }
                return;
            }
            let target_before = self.s.target;
            self.advance_phase();
            if self.s.target == target_before || self.s.target.is_none() {
                return;
            }
        }
        self.retry_soon();
    }

    /// A stored state (hand-edited, or from an older spec with other steps) may ask for
    /// more than its step allows; no write ever exceeds the current step's weight.
    fn enforce_step_ceiling(&mut self) {
        if self.s.step > self.plan.last_index() {
            self.s.step = self.plan.last_index();
        }
        let ceiling = self.plan.step(self.s.step).weight;
        if let Some(target) = self.s.target {
            if target.canary_weight > ceiling {
                match target.purpose {
                    TargetPurpose::Promote => self.s.step = self.plan.last_index(),
                    _ => self.target_step(),
                }
            }
        }
    }

    /// What a write-back after drift restores: the confirmed weights, never above the
    /// current step's weight.
    pub(crate) fn reassert_target(&self) -> RouteTarget {
        let confirmed = self.s.confirmed_route();
        RouteTarget {
            canary_weight: confirmed
                .canary_weight
                .min(self.plan.step(self.s.step).weight),
            test_route: confirmed.test_route,
            purpose: TargetPurpose::Reassert,
        }
    }

    /// A new revision starts from the live weights: nothing is written before the
    /// first step's weight, so a rollout never starts above step 0.
    fn start_revision(&mut self) {
        let previous = self.s.revision.take();
        let generation = self.s.observed_generation;
        // Commands handled under the old revision stay handled.
        let last_command_id = self.s.last_command_id.take();
        self.s = RolloutStatus {
            observed_generation: generation,
            last_command_id,
            revision: Some(self.plan.revision().to_owned()),
            ..RolloutStatus::default()
        };
        if let Ok(live) = self.obs.live {
            self.s.canary_weight = live.canary_weight;
            self.s.test_route = live.test_route;
        }
        let message = match previous {
            Some(p) => format!("revision {} replaces {p}", self.plan.revision()),
            None => format!("revision {} accepted", self.plan.revision()),
        };
        self.record(reasons::REVISION_ACCEPTED, message);
    }

    /// Brings the live route and the state together. Returns whether the route is
    /// settled (no write outstanding, no drift) so the phase logic may run.
    fn settle_route(&mut self, live: ManagedRoute) -> bool {
        if let Some(target) = self.s.target {
            if live == target.route() {
                self.confirm(target);
                return true;
            }
            let restoring = matches!(
                target.purpose,
                TargetPurpose::Rollback
                    | TargetPurpose::Abort
                    | TargetPurpose::Reassert
                    | TargetPurpose::Undo
            );
            if restoring || live == self.s.confirmed_route() {
                // The write has not landed (or someone fights a rollback or a write-back of
                // drifted weights): send it again.
                self.actions.push(Action::ApplyRoute(target.route()));
                self.retry_soon();
                return false;
            }
            self.drift(live);
            return false;
        }
        match self.s.phase {
            // Nothing is managed yet: the live route is the baseline.
            Phase::Pending | Phase::Waiting => {
                self.s.canary_weight = live.canary_weight;
                self.s.test_route = live.test_route;
                true
            }
            // The rollout is over: what happens to the route now is someone else's call.
            Phase::Promoted | Phase::RolledBack | Phase::Aborted => false,
            _ if live != self.s.confirmed_route() => {
                self.drift(live);
                false
            }
            _ => true,
        }
    }

    /// The router confirmed a write: record it and what it completes.
    fn confirm(&mut self, target: RouteTarget) {
        self.s.target = None;
        self.s.canary_weight = target.canary_weight;
        self.s.test_route = target.test_route;
        match target.purpose {
            TargetPurpose::Step => {
                self.s.step_started_at = Some(self.now);
                let message = format!(
                    "{} confirmed by the router; analysis every {}",
                    self.step_label(),
                    self.plan.analysis().interval
                );
                self.record(reasons::STEP_CONFIRMED, message);
            }
            TargetPurpose::Reassert => {
                let message = format!(
                    "canary weight {}% written back after drift",
                    target.canary_weight
                );
                self.record(reasons::DRIFT_REASSERTED, message);
            }
            TargetPurpose::Rollback => {
                self.s.phase = Phase::RolledBack;
                let message = self.s.message.clone().unwrap_or_default();
                let cause = message.trim_start_matches("rolling back: ").to_owned();
                self.announce(
                    TransitionKind::RolledBack,
                    reasons::ROLLED_BACK,
                    format!("every request is back on stable; cause: {cause}"),
                );
                self.call_after_hooks(crate::policy::HookPhase::Rollback);
            }
            TargetPurpose::Abort => {
                self.record(
                    reasons::ABORTED,
                    "aborted by an operator; every request is back on stable".to_owned(),
                );
                self.call_after_hooks(crate::policy::HookPhase::Rollback);
            }
            TargetPurpose::Undo => self.confirm_undo(),
            TargetPurpose::Promote => {
                self.s.phase = Phase::Promoted;
                self.s.pause_reason = None;
                self.s.promoted_at = Some(self.now);
                let message = format!(
                    "revision {} serves every request{}",
                    self.plan.revision(),
                    if self.plan.uses_test_route() {
                        "; test route removed"
                    } else {
                        ""
                    }
                );
                self.announce(TransitionKind::Promoted, reasons::PROMOTED, message);
                self.call_after_hooks(crate::policy::HookPhase::PostRollout);
            }
        }
    }

    /// The live route differs from what was confirmed and from the write in flight.
    fn drift(&mut self, live: ManagedRoute) {
        let expected = self
            .s
            .target
            .map_or(self.s.confirmed_route(), |t| t.route());
        let message = format!(
            "live canary weight {}% (test route {}) differs from the expected {}% (test route {})",
            live.canary_weight,
            on_off(live.test_route),
            expected.canary_weight,
            on_off(expected.test_route)
        );
        match self.plan.on_drift() {
            OnDrift::Pause => {
                if self.s.phase == Phase::Paused && self.s.pause_reason == Some(PauseReason::Drift)
                {
                    return;
                }
                if self.s.phase != Phase::Paused && self.s.phase != Phase::Held {
                    self.s.resume_phase = Some(self.s.phase);
                }
                if self.s.phase == Phase::Held {
                    // Held stays held: an operator is already needed. Said once, not on
                    // every look at the route.
                    if self.s.reason.as_deref() != Some(reasons::DRIFT_DETECTED) {
                        self.announce(TransitionKind::Drift, reasons::DRIFT_DETECTED, message);
                    }
                    return;
                }
                self.s.phase = Phase::Paused;
                self.s.pause_reason = Some(PauseReason::Drift);
                self.announce(
                    TransitionKind::Drift,
                    reasons::DRIFT_DETECTED,
                    format!("{message}; paused, `resume` writes the expected weights back"),
                );
            }
            OnDrift::Reassert => {
                let target = self.s.target.unwrap_or_else(|| self.reassert_target());
                self.s.target = Some(target);
                self.actions.push(Action::ApplyRoute(target.route()));
                self.announce(
                    TransitionKind::Drift,
                    reasons::DRIFT_DETECTED,
                    format!("{message}; writing it back"),
                );
                self.retry_soon();
            }
        }
    }

    /// Asks for a write of the current step's weight.
    pub(crate) fn target_step(&mut self) {
        let weight = self.plan.step(self.s.step).weight;
        self.s.step_started_at = None;
        self.s.target = Some(RouteTarget {
            canary_weight: weight,
            test_route: self.plan.uses_test_route(),
            purpose: TargetPurpose::Step,
        });
    }
}

pub(crate) fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
