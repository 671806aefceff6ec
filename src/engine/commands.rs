//! Operator commands, applied at the start of a tick in the order received. A command
//! belongs to the revision it was given for: one for another revision, one that names
//! none (the old format) and an unknown word are refused with the reason, never applied.
//! Every command handled (applied or refused) leaves its id in the state, so the state
//! saved after it says it was handled, and a restart neither loses nor repeats it. A
//! command that makes no sense in the current phase changes nothing.

use crate::engine::reasons;
use crate::engine::step::Tick;
use crate::engine::types::{Command, OperatorCommand, TransitionKind};
use crate::policy::status::{PauseReason, Phase, RolloutStatus, RouteTarget, TargetPurpose};

impl Tick<'_> {
    pub(crate) fn handle_command(&mut self, command: &OperatorCommand) {
        if self.s.last_command_id.as_deref() == Some(command.id.as_str()) {
            // Handled before, and the state that says so was saved.
            return;
        }
        self.s.last_command_id = Some(command.id.clone());
        match (&command.command, command.revision.as_deref()) {
            (Err(unknown), _) => self.refuse(command, &unknown.to_string()),
            (Ok(word), None) => {
                let why = format!(
                    "`{word}` names no revision (a command from an older shiftgate, or an \
                     annotation without shiftgate.dev/command-revision), so it could be meant \
                     for any revision; send it again with `shiftgate {}`",
                    cli_words(*word)
                );
                self.refuse(command, &why);
            }
            (Ok(word), Some(revision)) if revision != self.plan.revision() => {
                let why = format!(
                    "`{word}` was given for revision {revision}, but revision {} is running; \
                     send it again if it is meant for {}",
                    self.plan.revision(),
                    self.plan.revision()
                );
                self.refuse(command, &why);
            }
            (Ok(Command::Undo), Some(_)) => self.undo(command),
            (Ok(Command::Retry), Some(_)) => self.retry(command),
            (Ok(word), Some(_)) => self.apply_command(*word),
        }
    }

    pub(crate) fn refuse(&mut self, command: &OperatorCommand, why: &str) {
        let message = format!("command {} refused, not applied: {why}", command.id);
        self.announce_aside(
            TransitionKind::CommandRefused,
            reasons::COMMAND_REFUSED,
            message,
        );
    }

    fn apply_command(&mut self, command: Command) {
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
            // Handled by `undo` (engine/undo.rs): it acts after a promotion, when every
            // other command is ignored, and its refusals name the command.
            // `retry` likewise (below): it acts only once the rollout is over.
            Command::Undo | Command::Retry => {}
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

impl Tick<'_> {
    /// Handles a `retry` given for the running revision: a rolled-back or aborted
    /// rollout starts again from step 0, as a new rollout of the same revision would
    /// (checks, every step's analysis); anything else is refused with why.
    fn retry(&mut self, command: &OperatorCommand) {
        if let Some(why) = retry_refusal(&self.s, self.plan.revision()) {
            self.refuse(command, &why);
            return;
        }
        let before = std::mem::take(&mut self.s);
        self.s = RolloutStatus {
            observed_generation: before.observed_generation,
            last_command_id: before.last_command_id,
            revision: before.revision,
            // Which colour serves is still what the live route says.
            stable_color: before.stable_color,
            canary_color: before.canary_color,
            live_color: before.live_color,
            history: before.history,
            canary_weight: before.canary_weight,
            test_route: before.test_route,
            ..RolloutStatus::default()
        };
        let message = format!(
            "retry by an operator: revision {} starts again from step 1 after it was {}",
            self.plan.revision(),
            before.phase
        );
        self.record(reasons::RETRIED, message);
    }
}

/// Why `retry` cannot restart `revision` from `status`, or `None` when it can: only a
/// rollout of that revision that ended RolledBack or Aborted (its write back to stable
/// confirmed) starts again. Shared by the engine and the CLI, which refuses to send a
/// command the engine would refuse.
pub fn retry_refusal(status: &RolloutStatus, revision: &str) -> Option<String> {
    if status.revision.as_deref() != Some(revision) {
        return Some(format!(
            "nothing to retry: revision {revision} has not run (the last rollout was of {})",
            status.revision.as_deref().unwrap_or("no revision")
        ));
    }
    match status.phase {
        Phase::RolledBack | Phase::Aborted if status.target.is_none() => None,
        Phase::RolledBack | Phase::Aborted | Phase::RollingBack => Some(format!(
            "nothing to retry yet: revision {revision} is still going back to stable; retry \
             once it is {}",
            Phase::RolledBack
        )),
        Phase::Held => Some(format!(
            "revision {revision} is Held at canary {}%, not over: `resume` continues it from \
             there, `abort` puts every request back on stable (then `retry` starts it again)",
            status.canary_weight
        )),
        Phase::Promoted => Some(format!(
            "revision {revision} was promoted; there is nothing to retry (`undo` flips back \
             to the previous stable)"
        )),
        phase => Some(format!(
            "revision {revision} is {phase}, still in progress; `retry` restarts a rollout \
             that was rolled back or aborted"
        )),
    }
}

