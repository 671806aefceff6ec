//! shiftgate's install and custom resource against a real kube-apiserver 1.20 (see
//! tests/support/kube_apiserver.rs): `kubectl apply -k deploy/`, the example policies
//! applied as resources, the RolloutPolicy CRD's schema at work (pruning, defaults,
//! validation, printer columns), the status store and command ledger, and the ways the
//! real server differs from the in-repo test API server. One server for the whole
//! file; each test has its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use shiftgate::engine::Command;
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::{Phase, RolloutPolicy, RolloutStatus};
use shiftgate::runtime::commands_kube::{submit_command, KubeCommandSource};
use shiftgate::runtime::CommandSource;
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::store::{StateStore, StoreError};
use support::kube_apiserver::KubeApiServer;

fn server() -> &'static KubeApiServer {
    let server = KubeApiServer::shared();
    server.install();
    server
}

fn policies(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &ApiResource::erase::<RolloutPolicy>(&()))
}

fn policy_object(name: &str, extra_spec: Value) -> DynamicObject {
    let mut spec = json!({
        "revision": "v2",
        "router": { "istio": {
            "virtualService": "checkout",
            "stable": { "host": "checkout", "subset": "v1" },
            "canary": { "host": "checkout", "subset": "v2" }
        }},
        "steps": [10, 50, 100],
        "analysis": {
            "prometheus": { "address": "http://127.0.0.1:1" },
            "metrics": [ { "name": "error-rate", "query": "sum(rate(errors[1m]))", "max": 0.01 } ]
        }
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
        "metadata": { "name": name }, "spec": spec
    }))
    .unwrap()
}

