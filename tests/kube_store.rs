//! The Kubernetes status store and command source against the test API server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use serde_json::{json, Value};
use shiftgate::engine::{Command, OperatorCommand};
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::{Phase, RolloutPolicy, RolloutStatus};
use shiftgate::runtime::commands_kube::{submit_command, KubeCommandSource};
use shiftgate::runtime::{CommandSource, CommandSourceError};
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::store::{StateStore, StoreError};
use shiftgate::testkit::apiserver::{Fault, FaultKind, ResourceRef, TestApiServer};

const NS: &str = "shop";

fn policy_ref() -> PolicyRef {
    PolicyRef {
        namespace: NS.into(),
        name: "checkout".into(),
    }
}

fn resource() -> ResourceRef {
    ResourceRef::of::<RolloutPolicy>()
}

async fn server_with_policy() -> TestApiServer {
    let server = TestApiServer::start().await.unwrap();
    server
        .put_object(
            &resource(),
            json!({
                "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
                "metadata": { "name": "checkout", "namespace": NS },
                "spec": { "revision": "v2", "steps": [0, 30, 100] },
            }),
        )
        .unwrap();
    server
}

fn stored(server: &TestApiServer) -> Value {
    server
        .get_object(&resource(), Some(NS), "checkout")
        .unwrap()
}

fn progressing(weight: u8) -> RolloutStatus {
    RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Progressing,
        step: 1,
        canary_weight: weight,
        ..RolloutStatus::default()
    }
}

