//! Issue "trust" §2: no traffic moves without a judgement. One test per defect, each
//! with the least powerful harness that shows it end to end: the simulator (real
//! engine and reconciler, in-memory router and store, virtual clock) for rollout
//! behaviour, the Istio router against the in-repo test API server for the
//! VirtualService, and the route index the daemon consults for ownership.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shiftgate::engine::reasons;
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::parse::parse_file;
use shiftgate::policy::status::{PauseReason, Phase};
use shiftgate::policy::{Destination, IstioApiVersion, IstioRouter as IstioRouterSpec};
use shiftgate::policy::{RolloutPolicy, RolloutSpec};
use shiftgate::router::istio::{IstioRouter, IstioTarget};
use shiftgate::router::{ManagedRoute, RouterError, TrafficRouter, Version};
use shiftgate::runtime::route_index::conflicting_owner;
use shiftgate::sim::{Outcome, Scenario, Simulation};
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The one policy of a shipped file, with its reference.
fn shipped(file: &str) -> (PolicyRef, RolloutSpec) {
    let mut loaded =
        parse_file(&root().join(file)).unwrap_or_else(|d| panic!("{file} is invalid: {d:?}"));
    let policy = loaded.remove(0).policy;
    let reference = PolicyRef {
        namespace: policy.metadata.namespace.clone().unwrap_or_default(),
        name: policy.metadata.name.clone().unwrap_or_default(),
    };
    (reference, policy.spec)
}

fn simulate(file: &str, scenario: &str) -> Simulation {
    let (policy, spec) = shipped(file);
    let scenario = Scenario::parse(scenario, "inline scenario").unwrap();
    Simulation::new(policy, spec, scenario, 1).unwrap()
}

fn every_write(sim: &Simulation) -> Vec<(shiftgate::policy::Duration, u8)> {
    sim.timeline()
        .iter()
        .flat_map(|e| e.writes.iter().map(move |w| (e.at, w.canary_weight)))
        .collect()
}

/// The blue/green policy names green as its canary while green serves every request:
/// the first write would have set green to 0% and moved every user to blue, unjudged.
#[test]
fn live_colour_start_writes_nothing() {
    let sim = simulate(
        "policies/istio-blue-green.yaml",
        "kind: Scenario\n\
         initial: { canaryWeight: 100 }\n\
         maxDuration: 1h\n\
         metrics:\n  error-rate: { canary: [{ value: 0.001 }], stable: [{ value: 0.001 }] }\n\
         restarts: [5m, 30m]\n",
    );
    let report = sim.run();
    let writes: Vec<_> = report.timeline.iter().flat_map(|e| &e.writes).collect();
    assert!(writes.is_empty(), "nothing may be written: {writes:?}");
    assert_eq!(report.outcome, Outcome::Refused, "{:#?}", report.status);
    assert_eq!(report.outcome.exit_code(), 2, "refused is exit 2");
    let status = &report.status;
    assert_eq!(status.phase, Phase::Pending);
    assert_eq!(status.canary_weight, 100);
    let accepted = status
        .conditions
        .iter()
        .find(|c| c.type_ == reasons::ACCEPTED)
        .expect("an Accepted condition");
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", reasons::CANARY_IS_LIVE)
    );
    for part in [
        "canary cowsay-green.web.svc.cluster.local already serves 100%",
        "that is the live colour",
        "every user to cowsay-blue.web.svc.cluster.local, unjudged",
        "Swap stable and canary",
    ] {
        assert!(
            accepted.message.contains(part),
            "{part}: {}",
            accepted.message
        );
    }
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == reasons::PROGRESSING)
        .expect("a Progressing condition");
    assert_eq!(progressing.status, "False");
}

