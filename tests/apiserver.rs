//! The test API server's REST semantics, checked through the real `kube::Client`, the
//! way shiftgate's Kubernetes code uses them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use shiftgate::testkit::apiserver::{Fault, FaultKind, ResourceRef, TestApiServer};

const NS: &str = "shop";

fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("shiftgate.dev", "v1alpha1", "RolloutPolicy"),
        "rolloutpolicies",
    )
}

fn policies(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NS, &policy_resource())
}

fn policy(name: &str, revision: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "shiftgate.dev/v1alpha1",
        "kind": "RolloutPolicy",
        "metadata": { "name": name, "labels": { "team": "checkout" } },
        "spec": { "revision": revision },
    }))
    .unwrap()
}

/// Watch parameters without bookmarks, so the next event is the next change.
fn quiet() -> WatchParams {
    WatchParams::default().disable_bookmarks()
}

fn api_code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("timed out after 10s")
}

#[tokio::test]
async fn create_get_list_with_selectors_and_already_exists() {
    let server = TestApiServer::start().await.unwrap();
    let api = policies(&server.client().unwrap());
    let created = api
        .create(&PostParams::default(), &policy("a", "v1"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(meta.namespace.as_deref(), Some(NS));
    api.create(&PostParams::default(), &policy("b", "v1"))
        .await
        .unwrap();
    let mut other = policy("c", "v1");
    other.metadata.labels = None;
    api.create(&PostParams::default(), &other).await.unwrap();

    let err = api
        .create(&PostParams::default(), &policy("a", "v2"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
            assert!(s
                .message
                .contains("rolloutpolicies.shiftgate.dev \"a\" already exists"));
        }
        other => panic!("{other:?}"),
    }

    let got = api.get("a").await.unwrap();
    assert_eq!(got.data["spec"]["revision"], "v1");
    assert_eq!(api_code(api.get("missing").await.unwrap_err()), 404);

    let all = api.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = all
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    // Pages: `limit` and the `continue` token.
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().unwrap();
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("c"));
    assert!(rest.metadata.continue_.is_none_or(|t| t.is_empty()));
    let labelled = api
        .list(&ListParams::default().labels("team=checkout"))
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 2);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let everywhere: Api<DynamicObject> =
        Api::all_with(server.client().unwrap(), &policy_resource());
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let elsewhere: Api<DynamicObject> =
        Api::namespaced_with(server.client().unwrap(), "other", &policy_resource());
    assert!(elsewhere
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn stale_put_is_a_conflict_and_versions_increase() {
    let server = TestApiServer::start().await.unwrap();
    let api = policies(&server.client().unwrap());
    let first = api
        .create(&PostParams::default(), &policy("a", "v1"))
        .await
        .unwrap();
    let mut update = first.clone();
    update.data["spec"]["revision"] = json!("v2");
    let second = api
        .replace("a", &PostParams::default(), &update)
        .await
        .unwrap();
    let v1: u64 = first
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let v2: u64 = second
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(v2 > v1);
    assert_eq!(second.metadata.generation, Some(2));

    // The first copy is stale now.
    let err = api
        .replace("a", &PostParams::default(), &first)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    // Custom resources refuse unconditional updates, like the real server.
    let mut blind = second.clone();
    blind.metadata.resource_version = None;
    assert_eq!(
        api_code(
            api.replace("a", &PostParams::default(), &blind)
                .await
                .unwrap_err()
        ),
        422
    );
    // An update that changes nothing writes nothing.
    let same = api
        .replace("a", &PostParams::default(), &second)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        second.metadata.resource_version
    );
}

#[tokio::test]
async fn json_patch_test_failure_is_422_and_merge_patch_applies() {
    let server = TestApiServer::start().await.unwrap();
    let api = policies(&server.client().unwrap());
    let created = api
        .create(&PostParams::default(), &policy("a", "v1"))
        .await
        .unwrap();
    let version = created.metadata.resource_version.unwrap();

    let guarded = |expect: &str| {
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": expect },
            { "op": "replace", "path": "/spec/revision", "value": "v2" },
        ])
    };
    let err = server_patch(&server, "a", guarded("1"), "application/json-patch+json").await;
    assert_eq!(err.0, 422, "{}", err.1);
    let ok = server_patch(
        &server,
        "a",
        guarded(&version),
        "application/json-patch+json",
    )
    .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(api.get("a").await.unwrap().data["spec"]["revision"], "v2");

    let merged = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "extra": 1 } })),
        )
        .await
        .unwrap();
    assert_eq!(merged.data["spec"], json!({ "revision": "v2", "extra": 1 }));
    assert_eq!(merged.metadata.generation, Some(3));
    // A merge patch carrying a stale resourceVersion is a conflict.
    let stale =
        Patch::Merge(json!({ "metadata": { "resourceVersion": version }, "spec": { "extra": 2 } }));
    assert_eq!(
        api_code(
            api.patch("a", &PatchParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );
    // Strategic merge is a built-in-only format: custom resources answer 415.
    let strategic = Patch::Strategic(json!({ "spec": { "extra": 3 } }));
    assert_eq!(
        api_code(
            api.patch("a", &PatchParams::default(), &strategic)
                .await
                .unwrap_err()
        ),
        415
    );
    // The request log has the bodies and content types the client sent.
    let patches = server.requests_matching("PATCH", "/rolloutpolicies/a");
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert_eq!(patches[0].json().unwrap()[0]["op"], "test");
}

/// Sends a raw PATCH (kube's `Patch::Json` takes the json-patch version kube itself
/// depends on, not this crate's).
async fn server_patch(
    server: &TestApiServer,
    name: &str,
    ops: Value,
    content_type: &str,
) -> (u16, String) {
    let client = reqwest::Client::new();
    let url = format!(
        "{}/apis/shiftgate.dev/v1alpha1/namespaces/{NS}/rolloutpolicies/{name}",
        server.url()
    );
    let response = client
        .patch(url)
        .header("content-type", content_type)
        .body(ops.to_string())
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    (code, response.text().await.unwrap())
}

#[tokio::test]
async fn status_subresource_is_isolated_from_the_main_resource() {
    let server = TestApiServer::start().await.unwrap();
    let api = policies(&server.client().unwrap());
    let mut with_status = policy("a", "v1");
    with_status.data["status"] = json!({ "phase": "Ignored" });
    let created = api
        .create(&PostParams::default(), &with_status)
        .await
        .unwrap();
    assert!(created.data.get("status").is_none(), "create drops status");

    let status = Patch::Merge(
        json!({ "spec": { "revision": "sneaky" }, "status": { "phase": "Progressing" } }),
    );
    let after = api
        .patch_status("a", &PatchParams::default(), &status)
        .await
        .unwrap();
    assert_eq!(after.data["status"]["phase"], "Progressing");
    assert_eq!(
        after.data["spec"]["revision"], "v1",
        "a status write leaves spec alone"
    );
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );

    let main =
        Patch::Merge(json!({ "spec": { "revision": "v2" }, "status": { "phase": "Hacked" } }));
    let after = api
        .patch("a", &PatchParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(
        after.data["status"]["phase"], "Progressing",
        "main writes ignore status"
    );
    assert_eq!(after.data["spec"]["revision"], "v2");
    assert_eq!(after.metadata.generation, Some(2));
    let fetched = api.get_status("a").await.unwrap();
    assert_eq!(fetched.data["status"]["phase"], "Progressing");
}

#[tokio::test]
async fn watch_streams_changes_replays_from_a_version_and_expires_old_ones() {
    let server = TestApiServer::start().await.unwrap();
    let api = policies(&server.client().unwrap());
    let created = api
        .create(&PostParams::default(), &policy("a", "v1"))
        .await
        .unwrap();
    let from = created.metadata.resource_version.clone().unwrap();

    let mut stream = api.watch(&quiet(), &from).await.unwrap().boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "revision": "v2" } })),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    match within(stream.try_next()).await.unwrap().unwrap() {
        WatchEvent::Modified(o) => assert_eq!(o.data["spec"]["revision"], "v2"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        within(stream.try_next()).await.unwrap().unwrap(),
        WatchEvent::Deleted(_)
    ));

    // Replay from the creation version: the same two events again.
    let mut replay = api.watch(&quiet(), &from).await.unwrap().boxed();
    assert!(matches!(
        within(replay.try_next()).await.unwrap().unwrap(),
        WatchEvent::Modified(_)
    ));
    assert!(matches!(
        within(replay.try_next()).await.unwrap().unwrap(),
        WatchEvent::Deleted(_)
    ));

    // After compaction that version is too old: an ERROR event with 410.
    server.compact_history();
    let mut expired = api.watch(&quiet(), &from).await.unwrap().boxed();
    match within(expired.try_next()).await.unwrap().unwrap() {
        WatchEvent::Error(status) => assert_eq!(status.code, 410),
        other => panic!("{other:?}"),
    }

    // Bookmarks when asked (kube asks by default).
    let now = server.resource_version().to_string();
    let mut bookmarks = api
        .watch(&WatchParams::default(), &now)
        .await
        .unwrap()
        .boxed();
    match within(bookmarks.try_next()).await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, now),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kube_runtime_watcher_sees_objects_and_selector_moves() {
    let server = TestApiServer::start().await.unwrap();
    let api = policies(&server.client().unwrap());
    api.create(&PostParams::default(), &policy("a", "v1"))
        .await
        .unwrap();
    let config = watcher::Config::default()
        .labels("team=checkout")
        .page_size(1);
    let mut objects = watcher(api.clone(), config).applied_objects().boxed();
    let first = within(objects.try_next()).await.unwrap().unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("a"));
    api.create(&PostParams::default(), &policy("b", "v1"))
        .await
        .unwrap();
    let second = within(objects.try_next()).await.unwrap().unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("b"));

    // Streaming lists (sendInitialEvents) see the same objects.
    let streaming = watcher::Config::default().streaming_lists();
    let mut streamed = watcher(api.clone(), streaming).applied_objects().boxed();
    let mut names = Vec::new();
    for _ in 0..2 {
        let o = within(streamed.try_next()).await.unwrap().unwrap();
        names.push(o.metadata.name.unwrap());
    }
    names.sort();
    assert_eq!(names, ["a", "b"]);

    // An object leaving the selector is a DELETED event for a filtered watch.
    let from = server.resource_version().to_string();
    let filtered = quiet().labels("team=checkout");
    let mut stream = api.watch(&filtered, &from).await.unwrap().boxed();
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": null } })),
    )
    .await
    .unwrap();
    assert!(matches!(
        within(stream.try_next()).await.unwrap().unwrap(),
        WatchEvent::Deleted(_)
    ));
}

