//! The Istio router against the in-repo test API server, through the real `kube::Client`:
//! writes are conditional JSON Patches that change only the managed weights (and the test
//! route); concurrent edits survive; faults surface as Conflict/Unavailable/Invalid and
//! nothing is guessed or written blindly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use shiftgate::policy::{Destination, IstioApiVersion, IstioRouter as IstioRouterSpec, TestRoute};
use shiftgate::router::istio::{IstioRouter, IstioTarget};
use shiftgate::router::{ManagedRoute, RouterError, TrafficRouter, Version};
use shiftgate::testkit::apiserver::{Fault, FaultKind, ResourceRef, TestApiServer};

const NS: &str = "shop";

fn vs_resource() -> ResourceRef {
    ResourceRef::new("networking.istio.io", "v1", "virtualservices")
}

/// Two managed routes (`web`, `mobile`), an unmanaged `admin` route between them, and a
/// third destination at weight 0 in each managed route.
fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/virtualservices/two-managed-routes-zero-extra.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn target(api_version: IstioApiVersion, routes: &[&str]) -> IstioTarget {
    let spec = IstioRouterSpec {
        virtual_service: "checkout".to_owned(),
        colors: Default::default(),
        routes: routes.iter().map(|r| (*r).to_owned()).collect(),
        stable: Destination {
            host: "checkout".to_owned(),
            subset: None,
            port: None,
        },
        canary: Destination {
            host: "checkout-canary.shop.svc.cluster.local".to_owned(),
            subset: None,
            port: None,
        },
        api_version,
    };
    let test_route = TestRoute {
        cookie: Some("test=true".to_owned()),
        header: None,
    };
    IstioTarget::from_policy("checkout", NS, &spec, Some(&test_route))
}

async fn setup() -> (TestApiServer, IstioRouter) {
    let server = TestApiServer::start().await.unwrap();
    server.put_object(&vs_resource(), fixture()).unwrap();
    let router = IstioRouter::new(
        server.client().unwrap(),
        target(IstioApiVersion::V1, &["web", "mobile"]),
    )
    .with_call_timeout(Duration::from_secs(5));
    (server, router)
}

fn stored(server: &TestApiServer) -> Value {
    server
        .get_object(&vs_resource(), Some(NS), "checkout")
        .unwrap()
}

fn route(canary_weight: u8, test_route: bool) -> ManagedRoute {
    ManagedRoute {
        canary_weight,
        test_route,
    }
}

/// The spec with the managed weights set to `canary` (stable gets the rest).
fn expected_spec(canary: u64) -> Value {
    let mut spec = fixture()["spec"].clone();
    spec["http"][0]["route"][0]["weight"] = json!(100 - canary);
    spec["http"][0]["route"][1]["weight"] = json!(canary);
    spec["http"][2]["route"][1]["weight"] = json!(100 - canary);
    spec["http"][2]["route"][2]["weight"] = json!(canary);
    spec
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("timed out after 20s")
}

fn patches(server: &TestApiServer) -> usize {
    server
        .requests_matching("PATCH", "/virtualservices/checkout")
        .len()
}

#[tokio::test]
async fn a_step_is_one_conditional_patch_of_the_managed_weights_only() {
    let (server, router) = setup().await;
    let live = within(router.read()).await.unwrap();
    assert_eq!(live.route, route(0, false));

    let version = within(router.apply(&live.version, route(30, false)))
        .await
        .unwrap();
    assert_ne!(version, live.version);
    let object = stored(&server);
    assert_eq!(object["spec"], expected_spec(30));
    assert_eq!(
        object["metadata"]["labels"],
        fixture()["metadata"]["labels"]
    );

    let sent = server.requests_matching("PATCH", "/virtualservices/checkout");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert!(
        sent[0].path.contains("fieldManager=shiftgate"),
        "{}",
        sent[0].path
    );
    assert_eq!(
        sent[0].json().unwrap(),
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": live.version.0},
            {"op": "test", "path": "/spec/http/0/route/0/weight", "value": 100},
            {"op": "test", "path": "/spec/http/0/route/1/weight", "value": 0},
            {"op": "test", "path": "/spec/http/2/route/1/weight", "value": 100},
            {"op": "test", "path": "/spec/http/2/route/2/weight", "value": 0},
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 70},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 30},
            {"op": "replace", "path": "/spec/http/2/route/1/weight", "value": 70},
            {"op": "replace", "path": "/spec/http/2/route/2/weight", "value": 30}
        ])
    );

    let live = within(router.read()).await.unwrap();
    assert_eq!(live.route, route(30, false));
    assert_eq!(live.version, version);

    // The same state again writes nothing.
    let again = within(router.apply(&version, route(30, false)))
        .await
        .unwrap();
    assert_eq!(again, version);
    assert_eq!(patches(&server), 1);
}