/// Someone moved a canary to 90% (the rollout paused for drift) and it fails half its
/// requests: analysis goes on at the live weight, and the Fail rolls it back.
#[test]
fn drifted_canary_failing_is_rolled_back() {
    let mut sim = simulate(
        "policies/istio-host-canary.yaml",
        "kind: Scenario\n\
         maxDuration: 1h\n\
         traffic: { requestsPerSecond: 100 }\n\
         metrics:\n\
        \x20 error-rate: { canary: [{ value: 0.002 }, { from: 40s, value: 0.5 }], stable: [{ value: 0.002 }] }\n\
        \x20 p99-latency: { canary: [{ value: 180 }] }\n\
        \x20 errors-vs-stable: { canary: [{ value: 0.002 }, { from: 40s, value: 0.5 }], stable: [{ value: 0.002 }] }\n\
         drift: [{ at: 40s, canaryWeight: 90 }]\n\
         restarts: [50m]\n",
    );
    while sim.tick() {}
    let report = sim.report();
    let reasons_seen: Vec<&str> = report
        .timeline
        .iter()
        .flat_map(|e| e.transitions.iter().map(|t| t.reason.as_str()))
        .collect();
    assert!(
        reasons_seen.contains(&reasons::DRIFT_DETECTED),
        "{reasons_seen:?}"
    );
    assert_eq!(report.outcome, Outcome::RolledBack, "{:#?}", report.status);
    assert!(
        reasons_seen.contains(&reasons::ANALYSIS_FAILED),
        "{reasons_seen:?}"
    );
    assert_eq!(
        sim.router().route(),
        ManagedRoute {
            canary_weight: 0,
            test_route: false
        }
    );
    let judged_at_90 = report
        .timeline
        .iter()
        .filter_map(|e| e.analysis.as_ref())
        .any(|a| a.verdict == shiftgate::policy::status::VerdictKind::Fail);
    assert!(judged_at_90, "the drifted canary was judged");
    // Rolled back within minutes of the drift, not at the end of the scenario.
    let rolled_back_at = report
        .timeline
        .iter()
        .find(|e| e.writes.iter().any(|w| w.canary_weight == 0))
        .map(|e| e.at)
        .expect("a rollback write");
    assert!(
        rolled_back_at <= shiftgate::policy::Duration::from_secs(5 * 60),
        "rolled back at {rolled_back_at}"
    );
}

/// The shipped blue/green policy waits at its 0% approval gate for a person. With no
/// user traffic on the canary every evaluation there was Inconclusive, and the fifth one
/// rolled the rollout back minutes into the wait, once it was reconciled again.
#[test]
fn manual_gate_at_zero_is_not_inconclusive() {
    let mut sim = simulate(
        "policies/istio-blue-green.yaml",
        "kind: Scenario\n\
         maxDuration: 2h\n\
         metrics:\n  error-rate: { canary: [{ value: 0.001 }], stable: [{ value: 0.001 }] }\n\
         restarts: [3m, 7m, 15m, 45m, 90m]\n",
    );
    while sim.tick() {}
    let report = sim.report();
    assert_eq!(report.outcome, Outcome::Paused, "{:#?}", report.status);
    let status = sim.stored_status().expect("a stored status");
    assert_eq!(status.pause_reason, Some(PauseReason::ManualGate));
    assert_eq!(status.consecutive_inconclusive, 0);
    assert_eq!(sim.router().route().canary_weight, 0);
    let at_gate: Vec<_> = every_write(&sim);
    assert!(
        at_gate.iter().all(|(_, w)| *w == 0),
        "nothing but the 0% step (and its test route) is written: {at_gate:?}"
    );
    assert!(
        report.timeline.iter().all(|e| e
            .transitions
            .iter()
            .all(|t| t.reason != reasons::INCONCLUSIVE_LIMIT)),
        "waiting at the gate is not inconclusive"
    );
    assert!(
        report.elapsed >= shiftgate::policy::Duration::from_secs(90 * 60),
        "the gate was looked at for 90 minutes, elapsed {}",
        report.elapsed
    );
}

fn vs_resource() -> ResourceRef {
    ResourceRef::new("networking.istio.io", "v1", "virtualservices")
}

/// Two http routes named `primary`, both splitting reviews v1/v2.
fn virtual_service_with_duplicate_names() -> Value {
    let route = |matching: Value| {
        json!({
            "name": "primary",
            "match": matching,
            "route": [
                { "destination": { "host": "reviews", "subset": "v1" }, "weight": 100 },
                { "destination": { "host": "reviews", "subset": "v2" }, "weight": 0 },
            ],
        })
    };
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": "reviews", "namespace": "bookinfo" },
        "spec": {
            "hosts": ["reviews"],
            "http": [
                route(json!([{ "headers": { "end-user": { "exact": "jason" } } }])),
                route(json!([{ "uri": { "prefix": "/" } }])),
            ],
        },
    })
}

