//! Grafana annotations of a rollout (`spec.grafana.annotations`), as Grafana's HTTP API
//! takes them: `POST /api/annotations` with `dashboardUID`, `time`, `timeEnd` (epoch
//! milliseconds), `tags` and `text`, answered with the new annotation's `id`; and
//! `PATCH /api/annotations/{id}` with `timeEnd` to end a region. Pure: the requests
//! are built here, sent by `runtime::notify`.
//!
//! Each step is a region: opened when the step starts (its `timeEnd` equal to its
//! `time` until it ends), closed when the next step starts or the rollout ends. The
//! end (promoted, rolled back, aborted, undone) and pauses are point annotations.

use serde_json::{json, Value};

use crate::engine::Transition;
use crate::metrics::PolicyRef;
use crate::policy::NotifyEvent;

/// What one transition asks of Grafana.
#[derive(Clone, Debug, PartialEq)]
pub enum AnnotationRequest {
    /// End the open region of the rollout (if any) at `at`, then open a region for
    /// the step that starts.
    OpenStep(Annotation),
    /// End the open region (if any) at `at`, then post a point annotation.
    Finish(Annotation),
    /// A point annotation; the open region goes on (paused, held, resumed).
    Point(Annotation),
}

impl AnnotationRequest {
    pub fn annotation(&self) -> &Annotation {
        match self {
            AnnotationRequest::OpenStep(a)
            | AnnotationRequest::Finish(a)
            | AnnotationRequest::Point(a) => a,
        }
    }
}

/// One annotation's content.
#[derive(Clone, Debug, PartialEq)]
pub struct Annotation {
    /// Epoch milliseconds.
    pub at_ms: i64,
    pub tags: Vec<String>,
    pub text: String,
}

/// The tags of every annotation of a rollout: `shiftgate`, `namespace:…`, `name:…`,
/// `revision:…` (a dashboard's annotation query filters on them).
pub fn tags(policy: &PolicyRef, revision: &str) -> Vec<String> {
    vec![
        "shiftgate".to_owned(),
        format!("namespace:{}", policy.namespace),
        format!("name:{}", policy.name),
        format!("revision:{revision}"),
    ]
}

/// The request for a transition announced as `event`.
pub fn request_for(
    policy: &PolicyRef,
    transition: &Transition,
    event: NotifyEvent,
) -> AnnotationRequest {
    let annotation = Annotation {
        at_ms: transition.at.timestamp_millis(),
        tags: tags(policy, &transition.revision),
        text: format!(
            "{} {}: {}",
            transition.revision,
            event.as_str(),
            transition.message
        ),
    };
    match event {
        NotifyEvent::Started | NotifyEvent::StepAdvanced => {
            AnnotationRequest::OpenStep(Annotation {
                text: format!(
                    "{} step {} ({}%): {}",
                    transition.revision,
                    transition.step.saturating_add(1),
                    transition.canary_weight,
                    transition.message
                ),
                ..annotation
            })
        }
        NotifyEvent::RolledBack
        | NotifyEvent::Promoted
        | NotifyEvent::Aborted
        | NotifyEvent::Undone => AnnotationRequest::Finish(annotation),
        NotifyEvent::Paused | NotifyEvent::Resumed | NotifyEvent::Held => {
            AnnotationRequest::Point(annotation)
        }
    }
}

/// `{base}/api/annotations`.
pub fn annotations_url(grafana_url: &str) -> String {
    format!("{}/api/annotations", grafana_url.trim_end_matches('/'))
}

/// The body of `POST /api/annotations`; `timeEnd == time` until a region is ended.
pub fn create_body(dashboard_uid: &str, annotation: &Annotation) -> Value {
    json!({
        "dashboardUID": dashboard_uid,
        "time": annotation.at_ms,
        "timeEnd": annotation.at_ms,
        "tags": annotation.tags,
        "text": annotation.text,
    })
}

/// The body of `PATCH /api/annotations/{id}` that ends a region at `at_ms`.
pub fn end_body(at_ms: i64) -> Value {
    json!({ "timeEnd": at_ms })
}

/// The `id` of Grafana's answer to a create (`{"id": 1, "message": "Annotation added"}`).
pub fn created_id(answer: &str) -> Option<u64> {
    serde_json::from_str::<Value>(answer)
        .ok()?
        .get("id")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_answer_of_a_create_gives_the_id_to_end_the_region_with() {
        assert_eq!(
            created_id(r#"{"message":"Annotation added","id":17}"#),
            Some(17)
        );
        assert_eq!(created_id("not json"), None);
        assert_eq!(
            annotations_url("https://grafana.example/"),
            "https://grafana.example/api/annotations"
        );
    }
}
