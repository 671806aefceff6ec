//! The Envoy router against a real Envoy: every weight it claims is what Envoy serves,
//! measured on real requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use futures::StreamExt;
use shiftgate::policy::{HeaderMatch, TestRoute};
use shiftgate::router::envoy::EnvoyRouter;
use shiftgate::router::{ManagedRoute, RouterError, TrafficRouter, Version};
use support::envoy::{start, upstream_requests};

const REQUESTS_PER_STEP: u64 = 600;

fn route(canary_weight: u8, test_route: bool) -> ManagedRoute {
    ManagedRoute {
        canary_weight,
        test_route,
    }
}

fn cookie_route() -> TestRoute {
    TestRoute {
        cookie: Some("test=true".into()),
        header: None,
    }
}

/// Sends `n` requests through Envoy's listener; counts answers by version.
async fn send(listener: SocketAddr, n: u64, headers: &[(&str, &str)]) -> BTreeMap<String, u64> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{listener}/");
    let answers: Vec<String> = futures::stream::iter(0..n)
        .map(|_| {
            let mut request = http.get(&url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.text().await.unwrap().trim().to_owned()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut counts = BTreeMap::new();
    for version in answers {
        *counts.entry(version).or_insert(0) += 1;
    }
    counts
}

/// Asserts `canary` of `n` requests is within 4 binomial standard deviations of the weight.
fn assert_split(weight: u8, n: u64, canary: u64, what: &str) {
    let p = f64::from(weight) / 100.0;
    let expected = n as f64 * p;
    let tolerance = 4.0 * (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (canary as f64 - expected).abs() <= tolerance,
        "{what}: {canary} of {n} requests reached the canary at weight {weight} \
         (expected {expected:.0} ± {tolerance:.0})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_move_and_envoy_serves_each_split() {
    let local = start().await;
    let router = EnvoyRouter::new(&local.envoy.router, None).unwrap();
    let admin = local.envoy.admin;
    let mut version = router.read().await.unwrap().version;
    for weight in [0u8, 30, 60, 100, 60, 30, 0] {
        #[allow(clippy::disallowed_methods)] // measuring the confirmation latency
        let started = std::time::Instant::now();
        version = router.apply(&version, route(weight, false)).await.unwrap();
        eprintln!(
            "weight {weight}: written and confirmed in {:?}",
            started.elapsed()
        );
        let live = router.read().await.unwrap();
        assert_eq!(live.route, route(weight, false));
        assert_eq!(live.version, version);

        let canary_before = upstream_requests(admin, "canary").await;
        let stable_before = upstream_requests(admin, "stable").await;
        let answers = send(local.envoy.listener, REQUESTS_PER_STEP, &[]).await;
        let canary = upstream_requests(admin, "canary").await - canary_before;
        let stable = upstream_requests(admin, "stable").await - stable_before;
        assert_eq!(
            canary + stable,
            REQUESTS_PER_STEP,
            "envoy stats at weight {weight}"
        );
        assert_split(weight, REQUESTS_PER_STEP, canary, "envoy stats");
        // What the apps answered agrees with Envoy's own count.
        assert_eq!(answers.get("v2").copied().unwrap_or(0), canary);
        assert_eq!(answers.get("v1").copied().unwrap_or(0), stable);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_only_grow_and_a_stale_write_conflicts() {
    let local = start().await;
    let router = EnvoyRouter::new(&local.envoy.router, None).unwrap();
    let first = router.read().await.unwrap().version;
    let second = router.apply(&first, route(30, false)).await.unwrap();
    let first_n: u64 = first.0.parse().unwrap();
    let second_n: u64 = second.0.parse().unwrap();
    assert!(second_n > first_n, "{first_n} -> {second_n}");

    let stale = router.apply(&first, route(60, false)).await;
    assert!(
        matches!(stale, Err(RouterError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(router.read().await.unwrap().route, route(30, false));
    // Writing what is already served is a no-op that keeps the version.
    assert_eq!(
        router.apply(&second, route(30, false)).await.unwrap(),
        second
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_route_reaches_the_canary_at_weight_zero() {
    let local = start().await;
    let by_cookie = EnvoyRouter::new(&local.envoy.router, Some(&cookie_route())).unwrap();
    let version = by_cookie.read().await.unwrap().version;
    let version = by_cookie.apply(&version, route(0, true)).await.unwrap();
    assert_eq!(by_cookie.read().await.unwrap().route, route(0, true));

    let listener = local.envoy.listener;
    let tagged = send(listener, 50, &[("cookie", "session=abc; test=true")]).await;
    assert_eq!(tagged, BTreeMap::from([("v2".to_owned(), 50)]));
    let users = send(listener, 50, &[("cookie", "session=abc; test=false")]).await;
    assert_eq!(users, BTreeMap::from([("v1".to_owned(), 50)]));

    let header = TestRoute {
        cookie: None,
        header: Some(HeaderMatch {
            name: "x-version".into(),
            exact: Some("v2".into()),
            regex: None,
        }),
    };
    let by_header = EnvoyRouter::new(&local.envoy.router, Some(&header)).unwrap();
    let version = by_header.apply(&version, route(0, false)).await.unwrap();
    let version = by_header.apply(&version, route(0, true)).await.unwrap();
    let tagged = send(listener, 50, &[("x-version", "v2")]).await;
    assert_eq!(tagged, BTreeMap::from([("v2".to_owned(), 50)]));
    let users = send(listener, 50, &[]).await;
    assert_eq!(users, BTreeMap::from([("v1".to_owned(), 50)]));

    // Rollback: weight 0 and no test route, in one write.
    by_header.apply(&version, route(0, false)).await.unwrap();
    let tagged = send(listener, 50, &[("x-version", "v2")]).await;
    assert_eq!(tagged, BTreeMap::from([("v1".to_owned(), 50)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_admin_down_is_unavailable_and_no_weight_is_claimed() {
    let mut local = start().await;
    let router = EnvoyRouter::new(&local.envoy.router, None).unwrap();
    let version = router.read().await.unwrap().version;
    let routes_before = std::fs::read(&local.envoy.router.routes_file).unwrap();
    local.supervisor.kill("envoy");

    let read = router.read().await;
    assert!(
        matches!(read, Err(RouterError::Unavailable { .. })),
        "{read:?}"
    );
    let applied = router.apply(&version, route(30, false)).await;
    match applied {
        Err(e @ RouterError::Unavailable { .. }) => {
            assert!(
                e.to_string().contains(&local.envoy.admin.to_string()),
                "{e}"
            );
            assert!(e.is_transient());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Nothing was written that Envoy would pick up on restart.
    assert_eq!(
        std::fs::read(&local.envoy.router.routes_file).unwrap(),
        routes_before
    );
    let never_served = router.apply(&Version("999".into()), route(0, false)).await;
    assert!(never_served.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_envoy_does_not_have_is_refused_before_any_write() {
    let local = start().await;
    let mut spec = local.envoy.router.clone();
    spec.canary_cluster = "canry".into();
    let router = EnvoyRouter::new(&spec, None).unwrap();
    let version = router.read().await.unwrap().version;
    let routes_before = std::fs::read(&spec.routes_file).unwrap();
    match router.apply(&version, route(30, false)).await {
        Err(e @ RouterError::Invalid(_)) => {
            let text = e.to_string();
            assert!(text.contains("canaryCluster \"canry\""), "{text}");
            assert!(
                text.contains("canary, stable") || text.contains("stable, canary"),
                "{text}"
            );
            assert!(!e.is_transient());
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(std::fs::read(&spec.routes_file).unwrap(), routes_before);
}
