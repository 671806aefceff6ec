//! Hooks in the pure engine: when a hook is due the engine asks the shell for it
//! (`Action::CallHooks`) and, for a gate, decides from the answers the shell puts in
//! `Observation::hooks`. The body every hook receives is described here, once, and in
//! docs/hooks.md.
//!
//! Gates (`preRollout`, `step`, `confirmPromotion`) run before the write they guard;
//! `postRollout` and `rollback` are asked for only once the router confirmed the
//! promotion or the rollback, so a slow receiver never delays a rollback.

use serde::{Deserialize, Serialize};

use crate::engine::step::Tick;
use crate::engine::types::Action;
use crate::policy::status::{AnalysisSummary, CheckResult, Phase};
use crate::policy::{HookPhase, HookResult, Timestamp};

/// Every gate hook answered 2xx.
pub const HOOKS_PASSED: &str = "HooksPassed";
/// A `preRollout` or `step` hook did not answer 2xx: `onFailure` decides.
pub const HOOK_FAILED: &str = "HookFailed";
/// A `confirmPromotion` hook did not answer 2xx: the rollout holds at its last step.
pub const PROMOTION_NOT_CONFIRMED: &str = "PromotionNotConfirmed";

/// The `apiVersion` of every hook body.
pub const HOOK_API_VERSION: &str = "shiftgate.dev/v1alpha1";
/// The `kind` of every hook body.
pub const HOOK_KIND: &str = "RolloutHook";

/// Canary and stable shares of user traffic, in percent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookWeights {
    pub canary: u8,
    pub stable: u8,
}

impl HookWeights {
    fn canary(canary: u8) -> Self {
        HookWeights {
            canary,
            stable: 100u8.saturating_sub(canary),
        }
    }
}

/// What the engine knows for a hook call: the body without the fields only the shell
/// knows (the policy's namespace and name, the hook's name).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HookCall {
    pub phase: HookPhase,
    pub revision: String,
    /// The rollout's phase when the hook is called.
    pub rollout_phase: Phase,
    /// The current step, counted from 1.
    pub step: u32,
    pub step_count: u32,
    /// The weights confirmed by the router now.
    pub weights: HookWeights,
    /// Gates: the weights the write after a 2xx sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_weights: Option<HookWeights>,
    pub at: Timestamp,
    /// The reason and message of the last transition (a rollback's cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The verdicts so far: the last analysis with its metrics, the checks, the hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSummary>,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    #[serde(default)]
    pub hooks: Vec<HookResult>,
}

/// The JSON body one hook receives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HookBody {
    pub api_version: String,
    pub kind: String,
    /// The hook's `name`.
    pub hook: String,
    pub namespace: String,
    /// The policy's name.
    pub name: String,
    #[serde(flatten)]
    pub call: HookCall,
}

impl HookBody {
    pub fn new(namespace: &str, name: &str, hook: &str, call: &HookCall) -> Self {
        HookBody {
            api_version: HOOK_API_VERSION.to_owned(),
            kind: HOOK_KIND.to_owned(),
            hook: hook.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            call: call.clone(),
        }
    }
}

/// What the hooks of one phase answered (every hook of the phase, in policy order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookOutcome {
    pub phase: HookPhase,
    pub results: Vec<HookResult>,
}

