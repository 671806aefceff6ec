//! The phase logic once the route is settled: start, checks, evaluations, step
//! advances, and the reactions to failure and to inconclusive analysis.

use crate::analysis::{evaluate, Verdict};
use crate::engine::evidence;
use crate::engine::hooks::{Gate, HOOK_FAILED, PROMOTION_NOT_CONFIRMED};
use crate::engine::plan::later;
use crate::engine::reasons;
use crate::engine::step::Tick;
use crate::engine::types::{Action, TransitionKind};
use crate::policy::status::{
    AnalysisSummary, MetricSummary, PauseReason, Phase, RouteTarget, TargetPurpose, VerdictKind,
};
use crate::policy::{HookPhase, OnFailure, OnInconclusive};

impl Tick<'_> {
    /// Runs the current phase with the route settled.
    pub(crate) fn advance_phase(&mut self) {
        match self.s.phase {
            Phase::Pending | Phase::Waiting => self.start(),
            Phase::Checking => self.checking(),
            Phase::Progressing => self.progressing(),
            // A manual gate keeps judging: a regression at the gate still rolls back. At
            // 0% no user reaches the canary: there is nothing to judge, and waiting for a
            // person is not an inconclusive analysis.
            Phase::Paused if self.s.pause_reason == Some(PauseReason::ManualGate) => {
                if self.s.canary_weight > 0 || self.plan.judges_test_route() {
                    self.evaluate_if_due();
                }
            }
            Phase::Paused
            | Phase::Held
            | Phase::RollingBack
            | Phase::Promoted
            | Phase::RolledBack
            | Phase::Aborted => {}
        }
    }

    fn start(&mut self) {
        if self.refuse_live_canary() {
            return;
        }
        if !self.plan.window_open(self.now) {
            if self.s.phase != Phase::Waiting {
                self.s.phase = Phase::Waiting;
                let next = self.plan.next_window_change(self.now);
                let message = match next {
                    Some(at) => format!("deployment window closed; next opening at {at}"),
                    None => "deployment window closed; no opening ahead".to_owned(),
                };
                self.record(reasons::WINDOW_CLOSED, message);
            }
            if let Some(at) = self.plan.next_window_change(self.now) {
                self.wake(at);
            }
            return;
        }
        if !self.canary_workload_ready() {
            return;
        }
        match self.hook_gate(HookPhase::PreRollout, self.plan.step(0).weight) {
            Gate::Open => {}
            Gate::Asked => return,
            Gate::Closed(message) => return self.on_failure(HOOK_FAILED, message),
        }
        self.s.step = 0;
        self.s.started_at = Some(self.now);
        self.s.consecutive_failures = 0;
        self.s.consecutive_inconclusive = 0;
        self.s.checks_passed = false;
        self.s.phase = if self.plan.step(0).weight == 0 && self.plan.has_checks() {
            Phase::Checking
        } else {
            Phase::Progressing
        };
        self.target_step();
        let message = format!(
            "rollout of {} started at {} (live canary weight {}%)",
            self.plan.revision(),
            self.step_label(),
            self.s.canary_weight
        );
        self.announce(TransitionKind::Started, reasons::STARTED, message);
    }

    /// Weight 0, test route installed: the checks decide, then the hold.
    fn checking(&mut self) {
        let Some(started) = self.s.step_started_at else {
            self.target_step();
            return;
        };
        if !self.s.checks_passed {
            let due = self
                .s
                .last_evaluation_at
                .filter(|last| *last >= started)
                .map_or(started, |last| later(last, self.plan.interval()));
            if self.now < due {
                self.wake(due);
                return;
            }
            let Some(outcome) = &self.obs.checks else {
                self.actions.push(Action::RunChecks);
                return;
            };
            self.s.last_evaluation_at = Some(self.now);
            self.s.last_checks = outcome.results.clone();
            let failed: Vec<String> = outcome
                .results
                .iter()
                .filter(|r| !r.passed)
                .map(|r| format!("{}: {}", r.name, r.message))
                .collect();
            if failed.is_empty() {
                self.s.checks_passed = true;
                self.s.consecutive_failures = 0;
                let message = format!("{} checks passed", outcome.results.len());
                self.record(reasons::CHECKS_PASSED, message);
            } else {
                self.s.consecutive_failures = self.s.consecutive_failures.saturating_add(1);
                let message = format!(
                    "{} of {} checks failed ({} in a row, limit {}): {}",
                    failed.len(),
                    outcome.results.len(),
                    self.s.consecutive_failures,
                    self.plan.analysis().failure_limit,
                    failed.join("; ")
                );
                if self.s.consecutive_failures > self.plan.analysis().failure_limit {
                    self.on_failure(reasons::CHECKS_FAILED, message);
                } else {
                    self.record(reasons::CHECKS_FAILED, message);
                    self.wake(later(self.now, self.plan.interval()));
                }
                return;
            }
        }
        if self.plan.judges_test_route() {
            // Checks passed; the test route's traffic is judged next, like any step's.
            self.s.phase = Phase::Progressing;
            self.progressing();
            return;
        }
        self.pass_step_when_held(started);
    }

    fn progressing(&mut self) {
        let Some(started) = self.s.step_started_at else {
            self.target_step();
            return;
        };
        if self.plan.step(self.s.step).weight == 0 && !self.plan.judges_test_route() {
            // No user traffic reaches the canary: nothing to judge, only the hold.
            self.pass_step_when_held(started);
            return;
        }
        if !self.evaluate_if_due() || self.s.phase != Phase::Progressing {
            return;
        }
        let judged_here = self.s.last_evaluation_at.is_some_and(|t| t > started);
        let passed = self
            .s
            .last_analysis
            .as_ref()
            .is_some_and(|a| a.verdict == VerdictKind::Pass);
        if judged_here && passed && self.shown_no_worse && self.plan.analysis().advance_early {
            // Every sequential metric showed the canary no worse: the hold is not needed.
            self.pass_step();
        } else if judged_here && passed {
            self.pass_step_when_held(started);
        }
    }

    /// Evaluates when an evaluation is due. Returns false when it asked for metrics and
    /// must be stepped again with them.
    fn evaluate_if_due(&mut self) -> bool {
        let Some(started) = self.s.step_started_at else {
            return true;
        };
        let interval = self.plan.interval();
        let gap = crate::engine::cadence::next_gap(interval, &self.s);
        let due = self
            .s
            .last_evaluation_at
            .filter(|last| *last > started)
            .map_or(later(started, interval), |last| later(last, gap));
        self.evaluate_from(due, self.s.canary_weight)
    }

    /// Evaluates at `weight` (the canary's share of user traffic) once `due` has come.
    /// Returns false when it asked for metrics and must be stepped again with them.
    pub(crate) fn evaluate_from(&mut self, due: crate::policy::Timestamp, weight: u8) -> bool {
        let interval = self.plan.interval();
        let early = crate::engine::plan::evaluation_slack(interval);
        if self.now < due.checked_sub_signed(early).unwrap_or(due) {
            self.wake(due);
            return true;
        }
        let Some(input) = &self.obs.analysis else {
            self.actions.push(Action::QueryMetrics);
            return false;
        };
        let since = evidence::counts_since(self.plan, &self.s);
        let evaluation = evaluate(
            self.plan.analysis(),
            input,
            weight,
            self.s.evidence.as_ref(),
        );
        self.s.evidence = evidence::kept(evaluation.evidence.clone(), since);
        self.shown_no_worse = evaluation.shown_no_worse;
        self.s.last_evaluation_at = Some(self.now);
        self.s.last_analysis = Some(AnalysisSummary {
            at: self.now,
            verdict: evaluation.verdict.kind(),
            reason: evaluation.verdict.reason().into(),
            message: evaluation.message.clone(),
            canary_requests: evaluation.canary_requests.filter(|r| r.is_finite()),
            metrics: evaluation
                .metrics
                .iter()
                .map(|m| MetricSummary {
                    name: m.name.clone(),
                    canary: m.canary,
                    stable: m.stable,
                    verdict: m.verdict.kind(),
                    reason: m.verdict.reason().into(),
                    message: m.detail.clone(),
                    evidence: m.evidence.filter(|e| e.is_finite()),
                })
                .collect(),
        });
        // Sooner while the canary fails (`engine::cadence`).
        self.wake(later(
            self.now,
            crate::engine::cadence::next_gap(interval, &self.s),
        ));
        let limits = self.plan.analysis();
        match evaluation.verdict {
            Verdict::Pass => {
                self.s.consecutive_failures = 0;
                self.s.consecutive_inconclusive = 0;
                self.note(reasons::ANALYSIS_PASSED, evaluation.message);
            }
            Verdict::Fail { .. } => {
                self.s.consecutive_failures = self.s.consecutive_failures.saturating_add(1);
                let message = if evaluation.decided_worse {
                    format!("{} (a sequential judge's decision)", evaluation.message)
                } else {
                    format!(
                        "{} ({} failed in a row, limit {})",
                        evaluation.message, self.s.consecutive_failures, limits.failure_limit
                    )
                };
                // A sequential judge's Fail is a decision with a known error rate, and
                // final: waiting for `failureLimit` more would only serve more requests.
                if self.s.consecutive_failures > limits.failure_limit || evaluation.decided_worse {
                    self.on_failure(reasons::ANALYSIS_FAILED, message);
                } else {
                    self.note(reasons::ANALYSIS_FAILED, message);
                }
            }
            // Evidence still being gathered is not an outage: it neither pauses nor
            // rolls back, and the step waits for a decision or for `minRequests`.
            Verdict::Inconclusive(_) if evaluation.gathering => {
                self.s.consecutive_inconclusive = 0;
                self.note(
                    reasons::ANALYSIS_INCONCLUSIVE,
                    format!("{}; gathering evidence", evaluation.message),
                );
            }
            Verdict::Inconclusive(_) => {
                self.s.consecutive_inconclusive = self.s.consecutive_inconclusive.saturating_add(1);
                let message = format!(
                    "{} ({} inconclusive in a row, limit {})",
                    evaluation.message, self.s.consecutive_inconclusive, limits.inconclusive_limit
                );
                if self.s.consecutive_inconclusive > limits.inconclusive_limit {
                    self.on_inconclusive(message);
                } else {
                    self.note(reasons::ANALYSIS_INCONCLUSIVE, message);
                }
            }
        }
        true
    }

    /// The step's analysis (or checks) passed: it passes once its hold has elapsed.
    fn pass_step_when_held(&mut self, started: crate::policy::Timestamp) {
        let hold_end = later(started, self.plan.hold(self.s.step));
        if self.now < hold_end {
            self.wake(hold_end);
            return;
        }
        self.pass_step();
    }

    /// The step passed (analysis and hold): a manual gate waits, else the next step.
    fn pass_step(&mut self) {
        let step = self.plan.step(self.s.step);
        if step.pause {
            self.s.phase = Phase::Paused;
            self.s.pause_reason = Some(PauseReason::ManualGate);
            self.s.resume_phase = Some(Phase::Progressing);
            let message = format!("{} passed; waiting for `promote`", self.step_label());
            self.announce(TransitionKind::Paused, reasons::AWAITING_PROMOTION, message);
            return;
        }
        self.next_step(false);
    }

    /// Moves to the next step (or promotes after the last). A closed window freezes
    /// this unless an operator asked for it.
    pub(crate) fn next_step(&mut self, by_operator: bool) {
        if self.s.step >= self.plan.last_index() {
            if !by_operator && !self.promotion_gates_open() {
                return;
            }
            self.promote_full();
            return;
        }
        if !by_operator && !self.plan.window_open(self.now) {
            if self.s.reason.as_deref() != Some(reasons::WINDOW_CLOSED) {
                let message = format!(
                    "{} passed; deployment window closed, traffic stays until it opens",
                    self.step_label()
                );
                self.note(reasons::WINDOW_CLOSED, message);
            }
            if let Some(at) = self.plan.next_window_change(self.now) {
                self.wake(at);
            }
            return;
        }
        let next_weight = self.plan.step(self.s.step.saturating_add(1)).weight;
        if !by_operator {
            match self.hook_gate(HookPhase::Step, next_weight) {
                Gate::Open => {}
                Gate::Asked => return,
                Gate::Closed(message) => return self.on_failure(HOOK_FAILED, message),
            }
        }
        let from = self.plan.step(self.s.step).weight;
        self.s.step = self.s.step.saturating_add(1);
        self.s.phase = Phase::Progressing;
        self.s.pause_reason = None;
        self.s.consecutive_failures = 0;
        self.s.consecutive_inconclusive = 0;
        self.target_step();
        let (reason, why) = if by_operator {
            (reasons::PROMOTED_BY_OPERATOR, "promoted by an operator")
        } else if from > 0 {
            (reasons::STEP_ADVANCED, "analysis passed")
        } else if self.plan.judges_test_route() {
            (
                reasons::STEP_ADVANCED,
                "analysis of the test route's traffic passed",
            )
        } else if self.plan.has_checks() {
            (reasons::STEP_ADVANCED, "checks passed")
        } else {
            (reasons::STEP_ADVANCED, "no user traffic to judge at 0%")
        };
        let message = format!("{} from {from}%: {why}", self.step_label());
        self.announce(TransitionKind::StepAdvanced, reason, message);
    }

    /// The `step` and `confirmPromotion` hooks before the promotion write. A
    /// `confirmPromotion` that is not 2xx holds at the last step (analysis goes on) and
    /// is asked again at the next evaluation; `promote` or `abort` end the wait.
    fn promotion_gates_open(&mut self) -> bool {
        match self.hook_gate(HookPhase::Step, 100) {
            Gate::Open => {}
            Gate::Asked => return false,
            Gate::Closed(message) => {
                self.on_failure(HOOK_FAILED, message);
                return false;
            }
        }
        match self.hook_gate(HookPhase::ConfirmPromotion, 100) {
            Gate::Open => true,
            Gate::Asked => false,
            Gate::Closed(message) => {
                let message = format!(
                    "{message}; holding at {} until it answers 2xx, or `promote`/`abort`",
                    self.step_label()
                );
                // One history entry per wait, not one per refusal.
                let waiting = self
                    .s
                    .history
                    .last()
                    .is_some_and(|h| h.reason == PROMOTION_NOT_CONFIRMED);
                if !waiting {
                    self.announce(
                        TransitionKind::PromotionNotConfirmed,
                        PROMOTION_NOT_CONFIRMED,
                        message,
                    );
                } else {
                    self.note(PROMOTION_NOT_CONFIRMED, message);
                }
                self.wake(later(self.now, self.plan.interval()));
                false
            }
        }
    }

    /// Every request to the canary and the test route removed, in one write.
    pub(crate) fn promote_full(&mut self) {
        self.s.step = self.plan.last_index();
        self.s.phase = Phase::Progressing;
        self.s.pause_reason = None;
        self.s.target = Some(RouteTarget {
            canary_weight: 100,
            test_route: false,
            purpose: TargetPurpose::Promote,
        });
    }

    pub(crate) fn on_failure(&mut self, reason: &str, message: String) {
        match self.plan.on_failure() {
            OnFailure::Rollback => self.rollback(reason, message),
            OnFailure::Hold => {
                self.s.phase = Phase::Held;
                self.s.pause_reason = None;
                let message = format!(
                    "{message}; held at {}% (`onFailure: hold`), an operator decides",
                    self.s.canary_weight
                );
                self.announce(TransitionKind::Held, reason, message);
            }
        }
    }

    fn on_inconclusive(&mut self, message: String) {
        match self.plan.on_inconclusive() {
            OnInconclusive::Rollback => self.rollback(reasons::INCONCLUSIVE_LIMIT, message),
            // Paused after drift already waits for an operator: the pause keeps its
            // reason, so `resume` still writes the expected weights back.
            OnInconclusive::Pause if self.s.pause_reason == Some(PauseReason::Drift) => {
                self.note(
                    reasons::INCONCLUSIVE_LIMIT,
                    format!("{message}; paused after drift, an operator decides"),
                );
            }
            OnInconclusive::Pause => {
                // At a manual gate the phase is already Paused: resume to Progressing
                // (the gate is passed again only after a new Pass).
                if self.s.phase != Phase::Paused {
                    self.s.resume_phase = Some(self.s.phase);
                }
                self.s.phase = Phase::Paused;
                self.s.pause_reason = Some(PauseReason::Inconclusive);
                let message = format!("{message}; paused, an operator decides");
                self.announce(
                    TransitionKind::InconclusiveLimit,
                    reasons::INCONCLUSIVE_LIMIT,
                    message,
                );
            }
        }
    }

    /// Weight 0 and no test route in one write; never blocked by a window.
    pub(crate) fn rollback(&mut self, reason: &str, message: String) {
        self.s.phase = Phase::RollingBack;
        self.s.pause_reason = None;
        self.s.target = Some(RouteTarget {
            canary_weight: 0,
            test_route: false,
            purpose: TargetPurpose::Rollback,
        });
        self.announce(
            TransitionKind::RollingBack,
            reason,
            format!("rolling back: {message}"),
        );
    }
}