#[tokio::test]
async fn injected_faults_fire_the_given_number_of_times() {
    let server = TestApiServer::start().await.unwrap();
    let api = policies(&server.client().unwrap());
    api.create(&PostParams::default(), &policy("a", "v1"))
        .await
        .unwrap();

    for code in [500u16, 404, 409, 422] {
        server.inject(Fault::new(
            "GET",
            "/rolloutpolicies/a",
            FaultKind::Status(code),
            1,
        ));
        assert_eq!(api_code(api.get("a").await.unwrap_err()), code);
        api.get("a").await.unwrap();
    }
    // A failed write stores nothing.
    server.inject(Fault::new(
        "PATCH",
        "/rolloutpolicies/a",
        FaultKind::Status(500),
        2,
    ));
    let patch = Patch::Merge(json!({ "spec": { "revision": "v2" } }));
    for _ in 0..2 {
        assert_eq!(
            api_code(
                api.patch("a", &PatchParams::default(), &patch)
                    .await
                    .unwrap_err()
            ),
            500
        );
    }
    assert_eq!(api.get("a").await.unwrap().data["spec"]["revision"], "v1");
    assert_eq!(server.faults_remaining(), 0);

    // A dropped connection is a transport error, not an API answer.
    server.inject(Fault::new(
        "*",
        "/rolloutpolicies/a",
        FaultKind::DropConnection,
        1,
    ));
    let err = api.get("a").await.unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");

    // A slow answer trips the client's read timeout.
    let mut config = server.config();
    config.read_timeout = Some(Duration::from_millis(200));
    let impatient: Api<DynamicObject> = Api::namespaced_with(
        kube::Client::try_from(config).unwrap(),
        NS,
        &policy_resource(),
    );
    server.inject(Fault::new(
        "GET",
        "/rolloutpolicies/a",
        FaultKind::Delay(Duration::from_secs(3)),
        1,
    ));
    let err = impatient.get("a").await.unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
}