impl HookOutcome {
    /// Every hook answered 2xx (no hooks pass trivially).
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    fn failures(&self) -> String {
        self.results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("hook {}: {}", r.hook, r.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A gate's answer to the engine.
pub(crate) enum Gate {
    /// Asked the shell; decide again with its answer.
    Asked,
    Open,
    /// Not 2xx: why.
    Closed(String),
}

impl Tick<'_> {
    /// The gate at `phase` before a write of `next_canary` percent.
    pub(crate) fn hook_gate(&mut self, phase: HookPhase, next_canary: u8) -> Gate {
        if !self.plan.has_hooks(phase) {
            return Gate::Open;
        }
        if phase == HookPhase::Step && self.step_hooks_passed_here() {
            // A `confirmPromotion` that said no asks again later; the step it follows was
            // already let through.
            return Gate::Open;
        }
        let Some(outcome) = self.obs.hooks.iter().find(|o| o.phase == phase) else {
            let call = self.hook_call(phase, Some(next_canary));
            self.actions.push(Action::CallHooks(call));
            return Gate::Asked;
        };
        let outcome = outcome.clone();
        self.remember_hooks(&outcome.results);
        if outcome.passed() {
            let message = format!(
                "{phase} hooks answered 2xx ({}) at {}",
                outcome.results.len(),
                self.step_label()
            );
            self.note(HOOKS_PASSED, message);
            Gate::Open
        } else {
            Gate::Closed(format!("{phase} hook failed: {}", outcome.failures()))
        }
    }

    /// Asks for the informational hooks of `phase` (after the write they report).
    pub(crate) fn call_after_hooks(&mut self, phase: HookPhase) {
        if self.plan.has_hooks(phase) {
            // Owed until it answers: stored with the transition, before it is sent.
            if !self.s.pending_hooks.contains(&phase) {
                self.s.pending_hooks.push(phase);
            }
            let call = self.hook_call(phase, None);
            self.actions.push(Action::CallHooks(call));
        }
    }

    /// Records what informational hooks answered since the last tick, and asks again
    /// for those still owed: the shell sends one only when it is not already sending
    /// it, so a delivery a restart interrupted goes out again (at least once).
    pub(crate) fn record_finished_hooks(&mut self) {
        let answered: Vec<HookPhase> = self
            .obs
            .hooks
            .iter()
            .filter(|o| !o.phase.is_gate())
            .map(|o| o.phase)
            .collect();
        let finished: Vec<HookResult> = self
            .obs
            .hooks
            .iter()
            .filter(|o| !o.phase.is_gate())
            .flat_map(|o| o.results.iter().cloned())
            .collect();
        self.remember_hooks(&finished);
        self.s.pending_hooks.retain(|p| !answered.contains(p));
        for phase in self.s.pending_hooks.clone() {
            let call = self.hook_call(phase, None);
            self.actions.push(Action::CallHooks(call));
        }
    }

    /// Keeps the last result of each hook and phase.
    fn remember_hooks(&mut self, results: &[HookResult]) {
        for result in results {
            self.s
                .last_hooks
                .retain(|r| !(r.hook == result.hook && r.phase == result.phase));
            self.s.last_hooks.push(result.clone());
        }
    }

    fn step_hooks_passed_here(&self) -> bool {
        let mut step_results = self
            .s
            .last_hooks
            .iter()
            .filter(|r| r.phase == HookPhase::Step)
            .peekable();
        step_results.peek().is_some()
            && step_results.all(|r| r.passed && r.step == self.s.step && r.at >= self.step_since())
    }

    /// When the current step's weight was confirmed (or the rollout started).
    fn step_since(&self) -> Timestamp {
        self.s
            .step_started_at
            .or(self.s.started_at)
            .unwrap_or(self.now)
    }

    fn hook_call(&self, phase: HookPhase, next_canary: Option<u8>) -> HookCall {
        HookCall {
            phase,
            revision: self.plan.revision().to_owned(),
            rollout_phase: self.s.phase,
            step: self.s.step.saturating_add(1),
            step_count: u32::try_from(self.plan.steps().len()).unwrap_or(u32::MAX),
            weights: HookWeights::canary(self.s.canary_weight),
            next_weights: next_canary.map(HookWeights::canary),
            at: self.now,
            reason: self.s.reason.as_deref().map(str::to_owned),
            message: self.s.message.clone(),
            analysis: self.s.last_analysis.clone(),
            checks: self.s.last_checks.clone(),
            hooks: self.s.last_hooks.clone(),
        }
    }
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
