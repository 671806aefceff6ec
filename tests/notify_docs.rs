//! docs/notifications.md shows what is sent: its three examples (JSON, Slack, Teams)
//! are exactly the bodies built for the rollback they describe, and every field of the
//! JSON document is in its field table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use shiftgate::engine::{Transition, TransitionKind};
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::status::{AnalysisSummary, MetricSummary, VerdictKind};
use shiftgate::policy::{NotifyEvent, NotifyFormat, Phase, RolloutSpec, RolloutStatus};
use shiftgate::runtime::notify_payload::{body, event_of, Notification};

fn docs() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/notifications.md"
    ))
    .unwrap()
}

/// The ```json blocks of the page, in order.
fn examples(docs: &str) -> Vec<Value> {
    docs.split("```json\n")
        .skip(1)
        .map(|block| serde_json::from_str(&block[..block.find("```").unwrap()]).unwrap())
        .collect()
}

/// The rollback the page describes.
fn rollback() -> Notification {
    let spec: RolloutSpec = serde_json::from_value(json!({
        "revision": "v2",
        "router": { "istio": { "virtualService": "checkout",
            "stable": { "host": "checkout", "subset": "v1" },
            "canary": { "host": "checkout", "subset": "v2" } } },
        "steps": [0, 30, 100],
        "analysis": { "metrics": [
            { "name": "error-rate", "template": "istio-error-rate", "max": 0.05 },
            { "name": "errors-vs-stable", "template": "istio-error-rate",
              "compare": { "maxIncrease": 0.01 }, "judge": "threshold" }
        ] }
    }))
    .unwrap();
    let at = serde_json::from_value(json!("2026-03-01T10:04:30Z")).unwrap();
    let status = RolloutStatus {
        last_analysis: Some(AnalysisSummary {
            at,
            verdict: VerdictKind::Fail,
            reason: "MetricFailed".into(),
            message: "error-rate 0.31 > max 0.05".into(),
            canary_requests: Some(1840.0),
            metrics: vec![
                MetricSummary {
                    name: "error-rate".into(),
                    canary: Some(0.31),
                    stable: None,
                    verdict: VerdictKind::Fail,
                    reason: "AboveMax".into(),
                    message: "0.31 > max 0.05".into(),
                    evidence: None,
                },
                MetricSummary {
                    name: "errors-vs-stable".into(),
                    canary: Some(0.31),
                    stable: Some(0.002),
                    verdict: VerdictKind::Fail,
                    reason: "AboveStable".into(),
                    message: "0.31 is 0.308 above stable 0.002 > maxIncrease 0.01".into(),
                    evidence: None,
                },
            ],
        }),
        ..RolloutStatus::default()
    };
    let transition = Transition {
        kind: TransitionKind::RolledBack,
        at,
        revision: "v2".into(),
        phase: Phase::RolledBack,
        step: 1,
        canary_weight: 0,
        reason: "RolledBack".into(),
        message: "every request is back on stable; cause: error-rate 0.31 > max 0.05".into(),
    };
    let event = event_of(&transition).unwrap();
    assert_eq!(event, NotifyEvent::RolledBack);
    let policy = PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    };
    let link = "https://grafana.example/d/shiftgate-rollout?var-namespace=shop&var-name=checkout&from=1772359140000&to=now";
    Notification::new(
        &policy,
        &spec,
        &status,
        &transition,
        event,
        Some(link.into()),
    )
}

#[test]
fn the_documented_examples_are_what_is_sent() {
    let docs = docs();
    let examples = examples(&docs);
    let notification = rollback();
    let sent = [NotifyFormat::Json, NotifyFormat::Slack, NotifyFormat::Teams]
        .map(|format| body(format, &notification));
    for (i, (documented, sent)) in examples.iter().zip(&sent).enumerate() {
        assert_eq!(
            documented,
            sent,
            "example {i} differs from what is sent:\n{}",
            serde_json::to_string_pretty(sent).unwrap()
        );
    }
    assert!(examples.len() >= 3, "three examples: json, slack, teams");
    let mut fields: Vec<String> = examples[0].as_object().unwrap().keys().cloned().collect();
    fields.extend(examples[0]["analysis"].as_object().unwrap().keys().cloned());
    fields.extend(
        examples[0]["analysis"]["metrics"][1]
            .as_object()
            .unwrap()
            .keys()
            .cloned(),
    );
    for field in fields {
        assert!(
            docs.contains(&format!("| `{field}`")),
            "{field} is not in a field table"
        );
    }
    for event in NotifyEvent::ALL {
        assert!(
            docs.contains(&format!("`{event}`")),
            "event {event} undocumented"
        );
    }
}