/// How a command is typed on the command line.
fn cli_words(command: Command) -> &'static str {
    match command {
        Command::PromoteFull => "promote --full",
        other => other.as_str(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::engine::types::{Observation, OperatorCommand, UnknownCommand};
    use crate::engine::{reasons, step, Command, Plan, TransitionKind};
    use crate::policy::status::{Phase, RolloutStatus};
    use crate::router::ManagedRoute;

    /// A plan of steps 0, 30, 100 on an Istio route (also the undo tests' plan).
    pub(in crate::engine) fn plan() -> Plan {
        let spec = serde_json::json!({
            "revision": "v2",
            "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
            "steps": [0, 30, 100],
            "analysis": { "metrics": [ { "name": "e", "query": "x", "max": 0.01 } ] },
        });
        Plan::new(&serde_json::from_value(spec).unwrap()).unwrap()
    }

    fn at_30() -> RolloutStatus {
        RolloutStatus {
            revision: Some("v2".into()),
            phase: Phase::Progressing,
            step: 1,
            canary_weight: 30,
            ..RolloutStatus::default()
        }
    }

    fn observe(commands: Vec<OperatorCommand>) -> Observation {
        let mut obs = Observation::at(
            chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
            Ok(ManagedRoute {
                canary_weight: 30,
                test_route: false,
            }),
        );
        obs.commands = commands;
        obs
    }

    #[test]
    fn a_command_for_another_revision_or_none_is_refused_and_recorded() {
        let stale = OperatorCommand::new("7", Command::PromoteFull, "v1");
        let mut old_format = OperatorCommand::new("8", Command::Abort, "v2");
        old_format.revision = None;
        let unknown = OperatorCommand {
            command: Err(UnknownCommand("explode".into())),
            ..OperatorCommand::new("9", Command::Pause, "v2")
        };
        let d = step(
            &plan(),
            &at_30(),
            &observe(vec![stale, old_format, unknown]),
        );
        assert_eq!(d.state.phase, Phase::Progressing);
        assert_eq!(d.state.target, None, "nothing is written");
        assert_eq!(d.state.last_command_id.as_deref(), Some("9"));
        let refused: Vec<_> = d
            .transitions()
            .filter(|t| t.kind == TransitionKind::CommandRefused)
            .map(|t| t.message.clone())
            .collect();
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused[0].contains("given for revision v1, but revision v2 is running"));
        assert!(refused[1].contains("names no revision"));
        assert!(refused[2].contains("explode"));
        assert_eq!(
            d.state
                .history
                .iter()
                .filter(|e| e.reason == reasons::COMMAND_REFUSED)
                .count(),
            3
        );
        // A refusal leaves the last transition's reason alone.
        assert_ne!(d.state.reason.as_deref(), Some(reasons::COMMAND_REFUSED));
    }

    #[test]
    fn a_command_whose_id_the_state_names_is_not_applied_again() {
        let promote = OperatorCommand::new("4", Command::Promote, "v2");
        let first = step(&plan(), &at_30(), &observe(vec![promote.clone()]));
        assert_eq!(first.state.step, 2);
        assert_eq!(first.state.last_command_id.as_deref(), Some("4"));
        let again = step(&plan(), &first.state, &observe(vec![promote]));
        assert_eq!(again.state.step, 2, "not two steps for one promote");
    }

    #[test]
    fn retry_restarts_a_rolled_back_revision_from_step_one_and_refuses_otherwise() {
        let mut rolled_back = at_30();
        rolled_back.phase = Phase::RolledBack;
        rolled_back.canary_weight = 0;
        rolled_back.step = 1;
        rolled_back.consecutive_failures = 2;
        let mut obs = observe(vec![OperatorCommand::new("5", Command::Retry, "v2")]);
        obs.live = Ok(ManagedRoute {
            canary_weight: 0,
            test_route: false,
        });
        let d = step(&plan(), &rolled_back, &obs);
        // A new start, as for a new revision: step 1 (weight 0) then on, judged again.
        assert!(d.state.step < 2, "not past the first judged step");
        assert_eq!(d.state.consecutive_failures, 0);
        let reasons: Vec<&str> = d.state.history.iter().map(|e| e.reason.as_str()).collect();
        let retried = reasons.iter().position(|r| *r == reasons::RETRIED);
        let started = reasons.iter().rposition(|r| *r == reasons::STARTED);
        assert!(retried.is_some() && started > retried, "{reasons:?}");
        assert_eq!(d.state.last_command_id.as_deref(), Some("5"));
        assert_eq!(d.state.revision.as_deref(), Some("v2"));
        assert!(
            !matches!(d.state.phase, Phase::RolledBack | Phase::Aborted),
            "{:?}",
            d.state.phase
        );
        // Handled once: the same command again changes nothing more.
        let again = step(&plan(), &d.state, &obs);
        assert_eq!(
            again.state.history.len(),
            d.state.history.len(),
            "a retry is not applied twice"
        );

        for phase in [
            Phase::Progressing,
            Phase::Held,
            Phase::Promoted,
            Phase::Paused,
        ] {
            let mut status = at_30();
            status.phase = phase;
            let d = step(
                &plan(),
                &status,
                &observe(vec![OperatorCommand::new("6", Command::Retry, "v2")]),
            );
            assert_eq!(d.state.step, status.step, "{phase:?}: not restarted");
            assert!(
                d.transitions()
                    .any(|t| t.kind == TransitionKind::CommandRefused),
                "{phase:?}: refused with why"
            );
        }
        let mut in_flight = at_30();
        in_flight.phase = Phase::RollingBack;
        assert!(crate::engine::retry_refusal(&in_flight, "v2").is_some());
    }

    #[test]
    fn a_new_revision_keeps_the_last_command_id() {
        let mut v1 = at_30();
        v1.revision = Some("v1".into());
        v1.last_command_id = Some("12".into());
        let d = step(&plan(), &v1, &observe(Vec::new()));
        assert_eq!(d.state.revision.as_deref(), Some("v2"));
        assert_eq!(d.state.last_command_id.as_deref(), Some("12"));
    }
}