#[tokio::test]
async fn test_route_goes_in_and_rollback_removes_it_in_the_same_single_write() {
    let (server, router) = setup().await;
    let live = within(router.read()).await.unwrap();
    let version = within(router.apply(&live.version, route(0, true)))
        .await
        .unwrap();
    let object = stored(&server);
    assert_eq!(
        object["spec"]["http"][0]["name"],
        json!("shiftgate-test-checkout")
    );
    assert_eq!(object["spec"]["http"].as_array().unwrap().len(), 4);
    let live = within(router.read()).await.unwrap();
    assert_eq!(live.route, route(0, true));

    let version = within(router.apply(&version, route(60, true)))
        .await
        .unwrap();
    assert_eq!(within(router.read()).await.unwrap().route, route(60, true));

    let before = patches(&server);
    within(router.apply(&version, route(0, false)))
        .await
        .unwrap();
    assert_eq!(patches(&server), before + 1, "rollback is one write");
    assert_eq!(stored(&server)["spec"], expected_spec(0));
}

#[tokio::test]
async fn a_user_edit_to_another_route_survives_the_rollout() {
    let (server, router) = setup().await;
    let live = within(router.read()).await.unwrap();
    let version = within(router.apply(&live.version, route(10, false)))
        .await
        .unwrap();

    // Someone edits the unmanaged `admin` route.
    let mut edited = stored(&server);
    edited["spec"]["http"][1]["timeout"] = json!("9s");
    server.put_object(&vs_resource(), edited.clone()).unwrap();

    // The decision taken at the old version is refused and changes nothing: the patch
    // carries the version it was planned on, so the API server answers 409 (one request
    // at most, no second GET: issue "scale" §2)…
    let before = patches(&server);
    let error = within(router.apply(&version, route(30, false)))
        .await
        .unwrap_err();
    assert!(matches!(error, RouterError::Conflict { .. }), "{error}");
    assert!(patches(&server) <= before + 1, "one refused patch at most");
    assert_eq!(stored(&server)["spec"], edited["spec"], "nothing changed");

    // …and the re-read decision keeps the edit.
    let live = within(router.read()).await.unwrap();
    assert_eq!(live.route, route(10, false));
    within(router.apply(&live.version, route(30, false)))
        .await
        .unwrap();
    let mut expected = expected_spec(30);
    expected["http"][1]["timeout"] = json!("9s");
    assert_eq!(stored(&server)["spec"], expected);
}