#[tokio::test]
async fn core_objects_leases_and_events_work_as_ordinary_objects() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "cfg" }, "data": { "k": "v" }
    }))
    .unwrap();
    maps.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(maps.get("cfg").await.unwrap().data.unwrap()["k"], "v");

    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "shiftgate-leader" },
        "spec": { "holderIdentity": "pod-a", "leaseDurationSeconds": 15 }
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = created.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    leases
        .replace("shiftgate-leader", &PostParams::default(), &taken)
        .await
        .unwrap();
    // The loser of a leader race holds a stale copy: 409.
    let err = leases
        .replace("shiftgate-leader", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 409);

    let events = ResourceRef::new("events.k8s.io", "v1", "events");
    let url = format!(
        "{}/apis/events.k8s.io/v1/namespaces/{NS}/events",
        server.url()
    );
    let body = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": { "name": "a.1" }, "reason": "StepAdvanced", "type": "Normal",
        "note": "weight 30", "action": "Reconcile", "reportingController": "shiftgate",
        "reportingInstance": "pod-a", "eventTime": "2026-01-01T00:00:00.000000Z",
        "regarding": { "kind": "RolloutPolicy", "name": "a", "namespace": NS }
    });
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let stored: Value = server.get_object(&events, Some(NS), "a.1").unwrap();
    assert_eq!(stored["reason"], "StepAdvanced");
}

