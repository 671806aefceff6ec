//! Issue "scale" (found by its benchmark): the daemon reads routes from a watch.
//! - A watch that re-lists could hand a reconcile the route from before the daemon's
//!   own last write; drift was called on that read alone, and the rollout paused.
//! - A route the cache forgot (after a refused write) was read with a GET on every
//!   evaluation, until someone else changed the object.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kube::api::ApiResource;
use kube::core::GroupVersionKind;
use serde_json::json;
use shiftgate::engine::TransitionKind;
use shiftgate::policy::status::Phase;
use shiftgate::router::istio::{IstioRouter, IstioTarget};
use shiftgate::router::memory::MemoryRouter;
use shiftgate::router::watch_cache::ObjectCache;
use shiftgate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::commands::NoCommands;
use shiftgate::runtime::{Reconciler, Seams};
use shiftgate::store::memory::MemoryStore;
use shiftgate::testkit::apiserver::{Fault, FaultKind, ResourceRef, TestApiServer};

use super::support::command_world::{policy, spec, World};

/// A router read through a watch that has not shown our last write: `read` answers the
/// route as it was before it; the router itself (`read_fresh`) has the write.
struct LaggingWatch {
    inner: Arc<MemoryRouter>,
    before_last_write: Mutex<Option<LiveRoute>>,
}

#[async_trait]
impl TrafficRouter for LaggingWatch {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        let stale = self.before_last_write.lock().unwrap().clone();
        match stale {
            Some(stale) => Ok(stale),
            None => self.inner.read().await,
        }
    }

    async fn read_fresh(&self) -> Result<LiveRoute, RouterError> {
        self.inner.read().await
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        let before = self.inner.read().await?;
        let written = self.inner.apply(expect, desired).await?;
        *self.before_last_write.lock().unwrap() = Some(before);
        Ok(written)
    }
}

#[tokio::test]
async fn a_route_read_from_a_lagging_watch_is_called_drift() {
    let world = World::new();
    let router = Arc::new(LaggingWatch {
        inner: world.router.clone(),
        before_last_write: Mutex::new(None),
    });
    let reconciler = Reconciler::new(Seams {
        router: router.clone(),
        metrics: world.metrics.clone(),
        store: Arc::new(MemoryStore::default()),
        checks: Arc::new(ScriptedChecks::passing()),
        commands: Arc::new(NoCommands),
        clock: world.clock.clone(),
    });
    let spec = spec("v2");
    let mut drift = Vec::new();
    let mut status = None;
    // 0 % → 20 % (held an hour), then ten more evaluations through the lagging watch.
    for _ in 0..12 {
        let outcome = reconciler.tick(&policy(), &spec).await.unwrap();
        drift.extend(
            outcome
                .transitions
                .iter()
                .filter(|t| t.kind == TransitionKind::Drift)
                .map(|t| t.message.clone()),
        );
        status = Some(outcome.status);
        world.clock.advance(chrono::Duration::seconds(30));
    }
    let status = status.unwrap();
    assert_eq!(world.weight(), 20, "the rollout never wrote its 20 % step");
    assert!(drift.is_empty(), "drift called on a stale read: {drift:?}");
    assert_ne!(status.phase, Phase::Paused);
    assert_eq!(status.canary_weight, 20);

    // Drift the router itself shows is still drift.
    world.router.set_external(ManagedRoute {
        canary_weight: 0,
        test_route: false,
    });
    *router.before_last_write.lock().unwrap() = None;
    let outcome = reconciler.tick(&policy(), &spec).await.unwrap();
    assert!(
        outcome
            .transitions
            .iter()
            .any(|t| t.kind == TransitionKind::Drift),
        "a real drift went unnoticed: {:?}",
        outcome.transitions
    );
    assert_eq!(outcome.status.phase, Phase::Paused);
}

#[tokio::test]
async fn a_route_the_cache_forgot_is_read_with_a_get_on_every_evaluation() {
    let server = TestApiServer::start().await.unwrap();
    let resource = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    server
        .put_object(
            &resource,
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": { "name": "checkout", "namespace": "shop" },
                "spec": { "hosts": ["checkout"], "http": [{ "name": "primary", "route": [
                    { "destination": { "host": "checkout", "subset": "v1" }, "weight": 100 },
                    { "destination": { "host": "checkout", "subset": "v2" }, "weight": 0 },
                ] }] },
            }),
        )
        .unwrap();
    let spec = serde_json::from_value(json!({
        "virtualService": "checkout",
        "routes": ["primary"],
        "stable": { "host": "checkout", "subset": "v1" },
        "canary": { "host": "checkout", "subset": "v2" },
    }))
    .unwrap();
    let client = server.client().unwrap();
    let cache = Arc::new(ObjectCache::new(client.clone()));
    let router = IstioRouter::new(
        client,
        IstioTarget::from_policy("checkout", "shop", &spec, None),
    )
    .with_cache(cache.clone());
    let api_resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    );
    let started = tokio::time::Instant::now();
    while cache.get(&api_resource, "shop", "checkout").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the watch never listed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A write refused as a conflict: the cache forgets the object.
    let live = router.read().await.unwrap();
    server.inject(Fault::new(
        "PATCH",
        "/virtualservices/checkout",
        FaultKind::Status(409),
        1,
    ));
    let refused = router
        .apply(
            &live.version,
            ManagedRoute {
                canary_weight: 50,
                test_route: false,
            },
        )
        .await;
    assert!(
        matches!(refused, Err(RouterError::Conflict { .. })),
        "{refused:?}"
    );
    server.clear_requests();
    for _ in 0..5 {
        router.read().await.unwrap();
    }
    let gets = server
        .requests_matching("GET", "/virtualservices/checkout")
        .len();
    assert_eq!(gets, 1, "one GET after the conflict, then the cache again");
}
