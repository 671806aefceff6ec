//! A small world for operator-command tests: one policy driven by the real reconciler
//! on virtual time, a memory router that can be made to hang (so a test can drop a
//! tick in the middle, as a kill would), healthy scripted metrics and passing checks.
//! The store and the command source are the caller's: the file store and file commands
//! (local), or the status store and annotations (daemon).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use shiftgate::metrics::scripted::{MetricBehaviour, MetricScript, ScriptedMetrics, Segment};
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::{RolloutSpec, Timestamp};
use shiftgate::router::memory::MemoryRouter;
use shiftgate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use shiftgate::runtime::checks::ScriptedChecks;
use shiftgate::runtime::{CommandSource, Reconciler, Seams, VirtualClock};
use shiftgate::store::StateStore;
use tokio::sync::Notify;

pub fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    }
}

/// A policy for `revision`: 0 → 20 → 50 → 80 → 100, an hour's hold on each step (so
/// only a command moves it on), a healthy error rate.
pub fn spec(revision: &str) -> RolloutSpec {
    serde_json::from_value(serde_json::json!({
        "revision": revision,
        "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
        "steps": [0, { "weight": 20, "hold": "1h" }, { "weight": 50, "hold": "1h" },
                  { "weight": 80, "hold": "1h" }, 100],
        "analysis": {
            "interval": "30s",
            "minRequests": 0,
            "metrics": [ { "name": "error-rate", "query": "e", "max": 0.05 } ],
        },
    }))
    .unwrap()
}

pub fn start() -> Timestamp {
    chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap()
}

/// The world around one policy; stores and command sources come from the test.
pub struct World {
    pub clock: Arc<VirtualClock>,
    pub router: Arc<MemoryRouter>,
    pub gate: Arc<GatedRouter>,
    pub metrics: Arc<ScriptedMetrics>,
}

impl World {
    pub fn new() -> World {
        let router = Arc::new(MemoryRouter::new(ManagedRoute {
            canary_weight: 0,
            test_route: false,
        }));
        let mut script = MetricScript {
            start: start(),
            ..MetricScript::default()
        };
        script.metrics.insert(
            "error-rate".into(),
            MetricBehaviour {
                canary: vec![Segment {
                    from: Default::default(),
                    value: 0.001,
                }],
                ..MetricBehaviour::default()
            },
        );
        World {
            clock: Arc::new(VirtualClock::new(start())),
            gate: Arc::new(GatedRouter::new(router.clone())),
            metrics: Arc::new(ScriptedMetrics::new(script, router.clone(), 7)),
            router,
        }
    }

    /// A fresh reconciler (a restarted process) on the world's router and clock.
    pub fn reconciler(
        &self,
        store: Arc<dyn StateStore>,
        commands: Arc<dyn CommandSource>,
    ) -> Reconciler {
        Reconciler::new(Seams {
            router: self.gate.clone(),
            metrics: self.metrics.clone(),
            store,
            checks: Arc::new(ScriptedChecks::passing()),
            commands,
            clock: self.clock.clone(),
        })
    }

    pub fn weight(&self) -> u8 {
        self.router.route().canary_weight
    }
}

/// Ticks (a second apart) until the rollout is confirmed at `weight`.
pub async fn tick_until_weight(
    world: &World,
    reconciler: &Reconciler,
    spec: &RolloutSpec,
    weight: u8,
) {
    for _ in 0..20 {
        let outcome = reconciler.tick(&policy(), spec).await.unwrap();
        if outcome.status.canary_weight == weight && outcome.status.target.is_none() {
            return;
        }
        world.clock.advance(chrono::Duration::seconds(1));
    }
    panic!("the rollout never reached {weight}%");
}

/// Runs one tick until the router hangs in it, then drops it: the tick ends there, as
/// the process would if it were killed while the router call was in flight.
pub async fn kill_tick_at_router(world: &World, reconciler: &Reconciler, spec: &RolloutSpec) {
    world.gate.hang_next();
    let policy = policy();
    let tick = reconciler.tick(&policy, spec);
    tokio::select! {
        outcome = tick => panic!("the tick ended without calling the router: {outcome:?}"),
        () = world.gate.hanging() => {}
    }
    world.gate.release();
}

/// A router that, once asked, hangs in its next call (read or write) before touching
/// the route, and says so.
pub struct GatedRouter {
    inner: Arc<MemoryRouter>,
    hang: AtomicBool,
    reached: Notify,
}

impl GatedRouter {
    pub fn new(inner: Arc<MemoryRouter>) -> Self {
        GatedRouter {
            inner,
            hang: AtomicBool::new(false),
            reached: Notify::new(),
        }
    }

    pub fn hang_next(&self) {
        self.hang.store(true, Ordering::SeqCst);
    }

    /// Resolves once a call hangs.
    pub async fn hanging(&self) {
        self.reached.notified().await;
    }

    pub fn release(&self) {
        self.hang.store(false, Ordering::SeqCst);
    }

    async fn gate(&self) {
        if self.hang.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl TrafficRouter for GatedRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        self.gate().await;
        self.inner.read().await
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        self.gate().await;
        self.inner.apply(expect, desired).await
    }
}