#[test]
fn background_server_serves_synchronous_tests() {
    let server = TestApiServer::start_background().unwrap();
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    server
        .put_object(
            &vs,
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": { "name": "checkout", "namespace": NS },
                "spec": { "http": [] }, "status": { "observedGeneration": 1 }
            }),
        )
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("networking.istio.io", "v1beta1", "VirtualService"),
            "virtualservices",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(server.client().unwrap(), NS, &ar);
        // One storage, any served version.
        let got = api.get("checkout").await.unwrap();
        assert_eq!(
            got.types.unwrap().api_version,
            "networking.istio.io/v1beta1"
        );
        assert_eq!(got.data["status"]["observedGeneration"], 1);
    });
}

#[tokio::test]
async fn a_posted_crd_declares_its_status_subresource() {
    let server = TestApiServer::start().await.unwrap();
    // A custom resource without a declared status subresource: status is ordinary data.
    let widgets = ResourceRef::new("example.dev", "v1", "widgets");
    let widget = json!({
        "apiVersion": "example.dev/v1", "kind": "Widget",
        "metadata": { "name": "w", "namespace": NS }, "spec": { "size": 1 },
        "status": { "ready": true },
    });
    let stored = server.put_object(&widgets, widget).unwrap();
    assert_eq!(stored["status"]["ready"], true);
    let crd: Value = serde_yaml_ng::from_str(&shiftgate::cli::crd::render().unwrap()).unwrap();
    let mut crd = crd;
    crd["spec"]["group"] = json!("example.dev");
    crd["spec"]["names"] = json!({ "plural": "widgets", "kind": "Widget", "singular": "widget" });
    crd["metadata"]["name"] = json!("widgets.example.dev");
    let crds = ResourceRef::new("apiextensions.k8s.io", "v1", "customresourcedefinitions");
    server.put_object(&crds, crd).unwrap();
    // Now a main-resource write keeps the stored status.
    let client = server.client().unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.dev", "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, NS, &ar);
    let patch = Patch::Merge(json!({ "spec": { "size": 2 }, "status": { "ready": false } }));
    let after = api
        .patch("w", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(after.data["spec"]["size"], 2);
    assert_eq!(after.data["status"]["ready"], true);
}