fn api_code(result: Result<DynamicObject, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_k_deploy_installs_everything_and_reapplies_unchanged() {
    let server = server();
    // install() applied deploy/ once; a second apply changes nothing.
    let again = server.apply_deploy();
    for line in again.lines() {
        assert!(
            line.ends_with(" unchanged"),
            "re-apply changed something: {again}"
        );
    }
    assert!(again.lines().count() >= 14, "{again}");
    let objects = server.kubectl_ok(&[
        "get",
        "-n",
        "shiftgate",
        "namespace/shiftgate",
        "serviceaccount/shiftgate",
        "deployment/shiftgate",
        "service/shiftgate",
        "poddisruptionbudget/shiftgate",
        "networkpolicy/shiftgate",
        "role/shiftgate-leader-election",
        "rolebinding/shiftgate-leader-election",
        "clusterrole/shiftgate",
        "clusterrole/shiftgate-aggregate-to-view",
        "clusterrole/shiftgate-aggregate-to-edit",
        "clusterrole/shiftgate-aggregate-to-admin",
        "clusterrolebinding/shiftgate",
        "crd/rolloutpolicies.shiftgate.dev",
        "-o",
        "name",
    ]);
    assert_eq!(objects.lines().count(), 14, "{objects}");
    let labels: Value = serde_json::from_str(&server.kubectl_ok(&[
        "get",
        "namespace/shiftgate",
        "-o",
        "jsonpath={.metadata.labels}",
    ]))
    .unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
}

/// The aggregated roles grant what they say to whoever is bound to them (there is no
/// controller manager here to fold them into `view`/`edit`/`admin`, so each is bound
/// directly): `edit` may create and drive policies, `view` only read, neither writes
/// status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_roles_let_viewers_read_and_editors_drive_policies() {
    let server = server();
    let namespace = server.create_namespace("aggregated-roles").await;
    for role in ["view", "edit"] {
        server.kubectl_ok(&[
            "create",
            "rolebinding",
            &format!("policy-{role}"),
            "-n",
            &namespace,
            &format!("--clusterrole=shiftgate-aggregate-to-{role}"),
            &format!("--user=alice-{role}"),
        ]);
    }
    // `resource` may carry kubectl flags (`--subresource=status`).
    let can = |user: &str, verb: &str, resource: &str| -> bool {
        let as_user = format!("--as={user}");
        let mut args = vec!["auth", "can-i", verb];
        args.extend(resource.split_whitespace());
        args.extend(["-n", &namespace, &as_user]);
        let out = server.kubectl(&args);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    for verb in ["get", "list", "watch"] {
        assert!(
            can("alice-view", verb, "rolloutpolicies.shiftgate.dev"),
            "view {verb}"
        );
    }
    for verb in ["create", "patch", "delete"] {
        assert!(
            !can("alice-view", verb, "rolloutpolicies.shiftgate.dev"),
            "view {verb}"
        );
        assert!(
            can("alice-edit", verb, "rolloutpolicies.shiftgate.dev"),
            "edit {verb}"
        );
    }
    assert!(!can(
        "alice-edit",
        "patch",
        "rolloutpolicies.shiftgate.dev --subresource=status"
    ));
    assert!(
        !can("alice-edit", "get", "secrets"),
        "edit of policies is not edit of Secrets"
    );
}

/// `kubectl get -o wide` shows the reason, the message and the last transition;
/// `kubectl get all` and `kubectl get shiftgate` list policies; `kubectl explain`
/// describes their fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_wide_all_and_explain_show_the_policy() {
    let server = server();
    let namespace = server.create_namespace("printer-columns").await;
    let client = server.admin_client().await;
    policies(client.clone(), &namespace)
        .create(
            &PostParams::default(),
            &policy_object("checkout", json!({})),
        )
        .await
        .unwrap();
    let mut status = progressing(30);
    status.reason = Some("StepAdvanced".into());
    status.message = Some("step 2/3 at 30%".into());
    status.history = vec![shiftgate::policy::status::HistoryEntry {
        at: chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
        phase: Phase::Progressing,
        step: 1,
        canary_weight: 30,
        reason: "StepAdvanced".into(),
        message: "step 2/3 at 30%".into(),
    }];
    KubeStatusStore::new(client)
        .save(&policy_ref(&namespace), &status, None)
        .await
        .unwrap();
    let wide = server.kubectl_ok(&["get", "rolloutpolicies", "-n", &namespace, "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    for column in ["PHASE", "WEIGHT", "REASON", "MESSAGE", "LAST TRANSITION"] {
        assert!(header.contains(column), "{wide}");
    }
    let row = wide.lines().nth(1).unwrap();
    assert!(
        row.contains("StepAdvanced") && row.contains("step 2/3 at 30%"),
        "{wide}"
    );
    for category in ["all", "shiftgate"] {
        let listed = server.kubectl_ok(&["get", category, "-n", &namespace, "-o", "name"]);
        assert!(
            listed.contains("rolloutpolicy.shiftgate.dev/checkout"),
            "kubectl get {category}: {listed}"
        );
    }
    // The server publishes a CRD's OpenAPI a moment after it is established.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let explained = loop {
        let out = server.kubectl(&["explain", "rolloutpolicy.spec.analysis.metrics"]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl explain: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // (Fields under a `nullable` one are left out of the OpenAPI v2 that 1.20 publishes.)
    for description in [
        "What is judged at every evaluation",
        "Unique within the policy",
        "A built-in query template",
    ] {
        assert!(explained.contains(description), "{explained}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_policies_are_stored_as_written() {
    let server = server();
    let admin = server.admin_client().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let written: Value = serde_yaml_ng::from_str(&text).unwrap();
        // Each example in its own namespace, whatever the file names.
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let namespace = server.create_namespace(&format!("example-{stem}")).await;
        let mut object = written.clone();
        object["metadata"]["namespace"] = json!(namespace);
        let path = std::env::temp_dir().join(format!("shiftgate-example-{stem}.json"));
        std::fs::write(&path, serde_json::to_string(&object).unwrap()).unwrap();
        let applied =
            server.kubectl(&["apply", "--server-side=false", "-f", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        assert!(
            applied.status.success(),
            "{} refused: {}",
            file.display(),
            String::from_utf8_lossy(&applied.stderr)
        );
        let name = written["metadata"]["name"].as_str().unwrap();
        let stored =
            serde_json::to_value(policies(admin.clone(), &namespace).get(name).await.unwrap())
                .unwrap();
        // Nothing the file says was pruned or changed (the server may add defaults).
        assert_contains(
            &stored["spec"],
            &written["spec"],
            &format!("{}: spec", file.display()),
        );
    }
}

/// Every field of `expected` is in `actual` with the same value (objects recursively).
fn assert_contains(actual: &Value, expected: &Value, at: &str) {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => {
            for (key, value) in expected {
                let found = actual
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}.{key} was dropped by the server"));
                assert_contains(found, value, &format!("{at}.{key}"));
            }
        }
        (Value::Array(actual), Value::Array(expected)) => {
            assert_eq!(actual.len(), expected.len(), "{at}: length");
            for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
                assert_contains(a, e, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            assert_eq!(a.as_f64(), e.as_f64(), "{at}");
        }
        _ => assert_eq!(actual, expected, "{at}"),
    }
}

/// Differs from the test API server, which stores any field it is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_prunes_unknown_fields_and_applies_its_defaults() {
    let server = server();
    let namespace = server.create_namespace("crd-schema").await;
    let api = policies(server.admin_client().await, &namespace);
    let mut object = policy_object("pruned", json!({ "misspelt": true }));
    object.data["spec"]["analysis"]["intervall"] = json!("5s");
    let stored =
        serde_json::to_value(api.create(&PostParams::default(), &object).await.unwrap()).unwrap();
    let spec = &stored["spec"];
    assert!(spec.get("misspelt").is_none(), "unknown field kept: {spec}");
    assert!(spec["analysis"].get("intervall").is_none(), "{spec}");
    // The schema's defaults are filled in by the server.
    assert_eq!(spec["analysis"]["interval"], "30s", "{spec}");
    assert_eq!(spec["analysis"]["failureLimit"], 0, "{spec}");
    assert_eq!(spec["analysis"]["inconclusiveLimit"], 4, "{spec}");
    // Steps are free-form (integer or object): kept as written.
    assert_eq!(spec["steps"], json!([10, 50, 100]));
    // What the server stored still decodes into shiftgate's types.
    let typed: RolloutPolicy = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(typed.spec.steps.len(), 3);
}

/// Differs from the test API server, which does not validate custom resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_schema_refuses_wrong_types_on_create_and_on_patch() {
    let server = server();
    let namespace = server.create_namespace("crd-validation").await;
    let api = policies(server.admin_client().await, &namespace);
    let mut bad = policy_object("bad", json!({}));
    bad.data["spec"]["analysis"]["failureLimit"] = json!("many");
    let (code, message) = api_code(api.create(&PostParams::default(), &bad).await);
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("failureLimit"), "{message}");

    api.create(&PostParams::default(), &policy_object("good", json!({})))
        .await
        .unwrap();
    let patched = api
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "analysis": { "onInconclusive": "explode" } } })),
        )
        .await;
    let (code, message) = api_code(patched);
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("onInconclusive"), "{message}");
}

