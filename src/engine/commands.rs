//! Operator commands, applied at the start of a tick in the order received. A command
//! that makes no sense in the current phase changes nothing.

use crate::engine::reasons;
use crate::engine::step::Tick;
use crate::engine::types::{Command, TransitionKind};
use crate::policy::status::{PauseReason, Phase, RouteTarget, TargetPurpose};

impl Tick<'_> {
    pub(crate) fn apply_command(&mut self, command: Command) {
        let phase = self.s.phase;
        let finished = matches!(
            phase,
            Phase::Promoted | Phase::RolledBack | Phase::Aborted | Phase::RollingBack
        );
        if finished {
            return;
        }
        match command {
            Command::Abort => self.abort(),
            Command::Pause => {
                if matches!(
                    phase,
                    Phase::Pending | Phase::Waiting | Phase::Checking | Phase::Progressing
                ) {
                    self.s.resume_phase = Some(phase);
                    self.s.phase = Phase::Paused;
                    self.s.pause_reason = Some(PauseReason::Operator);
                    let message = format!("paused by an operator at {}", self.step_label());
                    self.announce(TransitionKind::Paused, reasons::PAUSED_BY_OPERATOR, message);
                }
            }
            Command::Resume => self.resume(),
            Command::Promote => {
                if matches!(
                    phase,
                    Phase::Checking | Phase::Progressing | Phase::Paused | Phase::Held
                ) {
                    self.next_step(true);
                    if self.s.phase == Phase::Progressing
                        && self.s.target.map(|t| t.purpose) == Some(TargetPurpose::Promote)
                    {
                        self.announce_promote_full();
                    }
                }
            }
            Command::PromoteFull => {
                if self.s.phase == Phase::Pending || self.s.phase == Phase::Waiting {
                    self.s.started_at = Some(self.now);
                }
                self.promote_full();
                self.announce_promote_full();
            }
        }
    }

    fn announce_promote_full(&mut self) {
        let message = format!(
            "promoted by an operator: every request goes to {}",
            self.plan.revision()
        );
        self.announce(
            TransitionKind::StepAdvanced,
            reasons::PROMOTED_BY_OPERATOR,
            message,
        );
    }

    fn abort(&mut self) {
        let touched = !matches!(self.s.phase, Phase::Pending | Phase::Waiting);
        self.s.phase = Phase::Aborted;
        self.s.pause_reason = None;
        if touched {
            self.s.target = Some(RouteTarget {
                canary_weight: 0,
                test_route: false,
                purpose: TargetPurpose::Abort,
            });
        } else {
            self.s.target = None;
        }
        let message = if touched {
            format!(
                "aborted by an operator at {}; putting every request back on stable",
                self.step_label()
            )
        } else {
            "aborted by an operator before any traffic moved".to_owned()
        };
        self.announce(TransitionKind::Aborted, reasons::ABORTED, message);
    }

    fn resume(&mut self) {
        match (self.s.phase, self.s.pause_reason) {
            // A manual gate waits for `promote`; `resume` does not skip it.
            (Phase::Paused, Some(PauseReason::ManualGate)) => {}
            (Phase::Paused, reason) => {
                self.s.phase = self.s.resume_phase.take().unwrap_or(Phase::Progressing);
                self.s.pause_reason = None;
                self.s.consecutive_failures = 0;
                self.s.consecutive_inconclusive = 0;
                if reason == Some(PauseReason::Drift) && self.s.target.is_none() {
                    self.s.target = Some(self.reassert_target());
                }
                let message = format!("resumed by an operator at {}", self.step_label());
                self.announce(TransitionKind::Resumed, reasons::RESUMED, message);
            }
            (Phase::Held, _) => {
                self.s.phase = Phase::Progressing;
                self.s.consecutive_failures = 0;
                self.s.consecutive_inconclusive = 0;
                let message = format!("resumed by an operator at {}", self.step_label());
                self.announce(TransitionKind::Resumed, reasons::RESUMED, message);
            }
            _ => {}
        }
    }
}
