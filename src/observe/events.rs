//! Kubernetes Events for rollout transitions, through kube's `Recorder` (reporter
//! `shiftgate`, instance = the pod). Only transitions become Events, never individual
//! evaluations, so `kubectl describe` stays readable and the API server is not flooded.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;

/// One transition worth telling a human about. Notes carry numbers (weight, verdict);
/// the Grafana link is appended by [`EventPublisher::publish`].
#[derive(Clone, Debug, PartialEq)]
pub enum RolloutEvent {
    RolloutStarted {
        revision: String,
    },
    StepAdvanced {
        step: u32,
        weight: u8,
        message: String,
    },
    Promoted {
        revision: String,
    },
    Paused {
        message: String,
    },
    RolledBack {
        reason: String,
        message: String,
    },
    Held {
        message: String,
    },
    Aborted {
        message: String,
    },
    AnalysisInconclusive {
        message: String,
    },
    DriftDetected {
        message: String,
    },
    RouteConflict {
        message: String,
    },
    RouteInvalid {
        message: String,
    },
    InvalidPolicy {
        messages: Vec<String>,
    },
    /// An operator command was refused (another revision, no revision, unknown word).
    CommandRefused {
        message: String,
    },
    /// A notification or Grafana annotation was not delivered (`spec.notify`).
    NotificationFailed {
        message: String,
    },
}

/// Events' notes are limited to 1 kB by the API server.
const MAX_NOTE_BYTES: usize = 1024;

impl RolloutEvent {
    /// PascalCase reason (≤ 128 characters), the `Reason` column of `kubectl describe`.
    pub fn reason(&self) -> &'static str {
        match self {
            RolloutEvent::RolloutStarted { .. } => "RolloutStarted",
            RolloutEvent::StepAdvanced { .. } => "StepAdvanced",
            RolloutEvent::Promoted { .. } => "Promoted",
            RolloutEvent::Paused { .. } => "Paused",
            RolloutEvent::RolledBack { .. } => "RolledBack",
            RolloutEvent::Held { .. } => "Held",
            RolloutEvent::Aborted { .. } => "Aborted",
            RolloutEvent::AnalysisInconclusive { .. } => "AnalysisInconclusive",
            RolloutEvent::DriftDetected { .. } => "DriftDetected",
            RolloutEvent::RouteConflict { .. } => "RouteConflict",
            RolloutEvent::RouteInvalid { .. } => "RouteInvalid",
            RolloutEvent::InvalidPolicy { .. } => "InvalidPolicy",
            RolloutEvent::CommandRefused { .. } => "CommandRefused",
            RolloutEvent::NotificationFailed { .. } => "NotificationFailed",
        }
    }

    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            RolloutEvent::RolledBack { .. }
                | RolloutEvent::Held { .. }
                | RolloutEvent::Aborted { .. }
                | RolloutEvent::AnalysisInconclusive { .. }
                | RolloutEvent::DriftDetected { .. }
                | RolloutEvent::RouteConflict { .. }
                | RolloutEvent::RouteInvalid { .. }
                | RolloutEvent::InvalidPolicy { .. }
                | RolloutEvent::CommandRefused { .. }
                | RolloutEvent::NotificationFailed { .. }
        )
    }

    /// What shiftgate did, PascalCase (the Event's `action`).
    fn action(&self) -> &'static str {
        match self {
            RolloutEvent::RolloutStarted { .. } => "StartRollout",
            RolloutEvent::StepAdvanced { .. } => "SetWeight",
            RolloutEvent::Promoted { .. } => "Promote",
            RolloutEvent::Paused { .. } | RolloutEvent::Held { .. } => "Pause",
            RolloutEvent::RolledBack { .. } | RolloutEvent::Aborted { .. } => "Rollback",
            RolloutEvent::AnalysisInconclusive { .. } => "Analyse",
            RolloutEvent::DriftDetected { .. } => "ReadRoute",
            RolloutEvent::RouteConflict { .. }
            | RolloutEvent::RouteInvalid { .. }
            | RolloutEvent::InvalidPolicy { .. }
            | RolloutEvent::CommandRefused { .. } => "Refuse",
            RolloutEvent::NotificationFailed { .. } => "Notify",
        }
    }

    /// The human-readable note, with the dashboard link when there is one, cut to 1 kB.
    pub fn note(&self, grafana_link: Option<&str>) -> String {
        let mut note = match self {
            RolloutEvent::RolloutStarted { revision } => {
                format!("rollout of revision {revision} started")
            }
            RolloutEvent::StepAdvanced {
                weight, message, ..
            } => format!("{message}; canary weight {weight}%"),
            RolloutEvent::Promoted { revision } => {
                format!("revision {revision} promoted: canary weight 100%")
            }
            RolloutEvent::RolledBack { reason, message } => {
                format!("rolled back ({reason}): canary weight 0%; {message}")
            }
            RolloutEvent::Paused { message }
            | RolloutEvent::Held { message }
            | RolloutEvent::Aborted { message }
            | RolloutEvent::AnalysisInconclusive { message }
            | RolloutEvent::DriftDetected { message }
            | RolloutEvent::RouteConflict { message }
            | RolloutEvent::RouteInvalid { message }
            | RolloutEvent::CommandRefused { message }
            | RolloutEvent::NotificationFailed { message } => message.clone(),
            RolloutEvent::InvalidPolicy { messages } => {
                format!(
                    "policy refused, nothing was changed: {}",
                    messages.join("; ")
                )
            }
        };
        if let Some(link) = grafana_link {
            note.push_str("; dashboard: ");
            note.push_str(link);
        }
        truncate_to_bytes(note, MAX_NOTE_BYTES)
    }
}