/// Differs from the test API server, which has no namespaces (see
/// tests/regression/kubernetes.rs for the fake's side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_in_a_missing_namespace_is_refused() {
    let server = server();
    let api = policies(server.admin_client().await, "no-such-namespace");
    let (code, message) = api_code(
        api.create(&PostParams::default(), &policy_object("orphan", json!({})))
            .await,
    );
    assert_eq!(code, 404, "{message}");
    assert!(message.contains("no-such-namespace"), "{message}");
}

/// An Event whose note is over 1 KiB is refused by the server; shiftgate cuts its
/// notes to 1 KiB, so its long notes are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_notes_over_one_kib_are_refused_and_shiftgates_fit() {
    let server = server();
    let namespace = server.create_namespace("events-limit").await;
    let admin = server.admin_client().await;
    let gvk = GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let events: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "events"),
    );
    let event = |name: &str, note: String| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": { "name": name },
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "shiftgate", "reportingInstance": "test",
            "action": "SetWeight", "reason": "StepAdvanced", "type": "Normal",
            "regarding": { "kind": "RolloutPolicy", "namespace": namespace, "name": "checkout" },
            "note": note
        }))
        .unwrap()
    };
    let (code, message) = api_code(
        events
            .create(&PostParams::default(), &event("too-long", "x".repeat(1025)))
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("at most 1024"), "{message}");
    let long = shiftgate::observe::events::RolloutEvent::RolledBack {
        reason: "AnalysisFailed".into(),
        message: "error-rate 0.5 > 0.01; ".repeat(100),
    };
    events
        .create(
            &PostParams::default(),
            &event("fits", long.note(Some("https://g/d/x"))),
        )
        .await
        .unwrap();
}