#[tokio::test]
async fn an_edit_landing_during_the_write_fails_the_patch_test_and_is_not_lost() {
    let (server, router) = setup().await;
    let live = within(router.read()).await.unwrap();
    // Hold the PATCH long enough to land an edit while it is in flight.
    server.inject(Fault::new(
        "PATCH",
        "/virtualservices/checkout",
        FaultKind::Delay(Duration::from_secs(3)),
        1,
    ));
    let write = tokio::spawn({
        let version = live.version.clone();
        async move {
            router
                .apply(&version, route(30, false))
                .await
                .map(|_| router)
        }
    });
    within(async {
        while patches(&server) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut edited = stored(&server);
    edited["spec"]["http"][1]["route"][0]["weight"] = json!(100);
    edited["metadata"]["annotations"] = json!({"edited-by": "human"});
    server.put_object(&vs_resource(), edited).unwrap();

    let error = within(write)
        .await
        .unwrap()
        .err()
        .expect("the stale patch must fail");
    assert!(matches!(error, RouterError::Conflict { .. }), "{error}");

    // The reconciler's retry: re-read, decide again, write.
    let router = IstioRouter::new(
        server.client().unwrap(),
        target(IstioApiVersion::V1, &["web", "mobile"]),
    );
    let live = within(router.read()).await.unwrap();
    within(router.apply(&live.version, route(30, false)))
        .await
        .unwrap();
    let object = stored(&server);
    let mut expected = expected_spec(30);
    expected["http"][1]["route"][0]["weight"] = json!(100);
    assert_eq!(object["spec"], expected);
    assert_eq!(
        object["metadata"]["annotations"],
        json!({"edited-by": "human"})
    );
}

#[tokio::test]
async fn injected_conflicts_are_conflicts_and_the_retry_writes_once() {
    for code in [409, 422] {
        let (server, router) = setup().await;
        server.inject(Fault::new(
            "PATCH",
            "/virtualservices/checkout",
            FaultKind::Status(code),
            1,
        ));
        let live = within(router.read()).await.unwrap();
        let error = within(router.apply(&live.version, route(30, false)))
            .await
            .unwrap_err();
        assert!(
            matches!(error, RouterError::Conflict { .. }),
            "{code}: {error}"
        );
        assert_eq!(stored(&server)["spec"], expected_spec(0), "{code}");
        let live = within(router.read()).await.unwrap();
        within(router.apply(&live.version, route(30, false)))
            .await
            .unwrap();
        assert_eq!(stored(&server)["spec"], expected_spec(30), "{code}");
    }
}

/// A 500 or a dropped connection fails the call. kube's client itself retries 429, 503
/// and 504 with backoff (its default `RetryPolicy::server_retry`), so a 503 only surfaces
/// when it persists past the router's call timeout.
#[tokio::test]
async fn server_errors_and_dropped_connections_are_unavailable_and_guess_nothing() {
    for (kind, times) in [
        (FaultKind::Status(500), 1),
        (FaultKind::DropConnection, 1),
        (FaultKind::Status(503), 10_000),
    ] {
        let (server, _) = setup().await;
        let router = IstioRouter::new(
            server.client().unwrap(),
            target(IstioApiVersion::V1, &["web", "mobile"]),
        )
        .with_call_timeout(Duration::from_secs(2));
        server.inject(Fault::new(
            "GET",
            "/virtualservices/checkout",
            kind.clone(),
            times,
        ));
        let error = match within(router.read()).await {
            Err(error) => error,
            Ok(live) => panic!("{kind:?}: read answered {live:?}"),
        };
        assert!(
            matches!(error, RouterError::Unavailable { .. }),
            "{kind:?}: {error}"
        );
        assert!(error.is_transient());
        server.clear_faults();

        let live = within(router.read()).await.unwrap();
        server.inject(Fault::new(
            "PATCH",
            "/virtualservices/checkout",
            kind.clone(),
            times,
        ));
        let error = match within(router.apply(&live.version, route(30, false))).await {
            Err(error) => error,
            Ok(version) => panic!("{kind:?}: apply answered {version:?}"),
        };
        assert!(
            matches!(error, RouterError::Unavailable { .. }),
            "{kind:?}: {error}"
        );
        assert_eq!(stored(&server)["spec"], expected_spec(0), "{kind:?}");
    }
}

#[tokio::test]
async fn a_slow_api_server_is_unavailable_within_the_call_timeout() {
    let (server, _) = setup().await;
    let router = IstioRouter::new(
        server.client().unwrap(),
        target(IstioApiVersion::V1, &["web", "mobile"]),
    )
    .with_call_timeout(Duration::from_millis(200));
    server.inject(Fault::new(
        "GET",
        "/virtualservices/checkout",
        FaultKind::Delay(Duration::from_secs(5)),
        1,
    ));
    let started = tokio::time::Instant::now();
    let error = within(router.read()).await.unwrap_err();
    assert!(matches!(error, RouterError::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains("no answer within"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn missing_object_route_or_destination_is_invalid_and_writes_nothing() {
    let (server, _) = setup().await;
    let client = server.client().unwrap();

    let mut missing_vs = target(IstioApiVersion::V1, &["web"]);
    missing_vs.name = "nope".to_owned();
    let router = IstioRouter::new(client.clone(), missing_vs);
    let error = within(router.read()).await.unwrap_err();
    assert!(matches!(error, RouterError::Invalid(_)), "{error}");
    assert!(
        error.to_string().contains("virtualservice shop/nope"),
        "{error}"
    );
    let error = within(router.apply(&Version("1".to_owned()), route(30, false)))
        .await
        .unwrap_err();
    assert!(matches!(error, RouterError::Invalid(_)), "{error}");

    let router = IstioRouter::new(
        client.clone(),
        target(IstioApiVersion::V1, &["web", "checkout-v3"]),
    );
    let error = within(router.read()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no http route named \"checkout-v3\""),
        "{error}"
    );
    let live_version = Version(
        stored(&server)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let error = within(router.apply(&live_version, route(30, false)))
        .await
        .unwrap_err();
    assert!(matches!(error, RouterError::Invalid(_)), "{error}");

    // `admin` has neither destination.
    let router = IstioRouter::new(client, target(IstioApiVersion::V1, &["admin"]));
    let error = within(router.apply(&live_version, route(30, false)))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("\"admin\" (spec.http[1]) has no stable destination"),
        "{error}"
    );
    assert_eq!(patches(&server), 0);
    assert_eq!(stored(&server)["spec"], expected_spec(0));
}

#[tokio::test]
async fn the_policy_api_version_picks_the_path() {
    let (server, _) = setup().await;
    let router = IstioRouter::new(
        server.client().unwrap(),
        target(IstioApiVersion::V1beta1, &["web", "mobile"]),
    );
    let live = within(router.read()).await.unwrap();
    within(router.apply(&live.version, route(10, false)))
        .await
        .unwrap();
    let gets = server.requests_matching("GET", "/virtualservices/checkout");
    assert!(gets.iter().all(|r| r
        .path
        .starts_with("/apis/networking.istio.io/v1beta1/namespaces/shop/")));
    assert_eq!(stored(&server)["spec"], expected_spec(10));
}

#[tokio::test]
async fn a_hand_edit_of_one_managed_route_reads_as_drift_and_rollback_still_writes_once() {
    let (server, router) = setup().await;
    let live = within(router.read()).await.unwrap();
    within(router.apply(&live.version, route(30, true)))
        .await
        .unwrap();

    // Someone moves the `mobile` route (now spec.http[3], behind the test route) to 80%.
    let mut edited = stored(&server);
    edited["spec"]["http"][3]["route"][1]["weight"] = json!(20);
    edited["spec"]["http"][3]["route"][2]["weight"] = json!(80);
    server.put_object(&vs_resource(), edited).unwrap();

    let live = within(router.read()).await.unwrap();
    assert_eq!(
        live.route,
        route(80, true),
        "the highest canary weight is reported"
    );

    let before = patches(&server);
    within(router.apply(&live.version, route(0, false)))
        .await
        .unwrap();
    assert_eq!(patches(&server), before + 1);
    assert_eq!(stored(&server)["spec"], expected_spec(0));
}

/// Reads from the watch cache (the object kept as text) send no GET once the watch has
/// listed the namespace; an edit the watch shows is read as the new version.
#[tokio::test]
async fn a_cached_object_edited_by_someone_else_is_read_again() {
    let (server, router) = setup().await;
    let cache = std::sync::Arc::new(shiftgate::router::watch_cache::ObjectCache::new(
        server.client().unwrap(),
    ));
    let router = router.with_cache(cache);
    let gets = || {
        server
            .requests_matching("GET", "/virtualservices/checkout")
            .len()
    };
    let first = within(router.read()).await.unwrap();
    assert_eq!(first.route, route(0, false));
    // Until the watch has listed the namespace a read is a GET; then none.
    within(async {
        loop {
            let before = gets();
            within(router.read()).await.unwrap();
            if gets() == before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let settled = gets();
    for _ in 0..3 {
        assert_eq!(within(router.read()).await.unwrap(), first);
    }
    assert_eq!(gets(), settled, "an unchanged cached object needs no GET");

    let mut edited = stored(&server);
    edited["spec"]["http"][0]["route"][0]["weight"] = json!(70);
    edited["spec"]["http"][0]["route"][1]["weight"] = json!(30);
    edited["spec"]["http"][2]["route"][1]["weight"] = json!(70);
    edited["spec"]["http"][2]["route"][2]["weight"] = json!(30);
    server.put_object(&vs_resource(), edited).unwrap();
    let seen = within(async {
        loop {
            let live = router.read().await.unwrap();
            if live.version != first.version {
                return live;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(seen.route, route(30, false));
    assert_eq!(gets(), settled, "the edit came through the watch");
}
