//! Regression tests: see tests/regression.rs.
//!
//! The real-API-server side of issue "trust" §5 is in tests/real_apiserver*.rs; these
//! are the defects that the in-repo test API server and pure code can pin down.

use chrono::TimeZone as _;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Resource as _;
use serde_json::{json, Value};
use shiftgate::engine::{step, Observation, Plan};
use shiftgate::observe::events::{EventPublisher, RolloutEvent};
use shiftgate::policy::{Phase, RolloutPolicy, RolloutSpec, RolloutStatus};
use shiftgate::router::ManagedRoute;
use shiftgate::testkit::apiserver::TestApiServer;

fn three_step_spec() -> RolloutSpec {
    serde_json::from_value(json!({
        "revision": "v2",
        "router": { "istio": {
            "virtualService": "checkout",
            "stable": { "host": "checkout", "subset": "v1" },
            "canary": { "host": "checkout", "subset": "v2" }
        }},
        "steps": [10, 50, 100],
        "analysis": {
            "interval": "30s",
            "prometheus": { "address": "http://127.0.0.1:1" },
            "metrics": [ { "name": "error-rate", "query": "sum(rate(errors[1m]))", "max": 0.01 } ]
        }
    }))
    .unwrap()
}

/// `kubectl get rpol` showed the step index (0-based) while `shiftgate status`, the
/// messages and the Events count from 1: the second step read `1` in the column and
/// `step 2/3` everywhere else.
#[test]
fn printer_column_step_matches_cli_step() {
    let crd = shiftgate::cli::crd::crd_value().unwrap();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap();
    let step_column = columns.iter().find(|c| c["name"] == "Step").unwrap();
    let json_path = step_column["jsonPath"].as_str().unwrap();
    let pointer = json_path.replace('.', "/");

    let spec = three_step_spec();
    let plan = Plan::new(&spec).unwrap();
    let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let at_second_step = RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Progressing,
        step: 1,
        canary_weight: 50,
        step_started_at: Some(now),
        checks_passed: true,
        ..RolloutStatus::default()
    };
    let live = ManagedRoute {
        canary_weight: 50,
        test_route: false,
    };
    let decision = step(&plan, &at_second_step, &Observation::at(now, Ok(live)));
    assert_eq!(decision.state.step, 1, "still on the second step");
    let object = json!({ "status": serde_json::to_value(&decision.state).unwrap() });
    let column = match object.pointer(&pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let cli = shiftgate::runtime::local::describe_progress(&spec, &decision.state, now);
    assert!(cli.contains("step 2/3"), "{cli}");
    assert_eq!(
        column, "2/3",
        "the Step column ({json_path}) must count as the CLI does: {cli}"
    );
}

/// kube's event recorder folds an Event into an earlier one with the same reason and
/// action about the same object for minutes (only the series count moves, the note
/// stays the first one): every StepAdvanced after the first was invisible.
#[tokio::test]
async fn event_notes_are_distinct_per_step() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let mut policy = RolloutPolicy::new("checkout", three_step_spec());
    policy.metadata.namespace = Some("shop".into());
    policy.metadata.uid = Some("6f1c1d9e-0000-0000-0000-000000000001".into());
    let regarding = policy.object_ref(&());
    let publisher = EventPublisher::new(client.clone(), "pod-a");
    for (step, weight) in [(1, 50), (2, 100)] {
        let event = RolloutEvent::StepAdvanced {
            step,
            weight,
            message: format!("step {}/3 ({weight}%) from 10%: analysis passed", step + 1),
        };
        publisher.publish(&regarding, &event, None).await;
    }
    let gvk = GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let events: Api<DynamicObject> = Api::namespaced_with(
        client,
        "shop",
        &ApiResource::from_gvk_with_plural(&gvk, "events"),
    );
    let mut notes: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.data["note"].as_str().map(str::to_owned))
        .collect();
    notes.sort();
    assert_eq!(notes.len(), 2, "one Event per step: {notes:?}");
    assert!(notes[0].starts_with("step 2/3"), "{notes:?}");
    assert!(notes[1].starts_with("step 3/3"), "{notes:?}");
}

/// The real server refuses an `events.k8s.io/v1` Event whose note is over 1 KiB; the
/// test API server stored it, so a publisher that forgot to cut its notes passed here
/// and lost its Events in a cluster.
#[tokio::test]
async fn fake_apiserver_refuses_event_notes_over_one_kib() {
    let server = TestApiServer::start().await.unwrap();
    let gvk = GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let events: Api<DynamicObject> = Api::namespaced_with(
        server.client().unwrap(),
        "shop",
        &ApiResource::from_gvk_with_plural(&gvk, "events"),
    );
    let event = |name: &str, note: String| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": { "name": name, "namespace": "shop" },
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "shiftgate", "reportingInstance": "pod-a",
            "action": "SetWeight", "reason": "StepAdvanced", "type": "Normal",
            "regarding": { "kind": "RolloutPolicy", "namespace": "shop", "name": "checkout" },
            "note": note
        }))
        .unwrap()
    };
    match events
        .create(&PostParams::default(), &event("too-long", "x".repeat(1025)))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("at most 1024"), "{status:?}");
        }
        other => panic!("a 1025-byte note must be refused: {other:?}"),
    }
    events
        .create(&PostParams::default(), &event("fits", "x".repeat(1024)))
        .await
        .unwrap();
}