/// A VirtualService with two http routes of the managed name: the router refuses to
/// read or write it, and the object is left as it was.
#[tokio::test]
async fn duplicate_route_names_are_refused() {
    let server = TestApiServer::start().await.unwrap();
    server
        .put_object(&vs_resource(), virtual_service_with_duplicate_names())
        .unwrap();
    let before = server
        .get_object(&vs_resource(), Some("bookinfo"), "reviews")
        .unwrap();
    let spec = IstioRouterSpec {
        virtual_service: "reviews".to_owned(),
        colors: Default::default(),
        routes: vec!["primary".to_owned()],
        stable: Destination {
            host: "reviews".to_owned(),
            subset: Some("v1".to_owned()),
            port: None,
        },
        canary: Destination {
            host: "reviews".to_owned(),
            subset: Some("v2".to_owned()),
            port: None,
        },
        api_version: IstioApiVersion::V1,
    };
    let target = IstioTarget::from_policy("reviews", "bookinfo", &spec, None);
    let router = IstioRouter::new(server.client().unwrap(), target)
        .with_call_timeout(Duration::from_secs(5));
    let expected = "virtualservice bookinfo/reviews has 2 http routes named \"primary\" \
                    (spec.http[0], spec.http[1])";
    match router.read().await {
        Err(RouterError::Invalid(message)) => {
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("unique name"), "{message}");
        }
        other => panic!("read must refuse, got {other:?}"),
    }
    let version = Version(
        before["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let write = router
        .apply(
            &version,
            ManagedRoute {
                canary_weight: 30,
                test_route: false,
            },
        )
        .await;
    assert!(
        matches!(&write, Err(RouterError::Invalid(m)) if m.contains(expected)),
        "{write:?}"
    );
    let after = server
        .get_object(&vs_resource(), Some("bookinfo"), "reviews")
        .unwrap();
    assert_eq!(after, before, "nothing was written");
}

fn cluster_policy(name: &str, created: i64, steps: Value) -> Arc<RolloutPolicy> {
    let spec: RolloutSpec = serde_json::from_value(json!({
        "revision": "v2",
        "router": { "istio": {
            "virtualService": "checkout",
            "routes": ["primary"],
            "stable": { "host": "checkout" },
            "canary": { "host": "checkout-canary" },
        }},
        "steps": steps,
        "analysis": {
            "prometheus": { "address": "http://prometheus.istio-system:9090" },
            "metrics": [{ "name": "error-rate", "template": "istio-error-rate", "max": 0.01 }],
        },
    }))
    .unwrap();
    let mut policy = RolloutPolicy::new(name, spec);
    policy.metadata.namespace = Some("shop".to_owned());
    policy.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
        ));
    Arc::new(policy)
}

/// An older policy the daemon refuses as invalid (its weights go down) named the same
/// route as a valid one: the valid one was refused with RouteConflict and nothing ran.
#[test]
fn invalid_policy_owns_no_route() {
    let invalid = cluster_policy("broken", 100, json!([0, 50, 30, 100]));
    let valid = cluster_policy("checkout", 200, json!([0, 30, 100]));
    assert!(
        shiftgate::policy::validate::validate_spec(&invalid.spec)
            .iter()
            .any(|i| i.severity == shiftgate::policy::diagnostic::Severity::Error),
        "the older policy is one the daemon refuses"
    );
    let cache = vec![invalid.clone(), valid.clone()];
    assert_eq!(conflicting_owner(&valid, &cache), None);
    // A valid older policy still owns the route.
    let owner = cluster_policy("owner", 50, json!([0, 30, 100]));
    let cache = vec![owner, invalid, valid.clone()];
    let (holder, _) = conflicting_owner(&valid, &cache).expect("the valid owner keeps it");
    assert_eq!(holder.name, "owner");
}
