//! Issue "scale" (found by its benchmark): the daemon reads routes from a watch, and a
//! watch that re-lists can hand a reconcile the route from before the daemon's own last
//! write. Drift was called on that read alone, and the rollout paused.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use shiftgate::engine::TransitionKind;
use shiftgate::policy::status::Phase;
use shiftgate::router::memory::MemoryRouter;
use shiftgate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::commands::NoCommands;
use shiftgate::runtime::{Reconciler, Seams};
use shiftgate::store::memory::MemoryStore;

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
