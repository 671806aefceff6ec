//! What a notification says (docs/notifications.md): the generic JSON document, and the
//! same facts shaped for Slack and Microsoft Teams. Pure: built from a transition, the
//! status it led to and the spec, with no I/O.

use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::{Transition, TransitionKind};
use crate::metrics::PolicyRef;
use crate::policy::status::{AnalysisSummary, MetricSummary};
use crate::policy::{NotifyEvent, NotifyFormat, Phase, RolloutSpec, RolloutStatus, Timestamp};

/// The `apiVersion` of the JSON document; a new field keeps it, a removed or renamed
/// one changes it.
pub const API_VERSION: &str = "shiftgate.dev/v1";
pub const KIND: &str = "RolloutNotification";

/// The event a transition is announced as, if any: the start of a rollback is not
/// (its end, `rolledBack`, carries the cause), nor drift, a refused command or a
/// refused `confirmPromotion` (Events and the status say those).
pub fn event_of(transition: &Transition) -> Option<NotifyEvent> {
    Some(match transition.kind {
        TransitionKind::Started => NotifyEvent::Started,
        TransitionKind::StepAdvanced => NotifyEvent::StepAdvanced,
        TransitionKind::Paused | TransitionKind::InconclusiveLimit => NotifyEvent::Paused,
        TransitionKind::Resumed => NotifyEvent::Resumed,
        TransitionKind::Held => NotifyEvent::Held,
        TransitionKind::RolledBack if transition.reason == crate::engine::reasons::UNDONE => {
            NotifyEvent::Undone
        }
        TransitionKind::RolledBack => NotifyEvent::RolledBack,
        TransitionKind::Promoted => NotifyEvent::Promoted,
        TransitionKind::Aborted => NotifyEvent::Aborted,
        TransitionKind::RollingBack
        | TransitionKind::Drift
        | TransitionKind::CommandRefused
        | TransitionKind::PromotionNotConfirmed => return None,
    })
}

/// The generic JSON document.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub event: NotifyEvent,
    pub namespace: String,
    pub name: String,
    pub revision: String,
    pub phase: Phase,
    /// 1-based, as `status` shows it.
    pub step: u32,
    pub step_count: usize,
    pub canary_weight: u8,
    pub at: Timestamp,
    /// CamelCase constant, as in the status.
    pub reason: String,
    pub message: String,
    /// The last analysis, for the events it explains (stepAdvanced, paused, held,
    /// rolledBack, promoted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<NotifiedAnalysis>,
    /// The rollout's Grafana dashboard, when `spec.grafana` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grafana: Option<String>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotifiedAnalysis {
    pub verdict: &'static str,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_requests: Option<f64>,
    pub metrics: Vec<NotifiedMetric>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotifiedMetric {
    pub name: String,
    pub verdict: &'static str,
    /// The canary's value (absent: no data).
    pub canary: Option<f64>,
    /// Stable's value, for a comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    /// The policy's criteria for this metric.
    pub limits: Limits,
    pub message: String,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_increase: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
}

impl Notification {
    pub fn new(
        policy: &PolicyRef,
        spec: &RolloutSpec,
        status: &RolloutStatus,
        transition: &Transition,
        event: NotifyEvent,
        grafana: Option<String>,
    ) -> Self {
        let explains = matches!(
            event,
            NotifyEvent::StepAdvanced
                | NotifyEvent::Paused
                | NotifyEvent::Held
                | NotifyEvent::RolledBack
                | NotifyEvent::Promoted
        );
        Notification {
            api_version: API_VERSION,
            kind: KIND,
            event,
            namespace: policy.namespace.clone(),
            name: policy.name.clone(),
            revision: transition.revision.clone(),
            phase: transition.phase,
            step: transition.step.saturating_add(1),
            step_count: spec.steps.len(),
            canary_weight: transition.canary_weight,
            at: transition.at,
            reason: transition.reason.clone(),
            message: transition.message.clone(),
            analysis: status
                .last_analysis
                .as_ref()
                .filter(|_| explains)
                .map(|a| analysis(spec, a)),
            grafana,
        }
    }

    /// One line for people: `shop/checkout v2 rolled back: …`.
    pub fn headline(&self) -> String {
        let what = match self.event {
            NotifyEvent::Started => "rollout started".to_owned(),
            NotifyEvent::StepAdvanced => format!(
                "step {}/{} ({}%)",
                self.step, self.step_count, self.canary_weight
            ),
            NotifyEvent::Paused => "paused".to_owned(),
            NotifyEvent::Resumed => "resumed".to_owned(),
            NotifyEvent::Held => format!("HELD at {}%", self.canary_weight),
            NotifyEvent::RolledBack => "ROLLED BACK".to_owned(),
            NotifyEvent::Promoted => "promoted".to_owned(),
            NotifyEvent::Aborted => "ABORTED".to_owned(),
            NotifyEvent::Undone => "promotion undone".to_owned(),
        };
        format!("{}/{} {}: {what}", self.namespace, self.name, self.revision)
    }

