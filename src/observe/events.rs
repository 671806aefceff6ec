//! Kubernetes Events for rollout transitions, as kube's `Recorder` writes them (reporter
//! `shiftgate`, instance = the pod). Only transitions become Events, never individual
//! evaluations, so `kubectl describe` stays readable and the API server is not flooded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
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

/// How long an Event stays open for repeats (folded into its series), as kube's recorder.
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// Expired Events are swept at most this often, not on every publish: the sweep walks
/// every open Event, which at thousands of rollouts cost more than the publish itself.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_mins(1);

/// What makes two publishes the same Event (then the second bumps the first's series):
/// kube's recorder's key, minus the reporter (one per publisher).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    warning: bool,
    reason: &'static str,
    action: &'static str,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    field_path: Option<String>,
}

/// One open Event: its object name, how often it happened, when it was last seen.
struct OpenEvent {
    name: String,
    namespace: String,
    count: i32,
    last: Timestamp,
}

#[derive(Default)]
struct Series {
    open: HashMap<SeriesKey, OpenEvent>,
    swept_at: Option<Timestamp>,
}

/// Publishes [`RolloutEvent`]s as `events.k8s.io/v1` Events, as kube's `Recorder` does
/// (a repeat within six minutes bumps the first Event's series), but with a lookup per
/// publish instead of a sweep of every open Event.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    series: Arc<Mutex<Series>>,
}

impl EventPublisher {
    /// `instance` is the pod name, so an Event names the replica that acted.
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: "shiftgate".to_owned(),
            instance: Some(instance.to_owned()),
        };
        EventPublisher {
            client,
            reporter,
            series: Arc::default(),
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
        // A repeat folds into an earlier Event with the same reason and action about
        // the same object (bumping its series count, keeping the first note) for
        // minutes: naming the step in `fieldPath` keeps each step's advance its own
        // Event, with its own note.
        let mut regarding = regarding.clone();
        if let RolloutEvent::StepAdvanced { step, .. } = event {
            regarding.field_path = Some(format!("spec.steps[{step}]"));
        }
        if let Err(error) = self.send(&regarding, event, grafana_link).await {
            tracing::warn!(
                reason = event.reason(),
                namespace = regarding.namespace.as_deref().unwrap_or(""),
                name = regarding.name.as_deref().unwrap_or(""),
                error = %error,
                "cannot publish event"
            );
        }
    }

    async fn send(
        &self,
        regarding: &ObjectReference,
        event: &RolloutEvent,
        grafana_link: Option<&str>,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = SeriesKey {
            warning: event.is_warning(),
            reason: event.reason(),
            action: event.action(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
            field_path: regarding.field_path.clone(),
        };
        let repeat = {
            let mut series = lock(&self.series);
            series.sweep(now);
            series.open.get_mut(&key).and_then(|open| {
                let alive = open.last.checked_add(SERIES_TTL).is_ok_and(|end| end > now);
                alive.then(|| {
                    open.count = open.count.saturating_add(1);
                    open.last = now;
                    (open.name.clone(), open.namespace.clone(), open.count)
                })
            })
        };
        if let Some((name, namespace, count)) = repeat {
            let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({
                "series": { "count": count, "lastObservedTime": MicroTime(now) }
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Ok(());
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let stamp = now;
        let name = format!(
            "{}.{:x}",
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
            stamp.as_nanosecond()
        );
        let object = K8sEvent {
            action: Some(event.action().to_owned()),
            reason: Some(event.reason().to_owned()),
            event_time: Some(MicroTime(stamp)),
            regarding: Some(regarding.clone()),
            note: Some(event.note(grafana_link)),
            metadata: kube::api::ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                ..Default::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                if event.is_warning() {
                    "Warning"
                } else {
                    "Normal"
                }
                .to_owned(),
            ),
            ..Default::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &object).await?;
        lock(&self.series).open.insert(
            key,
            OpenEvent {
                name,
                namespace,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

impl Series {
    fn sweep(&mut self, now: Timestamp) {
        let due = self
            .swept_at
            .and_then(|at| at.checked_add(SWEEP_EVERY).ok())
            .is_none_or(|next| next <= now);
        if !due {
            return;
        }
        self.swept_at = Some(now);
        self.open
            .retain(|_, open| open.last.checked_add(SERIES_TTL).is_ok_and(|end| end > now));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps stay usable after a panic elsewhere.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