fn policy_ref(namespace: &str) -> PolicyRef {
    PolicyRef {
        namespace: namespace.into(),
        name: "checkout".into(),
    }
}

fn progressing(weight: u8) -> RolloutStatus {
    use shiftgate::analysis::sequential::{LatencyEvidence, RatioEvidence};
    use shiftgate::policy::status::{EvidenceStatus, JudgeState, MetricEvidence};
    // The judges' evidence is kept whole by the schema (`x-kubernetes-preserve-unknown-fields`).
    let evidence = EvidenceStatus {
        counted_until: chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
        metrics: vec![
            MetricEvidence {
                name: "errors".into(),
                state: JudgeState::ErrorRate(RatioEvidence::new(1.2)),
            },
            MetricEvidence {
                name: "latency".into(),
                state: JudgeState::Latency(LatencyEvidence::default()),
            },
        ],
    };
    RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Progressing,
        step: 1,
        canary_weight: weight,
        evidence: Some(evidence),
        ..RolloutStatus::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_store_and_command_ledger_work_on_the_status_subresource() {
    let server = server();
    let namespace = server.create_namespace("status-store").await;
    let client = server.admin_client().await;
    policies(client.clone(), &namespace)
        .create(
            &PostParams::default(),
            &policy_object("checkout", json!({})),
        )
        .await
        .unwrap();
    let store = KubeStatusStore::new(client.clone());
    let commands = KubeCommandSource::new(client.clone());
    let policy = policy_ref(&namespace);
    assert!(store.load(&policy).await.unwrap().is_none());

    let v1 = store.save(&policy, &progressing(30), None).await.unwrap();
    let (status, version) = store.load(&policy).await.unwrap().unwrap();
    assert_eq!(
        (status, &version),
        (progressing(30), &v1),
        "every status field survives the schema (none pruned)"
    );
    let v2 = store
        .save(&policy, &progressing(60), Some(&v1))
        .await
        .unwrap();
    let stale = store.save(&policy, &progressing(100), Some(&v1)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );

    // A command: the annotation write moves the version; handed over once; its id is
    // saved with the next state and a restarted daemon does not replay it.
    let submitted = submit_command(client.clone(), &namespace, "checkout", Command::Pause, "v2")
        .await
        .unwrap();
    let (_, v3) = store.load(&policy).await.unwrap().unwrap();
    assert_ne!(v3, v2);
    let pending = commands.pending(&policy, None).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].id, submitted.id);
    assert_eq!(pending[0].command.as_ref().ok(), Some(&Command::Pause));
    assert_eq!(pending[0].revision.as_deref(), Some("v2"));
    assert!(commands
        .pending(&policy, Some(&submitted.id))
        .await
        .unwrap()
        .is_empty());
    let mut paused = progressing(60);
    paused.phase = Phase::Paused;
    paused.last_command_id = Some(submitted.id.clone());
    store.save(&policy, &paused, Some(&v3)).await.unwrap();
    let stored = serde_json::to_value(
        policies(client.clone(), &namespace)
            .get("checkout")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored["status"]["lastCommandId"], json!(submitted.id));
    assert_eq!(stored["spec"]["revision"], "v2", "spec untouched");
    let store2 = KubeStatusStore::new(client.clone());
    let commands2 = KubeCommandSource::new(client);
    let (loaded, _) = store2.load(&policy).await.unwrap().unwrap();
    assert_eq!(loaded, paused);
    assert!(commands2
        .pending(&policy, loaded.last_command_id.as_deref())
        .await
        .unwrap()
        .is_empty());
}