    /// `error-rate: canary 0.31 vs max 0.05 (stable 0.002)` per metric judged.
    pub fn metric_lines(&self) -> Vec<String> {
        let Some(analysis) = &self.analysis else {
            return Vec::new();
        };
        analysis
            .metrics
            .iter()
            .map(|m| {
                let mut line = format!("{} ({}): canary {}", m.name, m.verdict, number(m.canary));
                let l = &m.limits;
                for (label, limit) in [
                    ("min", l.min),
                    ("max", l.max),
                    ("maxIncrease", l.max_increase),
                    ("maxRatio", l.max_ratio),
                ] {
                    if let Some(limit) = limit {
                        line.push_str(&format!(" vs {label} {limit}"));
                    }
                }
                if m.stable.is_some() {
                    line.push_str(&format!(", stable {}", number(m.stable)));
                }
                line
            })
            .collect()
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "no data".to_owned(), |v| v.to_string())
}

fn analysis(spec: &RolloutSpec, analysis: &AnalysisSummary) -> NotifiedAnalysis {
    NotifiedAnalysis {
        verdict: analysis.verdict.as_str(),
        reason: analysis.reason.to_string(),
        message: analysis.message.clone(),
        canary_requests: analysis.canary_requests.filter(|r| r.is_finite()),
        metrics: analysis.metrics.iter().map(|m| metric(spec, m)).collect(),
    }
}

fn metric(spec: &RolloutSpec, summary: &MetricSummary) -> NotifiedMetric {
    let limits = spec
        .analysis
        .metrics
        .iter()
        .find(|m| m.name == summary.name)
        .map(|m| Limits {
            min: m.min,
            max: m.max,
            max_increase: m.compare.as_ref().and_then(|c| c.max_increase),
            max_ratio: m.compare.as_ref().and_then(|c| c.max_ratio),
        })
        .unwrap_or_default();
    NotifiedMetric {
        name: summary.name.clone(),
        verdict: summary.verdict.as_str(),
        // JSON has no NaN: a value that is not a number is no data.
        canary: summary.canary.filter(|v| v.is_finite()),
        stable: summary.stable.filter(|v| v.is_finite()),
        limits,
        message: summary.message.clone(),
    }
}

/// The body for `format`.
pub fn body(format: NotifyFormat, notification: &Notification) -> Value {
    match format {
        NotifyFormat::Json => serde_json::to_value(notification).unwrap_or(Value::Null),
        NotifyFormat::Slack => slack(notification),
        NotifyFormat::Teams => teams(notification),
    }
}

/// Slack incoming webhook: `text` (the fallback shown in notifications) and blocks.
fn slack(n: &Notification) -> Value {
    let headline = n.headline();
    let mut detail = format!("*{headline}*\n{}", n.message);
    for line in n.metric_lines() {
        detail.push_str(&format!("\n• {line}"));
    }
    let mut context = format!(
        "phase {} · step {}/{} · canary {}%",
        n.phase, n.step, n.step_count, n.canary_weight
    );
    if let Some(link) = &n.grafana {
        context.push_str(&format!(" · <{link}|Grafana dashboard>"));
    }
    json!({
        "text": format!("{headline}: {}", n.message),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": detail } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] }
        ]
    })
}

/// Microsoft Teams incoming webhook: a MessageCard.
fn teams(n: &Notification) -> Value {
    let mut facts = vec![
        json!({ "name": "phase", "value": n.phase.to_string() }),
        json!({ "name": "step", "value": format!("{}/{}", n.step, n.step_count) }),
        json!({ "name": "canary weight", "value": format!("{}%", n.canary_weight) }),
    ];
    for line in n.metric_lines() {
        facts.push(json!({ "name": "metric", "value": line }));
    }
    let mut card = json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": n.headline(),
        "themeColor": if n.event.is_warning() { "D70000" } else { "2EB886" },
        "title": n.headline(),
        "text": n.message,
        "sections": [ { "facts": facts } ]
    });
    if let (Some(link), Some(map)) = (&n.grafana, card.as_object_mut()) {
        map.insert(
            "potentialAction".to_owned(),
            json!([{ "@type": "OpenUri", "name": "Grafana dashboard",
                     "targets": [ { "os": "default", "uri": link } ] }]),
        );
    }
    card
}
