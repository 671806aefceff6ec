//! The Service router (selector blue/green) against the in-repo test API server through
//! the real `kube::Client`: one conditional JSON Patch switches one selector key; the rest
//! of the Service, and concurrent edits, survive; faults are reported, never guessed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use shiftgate::policy::ServiceRouter as ServiceRouterSpec;
use shiftgate::router::service::{ServiceRouter, ServiceTarget};
use shiftgate::router::{ManagedRoute, RouterError, TrafficRouter};
use shiftgate::testkit::apiserver::{Fault, FaultKind, ResourceRef, TestApiServer};

const NS: &str = "shop";

fn services() -> ResourceRef {
    ResourceRef::new("", "v1", "services")
}

fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "checkout",
            "namespace": NS,
            "labels": {"app": "checkout"},
            "annotations": {"owner": "payments"}
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "checkout", "color": "blue"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "sessionAffinity": "None"
        }
    })
}

fn target() -> ServiceTarget {
    ServiceTarget::from_policy(
        NS,
        &ServiceRouterSpec {
            service: "checkout".to_owned(),
            colors: Default::default(),
            selector_key: "color".to_owned(),
            stable_value: "blue".to_owned(),
            canary_value: "green".to_owned(),
        },
    )
}

async fn setup() -> (TestApiServer, ServiceRouter) {
    let server = TestApiServer::start().await.unwrap();
    server.put_object(&services(), service()).unwrap();
    let router = ServiceRouter::new(server.client().unwrap(), target())
        .with_call_timeout(Duration::from_secs(2));
    (server, router)
}

fn stored(server: &TestApiServer) -> Value {
    server
        .get_object(&services(), Some(NS), "checkout")
        .unwrap()
}

fn route(canary_weight: u8) -> ManagedRoute {
    ManagedRoute {
        canary_weight,
        test_route: false,
    }
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("timed out after 20s")
}

fn patches(server: &TestApiServer) -> Vec<Value> {
    server
        .requests_matching("PATCH", "/services/checkout")
        .iter()
        .map(|r| r.json().unwrap())
        .collect()
}

#[tokio::test]
async fn switching_changes_one_selector_value_and_switching_back_restores_it() {
    let (server, router) = setup().await;
    let live = within(router.read()).await.unwrap();
    assert_eq!(live.route, route(0));

    let version = within(router.apply(&live.version, route(100)))
        .await
        .unwrap();
    let mut expected = service()["spec"].clone();
    expected["selector"]["color"] = json!("green");
    assert_eq!(stored(&server)["spec"], expected);
    assert_eq!(
        patches(&server),
        vec![json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": live.version.0},
            {"op": "test", "path": "/spec/selector/color", "value": "blue"},
            {"op": "replace", "path": "/spec/selector/color", "value": "green"}
        ])]
    );
    assert_eq!(within(router.read()).await.unwrap().route, route(100));

    // Unchanged: no write.
    within(router.apply(&version, route(100))).await.unwrap();
    assert_eq!(patches(&server).len(), 1);

    within(router.apply(&version, route(0))).await.unwrap();
    assert_eq!(stored(&server)["spec"], service()["spec"]);
    assert_eq!(
        stored(&server)["metadata"]["labels"],
        service()["metadata"]["labels"]
    );
}

#[tokio::test]
async fn a_concurrent_edit_is_a_conflict_and_survives_the_retry() {
    let (server, router) = setup().await;
    let live = within(router.read()).await.unwrap();
    let mut edited = stored(&server);
    edited["spec"]["ports"][0]["port"] = json!(8081);
    server.put_object(&services(), edited.clone()).unwrap();

    // The patch carries the version it was planned on: the API server refuses it (one
    // request at most, no second GET: issue "scale" §2) and nothing changes.
    let error = within(router.apply(&live.version, route(100)))
        .await
        .unwrap_err();
    assert!(matches!(error, RouterError::Conflict { .. }), "{error}");
    assert!(patches(&server).len() <= 1, "one refused patch at most");
    assert_eq!(stored(&server)["spec"], edited["spec"], "nothing changed");

    server.inject(Fault::new(
        "PATCH",
        "/services/checkout",
        FaultKind::Status(422),
        1,
    ));
    let live = within(router.read()).await.unwrap();
    let error = within(router.apply(&live.version, route(100)))
        .await
        .unwrap_err();
    assert!(matches!(error, RouterError::Conflict { .. }), "{error}");

    let live = within(router.read()).await.unwrap();
    within(router.apply(&live.version, route(100)))
        .await
        .unwrap();
    let object = stored(&server);
    assert_eq!(object["spec"]["selector"]["color"], json!("green"));
    assert_eq!(object["spec"]["ports"][0]["port"], json!(8081));
}

#[tokio::test]
async fn impossible_requests_and_unknown_selector_values_are_invalid_and_write_nothing() {
    let (server, router) = setup().await;
    let live = within(router.read()).await.unwrap();
    let error = within(router.apply(&live.version, route(30)))
        .await
        .unwrap_err();
    assert!(matches!(error, RouterError::Invalid(_)), "{error}");
    let with_test_route = ManagedRoute {
        canary_weight: 0,
        test_route: true,
    };
    let error = within(router.apply(&live.version, with_test_route))
        .await
        .unwrap_err();
    assert!(matches!(error, RouterError::Invalid(_)), "{error}");

    let mut red = service();
    red["spec"]["selector"]["color"] = json!("red");
    server.put_object(&services(), red).unwrap();
    let error = within(router.read()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("service shop/checkout: spec.selector.color is \"red\""),
        "{error}"
    );

    let mut missing = target();
    missing.name = "gone".to_owned();
    let router = ServiceRouter::new(server.client().unwrap(), missing);
    let error = within(router.read()).await.unwrap_err();
    assert!(matches!(error, RouterError::Invalid(_)), "{error}");
    assert!(
        error.to_string().contains("service shop/gone not found"),
        "{error}"
    );
    assert!(patches(&server).is_empty());
}

#[tokio::test]
async fn server_errors_and_slowness_are_unavailable() {
    let (server, router) = setup().await;
    server.inject(Fault::new(
        "GET",
        "/services/checkout",
        FaultKind::Status(500),
        1,
    ));
    let error = within(router.read()).await.unwrap_err();
    assert!(matches!(error, RouterError::Unavailable { .. }), "{error}");

    server.inject(Fault::new(
        "GET",
        "/services/checkout",
        FaultKind::Delay(Duration::from_secs(10)),
        1,
    ));
    let error = within(router.read()).await.unwrap_err();
    assert!(matches!(error, RouterError::Unavailable { .. }), "{error}");

    let live = within(router.read()).await.unwrap();
    server.inject(Fault::new(
        "PATCH",
        "/services/checkout",
        FaultKind::Status(500),
        1,
    ));
    let error = within(router.apply(&live.version, route(100)))
        .await
        .unwrap_err();
    assert!(matches!(error, RouterError::Unavailable { .. }), "{error}");
    assert_eq!(stored(&server)["spec"]["selector"]["color"], json!("blue"));
}
