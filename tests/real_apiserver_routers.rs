//! The Istio and Service routers against a real kube-apiserver 1.20 (see
//! tests/support/kube_apiserver.rs): Istio's CRDs applied (a structural stand-in,
//! tests/fixtures/kubernetes/istio-crds.yaml), VirtualServices at every version the
//! router speaks (v1, v1beta1, v1alpha3), and the writes checked on what the server
//! stored. One server for the whole file; each test has its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use shiftgate::policy::ServiceRouter as ServiceRouterSpec;
use shiftgate::policy::{Destination, IstioApiVersion, IstioRouter as IstioRouterSpec, TestRoute};
use shiftgate::router::istio::{IstioRouter, IstioTarget};
use shiftgate::router::service::{ServiceRouter, ServiceTarget};
use shiftgate::router::{ManagedRoute, RouterError, TrafficRouter};
use support::kube_apiserver::KubeApiServer;

fn server() -> &'static KubeApiServer {
    let server = KubeApiServer::shared();
    server.install();
    server
}

fn vs_api(client: kube::Client, namespace: &str, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", version, "VirtualService");
    Api::namespaced_with(
        client,
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    )
}

/// Two managed routes, an unmanaged one between them, a third destination at 0, and
/// fields shiftgate does not know (kept: Istio's spec keeps unknown fields).
fn fixture(namespace: &str, version: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/virtualservices/two-managed-routes-zero-extra.yaml");
    // Its fully qualified hosts name namespace `shop`: this test's namespace instead.
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace(".shop.svc", &format!(".{namespace}.svc"));
    let mut vs: Value = serde_yaml_ng::from_str(&text).unwrap();
    vs["apiVersion"] = json!(format!("networking.istio.io/{version}"));
    vs["metadata"]["namespace"] = json!(namespace);
    vs["spec"]["http"][1]["x-unknown-field"] = json!({ "kept": true });
    vs
}

fn istio_target(namespace: &str, api_version: IstioApiVersion) -> IstioTarget {
    let spec = IstioRouterSpec {
        virtual_service: "checkout".to_owned(),
        colors: Default::default(),
        routes: vec!["web".to_owned(), "mobile".to_owned()],
        stable: Destination {
            host: "checkout".to_owned(),
            subset: None,
            port: None,
        },
        canary: Destination {
            host: "checkout-canary".to_owned(),
            subset: None,
            port: None,
        },
        api_version,
    };
    let test_route = TestRoute {
        cookie: Some("test=true".to_owned()),
        header: None,
    };
    IstioTarget::from_policy("checkout", namespace, &spec, Some(&test_route))
}

fn route(canary_weight: u8, test_route: bool) -> ManagedRoute {
    ManagedRoute {
        canary_weight,
        test_route,
    }
}

async fn stored_vs(client: &kube::Client, namespace: &str) -> Value {
    let object = vs_api(client.clone(), namespace, "v1")
        .get("checkout")
        .await
        .unwrap();
    serde_json::to_value(object).unwrap()
}

