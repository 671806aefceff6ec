//! How a tick writes down what happened: reason and message, history, conditions and
//! notifications. Nothing here decides anything.

use crate::engine::reasons;
use crate::engine::step::Tick;
use crate::engine::types::{Action, Transition, TransitionKind};
use crate::policy::status::{Condition, HistoryEntry, Phase, HISTORY_LIMIT};
use crate::policy::Timestamp;

impl Tick<'_> {
    /// Notes a routine change (an evaluation, a frozen advance): reason, message and
    /// conditions, but no history entry, so the history keeps the transitions.
    pub(crate) fn note(&mut self, reason: &str, message: String) {
        self.s.reason = Some(reason.into());
        self.s.message = Some(message);
        self.update_conditions();
    }

    /// Records a change of state: reason, message and a history entry.
    pub(crate) fn record(&mut self, reason: &str, message: String) {
        self.s.reason = Some(reason.into());
        self.s.message = Some(message.clone());
        self.push_history(reason, message);
        self.update_conditions();
    }

    /// Announces something that is not a change of state (a refused command): a history
    /// entry and a notification, leaving the last transition's reason and message alone.
    pub(crate) fn announce_aside(&mut self, kind: TransitionKind, reason: &str, message: String) {
        self.push_history(reason, message.clone());
        self.notify(kind, reason, message);
    }

    fn push_history(&mut self, reason: &str, message: String) {
        let entry = HistoryEntry {
            at: self.now,
            phase: self.s.phase,
            step: self.s.step,
            canary_weight: self.weight_shown(),
            reason: reason.into(),
            message: message.into_boxed_str(),
        };
        self.s.history.push(entry);
        if self.s.history.len() > HISTORY_LIMIT {
            let excess = self.s.history.len() - HISTORY_LIMIT;
            self.s.history.drain(..excess);
        }
    }

    /// Records a change and announces it.
    pub(crate) fn announce(&mut self, kind: TransitionKind, reason: &str, message: String) {
        self.record(reason, message.clone());
        self.notify(kind, reason, message);
    }

    fn notify(&mut self, kind: TransitionKind, reason: &str, message: String) {
        self.actions.push(Action::Notify(Transition {
            kind,
            at: self.now,
            revision: self.plan.revision().to_owned(),
            phase: self.s.phase,
            step: self.s.step,
            canary_weight: self.weight_shown(),
            reason: reason.to_owned(),
            message,
        }));
    }

    /// The weight a reader cares about: the target while a write is in flight.
    fn weight_shown(&self) -> u8 {
        self.s
            .target
            .map_or(self.s.canary_weight, |t| t.canary_weight)
    }

    /// `Step 2/4 (30%)` for messages.
    pub(crate) fn step_label(&self) -> String {
        format!(
            "step {}/{} ({}%)",
            // Saturating: a stored status may hold any step.
            self.s.step.saturating_add(1),
            self.plan.steps().len(),
            self.plan.step(self.s.step).weight
        )
    }

    fn update_conditions(&mut self) {
        let now = self.now;
        let revision = self.plan.revision();
        let crate::policy::RolloutStatus {
            conditions,
            reason,
            message,
            last_analysis,
            phase,
            ..
        } = &mut self.s;
        let accepted = conditions
            .iter()
            .any(|c| c.type_ == reasons::ACCEPTED && c.message.ends_with(revision));
        let refused = matches!(phase, Phase::Pending | Phase::Waiting)
            && reason.as_deref() == Some(reasons::CANARY_IS_LIVE);
        if refused {
            set_condition(
                conditions,
                reasons::ACCEPTED,
                "False",
                reasons::CANARY_IS_LIVE,
                message.as_deref().unwrap_or_default(),
                now,
            );
        } else if !accepted {
            set_condition(
                conditions,
                reasons::ACCEPTED,
                "True",
                reasons::REVISION_ACCEPTED,
                &format!("accepted revision {revision}"),
                now,
            );
        }
        let progressing = match phase {
            _ if refused => "False",
            Phase::Pending | Phase::Waiting | Phase::Checking | Phase::Progressing => "True",
            Phase::RollingBack => "True",
            Phase::Paused | Phase::Held => "Unknown",
            Phase::Promoted | Phase::RolledBack | Phase::Aborted => "False",
        };
        set_condition(
            conditions,
            reasons::PROGRESSING,
            progressing,
            reason.as_deref().unwrap_or_default(),
            message.as_deref().unwrap_or_default(),
            now,
        );
        if let Some(analysis) = last_analysis {
            let status = match analysis.verdict {
                crate::policy::status::VerdictKind::Pass => "True",
                crate::policy::status::VerdictKind::Fail => "False",
                crate::policy::status::VerdictKind::Inconclusive => "Unknown",
            };
            set_condition(
                conditions,
                reasons::HEALTHY,
                status,
                &analysis.reason,
                &analysis.message,
                now,
            );
        }
    }
}

/// Sets a condition; `lastTransitionTime` moves only when the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.status = status.into();
                c.last_transition_time = now;
            }
            // Reuse the buffer: this runs on every recorded change.
            if c.reason != reason {
                c.reason = reason.into();
            }
            if c.message != message {
                c.message.clear();
                c.message.push_str(message);
            }
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.to_owned(),
            observed_generation: None,
            last_transition_time: now,
        }),
    }
}