#[tokio::test]
async fn saves_and_loads_status_conditionally_on_the_resource_version() {
    let server = server_with_policy().await;
    let store = KubeStatusStore::new(server.client().unwrap());
    let policy = policy_ref();
    assert!(store.load(&policy).await.unwrap().is_none());

    let v1 = store.save(&policy, &progressing(30), None).await.unwrap();
    let (status, version) = store.load(&policy).await.unwrap().unwrap();
    assert_eq!((status, &version), (progressing(30), &v1));
    assert_eq!(stored(&server)["spec"]["revision"], "v2", "spec untouched");

    // The write is a JSON Patch of /status that tests the version read.
    let patch = server.requests_matching("PATCH", "/rolloutpolicies/checkout/status");
    let last = patch.last().unwrap();
    assert_eq!(
        last.content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert!(
        last.path.contains("fieldManager=shiftgate"),
        "{}",
        last.path
    );
    let ops = last.json().unwrap();
    assert_eq!(ops[0]["op"], "test");
    assert_eq!(ops[0]["path"], "/metadata/resourceVersion");

    let v2 = store
        .save(&policy, &progressing(60), Some(&v1))
        .await
        .unwrap();
    assert_ne!(v1, v2);
    // A stale version: conflict, and the newer state survives.
    let err = store
        .save(&policy, &progressing(100), Some(&v1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(stored(&server)["status"]["canaryWeight"], 60);
    // "No state yet" while there is state: conflict too.
    let err = store
        .save(&policy, &progressing(100), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
}

#[tokio::test]
async fn a_concurrent_edit_of_the_policy_is_a_conflict_not_an_overwrite() {
    let server = server_with_policy().await;
    let store = KubeStatusStore::new(server.client().unwrap());
    let policy = policy_ref();
    let v1 = store.save(&policy, &progressing(30), None).await.unwrap();
    // Someone edits the spec: the object's resourceVersion moves on.
    let mut edited = stored(&server);
    edited["spec"]["revision"] = json!("v3");
    server.put_object(&resource(), edited).unwrap();
    let err = store
        .save(&policy, &progressing(60), Some(&v1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(stored(&server)["status"]["canaryWeight"], 30);
    assert_eq!(stored(&server)["spec"]["revision"], "v3");
}

#[tokio::test]
async fn api_failures_are_conflicts_only_when_the_object_changed() {
    let server = server_with_policy().await;
    let store = KubeStatusStore::new(server.client().unwrap());
    let policy = policy_ref();
    let v1 = store.save(&policy, &progressing(30), None).await.unwrap();

    server.inject(Fault::new("PATCH", "/status", FaultKind::Status(409), 1));
    let err = store
        .save(&policy, &progressing(60), Some(&v1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    // A 422 that is not a failed `test` (the object did not change) is not a conflict.
    server.inject(Fault::new("PATCH", "/status", FaultKind::Status(422), 1));
    let err = store
        .save(&policy, &progressing(60), Some(&v1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");

    server.inject(Fault::new("PATCH", "/status", FaultKind::Status(500), 1));
    let err = store
        .save(&policy, &progressing(60), Some(&v1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(
        stored(&server)["status"]["canaryWeight"],
        30,
        "nothing written"
    );

    server.inject(Fault::new(
        "GET",
        "/rolloutpolicies/checkout",
        FaultKind::DropConnection,
        1,
    ));
    let err = store.load(&policy).await.unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");

    // After all that, the store still works from the version it read.
    store
        .save(&policy, &progressing(60), Some(&v1))
        .await
        .unwrap();
}

#[tokio::test]
async fn corrupt_status_and_missing_policies_are_reported_with_their_location() {
    let server = server_with_policy().await;
    let store = KubeStatusStore::new(server.client().unwrap());
    let policy = policy_ref();
    let mut broken = stored(&server);
    broken["status"] = json!({ "phase": "Sideways" });
    server.put_object(&resource(), broken).unwrap();
    let err = store.load(&policy).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("shop/checkout"), "{err}");

    let gone = PolicyRef {
        namespace: NS.into(),
        name: "gone".into(),
    };
    let err = store.load(&gone).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// The id, word and revision of each pending command.
fn seen(commands: &[OperatorCommand]) -> Vec<(String, Command, Option<String>)> {
    commands
        .iter()
        .map(|c| (c.id.clone(), c.command.clone().unwrap(), c.revision.clone()))
        .collect()
}

#[tokio::test]
async fn a_command_is_pending_until_a_state_that_handled_it_is_saved() {
    let server = server_with_policy().await;
    let client = server.client().unwrap();
    let store = KubeStatusStore::new(client.clone());
    let commands = KubeCommandSource::new(client.clone());
    let policy = policy_ref();
    assert!(commands.pending(&policy, None).await.unwrap().is_empty());

    let v1 = store.save(&policy, &progressing(30), None).await.unwrap();
    let submitted = submit_command(client.clone(), NS, "checkout", Command::Pause, "v2")
        .await
        .unwrap();
    let annotations = &stored(&server)["metadata"]["annotations"];
    assert_eq!(annotations["shiftgate.dev/command"], "pause");
    assert_eq!(annotations["shiftgate.dev/command-id"], json!(submitted.id));
    assert_eq!(annotations["shiftgate.dev/command-revision"], "v2");

    // The annotation write moved the version: the reconciler re-reads, then reads it.
    let (_, version) = store.load(&policy).await.unwrap().unwrap();
    assert_ne!(version, v1);
    let expected = vec![(submitted.id.clone(), Command::Pause, Some("v2".into()))];
    assert_eq!(
        seen(&commands.pending(&policy, None).await.unwrap()),
        expected
    );
    // Until a state that handled it is saved, every reader (a restart) sees it again.
    assert_eq!(
        seen(&commands.pending(&policy, None).await.unwrap()),
        expected
    );
    let mut paused = progressing(30);
    paused.phase = Phase::Paused;
    paused.last_command_id = Some(submitted.id.clone());
    store.save(&policy, &paused, Some(&version)).await.unwrap();
    assert_eq!(
        stored(&server)["status"]["lastCommandId"],
        json!(submitted.id)
    );
    let (loaded, _) = store.load(&policy).await.unwrap().unwrap();
    assert_eq!(loaded, paused);
    let handled = loaded.last_command_id.as_deref();
    assert!(commands.pending(&policy, handled).await.unwrap().is_empty());
}

#[tokio::test]
async fn malformed_command_annotations_are_reported_or_handed_over_to_be_refused() {
    let server = server_with_policy().await;
    let client = server.client().unwrap();
    let commands = KubeCommandSource::new(client);
    let policy = policy_ref();
    let mut annotated = stored(&server);
    annotated["metadata"]["annotations"] = json!({ "shiftgate.dev/command": "pause" });
    server.put_object(&resource(), annotated.clone()).unwrap();
    let err = commands.pending(&policy, None).await.unwrap_err();
    assert!(matches!(err, CommandSourceError::Invalid { .. }), "{err}");
    assert!(
        err.to_string().contains("shiftgate.dev/command-id"),
        "{err}"
    );

    // An unknown word, or no revision (the old format), has an id: the engine refuses it.
    annotated["metadata"]["annotations"] =
        json!({ "shiftgate.dev/command": "explode", "shiftgate.dev/command-id": "7" });
    server.put_object(&resource(), annotated).unwrap();
    let pending = commands.pending(&policy, None).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].command.is_err(), "{pending:?}");
    assert_eq!(pending[0].revision, None);
    assert!(commands
        .pending(&policy, Some("7"))
        .await
        .unwrap()
        .is_empty());

    server.inject(Fault::new(
        "GET",
        "/rolloutpolicies/checkout",
        FaultKind::Status(500),
        1,
    ));
    let err = commands.pending(&policy, None).await.unwrap_err();
    assert!(
        matches!(err, CommandSourceError::Unavailable { .. }),
        "{err}"
    );
}

/// The reconciler driving a policy whose state lives in the cluster: an operator's
/// `pause` written by the CLI takes effect once, and a restarted daemon (new store, new
/// command source, new reconciler) neither replays it nor loses the state.
#[tokio::test]
async fn the_reconciler_applies_an_annotation_command_once_across_restarts() {
    use std::sync::Arc;

    use shiftgate::metrics::scripted::{MetricScript, ScriptedMetrics, Traffic};
    use shiftgate::router::memory::MemoryRouter;
    use shiftgate::router::ManagedRoute;
    use shiftgate::runtime::checks::ScriptedChecks;
    use shiftgate::runtime::{Reconciler, Seams, VirtualClock};

    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/istio-host-canary.yaml"),
    )
    .unwrap();
    let mut policy: Value = serde_yaml_ng::from_str(&text).unwrap();
    policy["metadata"] = json!({ "name": "checkout", "namespace": NS });
    let spec: RolloutPolicy = serde_json::from_value(policy.clone()).unwrap();
    let spec = spec.spec;
    let server = TestApiServer::start().await.unwrap();
    server.put_object(&resource(), policy).unwrap();
    let client = server.client().unwrap();

    let start = chrono::DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let clock = Arc::new(VirtualClock::new(start));
    let router = Arc::new(MemoryRouter::new(ManagedRoute {
        canary_weight: 0,
        test_route: false,
    }));
    let daemon = |client: kube::Client| {
        let store = KubeStatusStore::new(client.clone());
        let commands = KubeCommandSource::new(client);
        let script = MetricScript {
            start,
            traffic: Traffic::default(),
            metrics: Default::default(),
            outages: Vec::new(),
        };
        Reconciler::new(Seams {
            router: router.clone(),
            metrics: Arc::new(ScriptedMetrics::new(script, router.clone(), 7)),
            store: Arc::new(store),
            checks: Arc::new(ScriptedChecks::passing()),
            commands: Arc::new(commands),
            clock: clock.clone(),
        })
    };
    let policy = policy_ref();
    let first = daemon(client.clone());
    for _ in 0..3 {
        first.tick(&policy, &spec).await.unwrap();
        clock.advance(chrono::Duration::seconds(1));
    }
    let submitted = submit_command(client.clone(), NS, "checkout", Command::Pause, "2.4.0")
        .await
        .unwrap();
    let outcome = first.tick(&policy, &spec).await.unwrap();
    assert_eq!(
        outcome.status.phase,
        Phase::Paused,
        "{:?}",
        outcome.problems
    );
    assert_eq!(stored(&server)["status"]["phase"], "Paused");
    assert_eq!(
        stored(&server)["status"]["lastCommandId"],
        json!(submitted.id)
    );

    // Restart: a new daemon resumes from the stored state and does not replay `pause`.
    let second = daemon(client.clone());
    let version_before = stored(&server)["metadata"]["resourceVersion"].clone();
    let outcome = second.tick(&policy, &spec).await.unwrap();
    assert_eq!(outcome.status.phase, Phase::Paused);
    assert!(outcome.transitions.is_empty(), "{:?}", outcome.transitions);
    assert_eq!(
        stored(&server)["metadata"]["resourceVersion"],
        version_before,
        "nothing rewritten"
    );

    // `resume` through the same path continues the rollout.
    submit_command(client.clone(), NS, "checkout", Command::Resume, "2.4.0")
        .await
        .unwrap();
    let outcome = second.tick(&policy, &spec).await.unwrap();
    assert_ne!(
        outcome.status.phase,
        Phase::Paused,
        "{:?}",
        outcome.problems
    );
}