/// Walks one rollout through the router at `version`: every write lands as asked,
/// nothing else in the object moves, a stale version is a Conflict.
async fn walk_rollout(namespace: &str, version: &str, api_version: IstioApiVersion) {
    let server = server();
    server.create_namespace(namespace).await;
    let admin = server.admin_client().await;
    let created: DynamicObject = serde_json::from_value(fixture(namespace, version)).unwrap();
    vs_api(admin.clone(), namespace, version)
        .create(&PostParams::default(), &created)
        .await
        .unwrap();
    let before = stored_vs(&admin, namespace).await;
    let router = IstioRouter::new(admin.clone(), istio_target(namespace, api_version))
        .with_call_timeout(Duration::from_secs(10));

    let live = router.read().await.unwrap();
    assert_eq!(live.route, route(0, false));
    let at_30 = router.apply(&live.version, route(30, true)).await.unwrap();
    let vs = stored_vs(&admin, namespace).await;
    let http = vs["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 4, "test route inserted: {vs}");
    assert_eq!(http[0]["name"], "shiftgate-test-checkout");
    assert_eq!(http[1]["route"][0]["weight"], 70);
    assert_eq!(http[1]["route"][1]["weight"], 30);
    assert_eq!(http[1]["route"][2]["weight"], 0, "third destination kept");
    assert_eq!(http[3]["route"][1]["weight"], 70);
    assert_eq!(http[3]["route"][2]["weight"], 30);
    assert_eq!(http[2]["x-unknown-field"], json!({ "kept": true }));
    assert_eq!(vs["metadata"]["labels"], before["metadata"]["labels"]);
    assert_eq!(router.read().await.unwrap().route, route(30, true));

    // A write against the version read before the last one: the server refuses it.
    let stale = router.apply(&live.version, route(60, true)).await;
    assert!(
        matches!(stale, Err(RouterError::Conflict { .. })),
        "{stale:?}"
    );
    // Someone else's edit in between: a Conflict too, and their edit survives.
    vs_api(admin.clone(), namespace, version)
        .patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { "edited": "by-hand" } } })),
        )
        .await
        .unwrap();
    let raced = router.apply(&at_30, route(60, true)).await;
    assert!(
        matches!(raced, Err(RouterError::Conflict { .. })),
        "{raced:?}"
    );

    let live = router.read().await.unwrap();
    router
        .apply(&live.version, route(100, false))
        .await
        .unwrap();
    let after = stored_vs(&admin, namespace).await;
    let mut expected = before["spec"].clone();
    expected["http"][0]["route"][0]["weight"] = json!(0);
    expected["http"][0]["route"][1]["weight"] = json!(100);
    expected["http"][2]["route"][1]["weight"] = json!(0);
    expected["http"][2]["route"][2]["weight"] = json!(100);
    assert_eq!(after["spec"], expected, "only the managed weights moved");
    assert_eq!(after["metadata"]["annotations"]["edited"], "by-hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_router_walks_a_rollout_on_networking_v1() {
    walk_rollout("istio-v1", "v1", IstioApiVersion::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_router_walks_a_rollout_on_networking_v1beta1() {
    walk_rollout("istio-v1beta1", "v1beta1", IstioApiVersion::V1beta1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_router_walks_a_rollout_on_networking_v1alpha3() {
    walk_rollout("istio-v1alpha3", "v1alpha3", IstioApiVersion::V1alpha3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_router_reports_a_missing_virtual_service_as_invalid() {
    let server = server();
    let namespace = server.create_namespace("istio-missing").await;
    let router = IstioRouter::new(
        server.admin_client().await,
        istio_target(&namespace, IstioApiVersion::V1),
    )
    .with_call_timeout(Duration::from_secs(10));
    let err = router.read().await.unwrap_err();
    assert!(matches!(err, RouterError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("checkout"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_router_switches_one_selector_key_and_keeps_the_rest() {
    let server = server();
    let namespace = server.create_namespace("service-router").await;
    let admin = server.admin_client().await;
    let services: Api<Service> = Api::namespaced(admin.clone(), &namespace);
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "checkout", "labels": { "app": "checkout" },
                      "annotations": { "owner": "payments" } },
        "spec": {
            "selector": { "app": "checkout", "color": "blue" },
            "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" }]
        }
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let before = serde_json::to_value(services.get("checkout").await.unwrap()).unwrap();
    let target = ServiceTarget::from_policy(
        &namespace,
        &ServiceRouterSpec {
            service: "checkout".to_owned(),
            colors: Default::default(),
            selector_key: "color".to_owned(),
            stable_value: "blue".to_owned(),
            canary_value: "green".to_owned(),
        },
    );
    let router =
        ServiceRouter::new(admin.clone(), target).with_call_timeout(Duration::from_secs(10));
    let live = router.read().await.unwrap();
    assert_eq!(live.route, route(0, false));
    router
        .apply(&live.version, route(100, false))
        .await
        .unwrap();
    let after = serde_json::to_value(services.get("checkout").await.unwrap()).unwrap();
    assert_eq!(
        after["spec"]["selector"],
        json!({ "app": "checkout", "color": "green" })
    );
    // The server-assigned clusterIP, the ports, labels and annotations are untouched.
    assert_eq!(after["spec"]["clusterIP"], before["spec"]["clusterIP"]);
    assert_eq!(after["spec"]["ports"], before["spec"]["ports"]);
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    assert_eq!(
        after["metadata"]["annotations"],
        before["metadata"]["annotations"]
    );
    // The version read before the switch is stale now.
    let stale = router.apply(&live.version, route(0, false)).await;
    assert!(
        matches!(stale, Err(RouterError::Conflict { .. })),
        "{stale:?}"
    );
    let live = router.read().await.unwrap();
    assert_eq!(live.route, route(100, false));
    let err = router
        .apply(&live.version, route(30, false))
        .await
        .unwrap_err();
    assert!(matches!(err, RouterError::Invalid(_)), "{err:?}");
}