fn truncate_to_bytes(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push('…');
    text
}

/// Publishes [`RolloutEvent`]s as `events.k8s.io/v1` Events.
#[derive(Clone)]
pub struct EventPublisher {
    recorder: Recorder,
}

impl EventPublisher {
    /// `instance` is the pod name, so an Event names the replica that acted.
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: "shiftgate".to_owned(),
            instance: Some(instance.to_owned()),
        };
        EventPublisher {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes one Event about `regarding`. A failure is logged, never fatal: the
    /// status already records the transition.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        event: &RolloutEvent,
        grafana_link: Option<&str>,
    ) {
        // kube's recorder folds an Event into an earlier one with the same reason and
        // action about the same object (bumping its series count, keeping the first
        // note) for minutes: naming the step in `fieldPath` keeps each step's advance
        // its own Event, with its own note.
        let mut regarding = regarding.clone();
        if let RolloutEvent::StepAdvanced { step, .. } = event {
            regarding.field_path = Some(format!("spec.steps[{step}]"));
        }
        let regarding = &regarding;
        let kube_event = Event {
            type_: if event.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason().to_owned(),
            note: Some(event.note(grafana_link)),
            action: event.action().to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&kube_event, regarding).await {
            tracing::warn!(
                reason = event.reason(),
                namespace = regarding.namespace.as_deref().unwrap_or(""),
                name = regarding.name.as_deref().unwrap_or(""),
                error = %error,
                "cannot publish event"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_carry_numbers_and_link_and_fit_in_one_kilobyte() {
        let event = RolloutEvent::StepAdvanced {
            step: 2,
            weight: 30,
            message: "step 3/4 (30%) from 10%: analysis passed".to_owned(),
        };
        assert_eq!(event.reason(), "StepAdvanced");
        assert!(!event.is_warning());
        let note = event.note(Some("https://g/d/x"));
        assert_eq!(
            note,
            "step 3/4 (30%) from 10%: analysis passed; canary weight 30%; dashboard: https://g/d/x"
        );
        let long = RolloutEvent::InvalidPolicy {
            messages: vec!["é".repeat(2000)],
        };
        assert!(long.is_warning());
        assert!(long.note(None).len() <= MAX_NOTE_BYTES);
    }
}
