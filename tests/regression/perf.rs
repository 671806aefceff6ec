//! Issue "scale": what one evaluation costs. The API requests are counted on the test
//! API server with the helpers of `scale.rs`; CPU and allocations per evaluation come
//! from `benches/runtime_scale.rs` (docs/benchmarks.md), never from a timed test.

use super::scale::{progressing, Window};

/// An evaluation that moves a weight sent four requests: the write-ahead status patch,
/// the VirtualService patch, a second status patch confirming the write, and the
/// StepAdvanced Event. The write-ahead status now says by when the write landed, so
/// the next evaluation confirms it in its own status patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_moving_evaluation_costs_four_api_requests() {
    let window: Window = progressing().await;
    let requests = window
        .requests
        .iter()
        .filter(|r| !r.path.contains("watch=true"))
        .count();
    assert!(
        requests <= 3 * window.evaluations,
        "{requests} requests: {}",
        window.describe()
    );
    for (method, path) in [
        ("PATCH", "/rolloutpolicies/checkout/status"),
        ("PATCH", "/virtualservices/checkout"),
        ("POST", "/events"),
    ] {
        assert_eq!(
            window.count(method, path),
            window.evaluations,
            "{method} {path}: {}",
            window.describe()
        );
    }
}

/// The status is written before the route, already showing the step's new weight; a
/// route write that then fails writes the status back to the weight the route has,
/// with the write still to do, so a restart neither adopts nor loses it.
#[tokio::test]
async fn a_failed_step_write_puts_the_route_weight_back_in_the_status() {
    use std::sync::Arc;

    use shiftgate::router::memory::RouterFaults;
    use shiftgate::runtime::commands::QueuedCommands;
    use shiftgate::store::memory::MemoryStore;
    use shiftgate::store::StateStore;

    use super::support::command_world::{policy, spec, World};

    let world = World::new();
    let store = Arc::new(MemoryStore::default());
    let reconciler = world.reconciler(store.clone(), Arc::new(QueuedCommands::default()));
    world.router.set_faults(RouterFaults {
        unavailable: true,
        ..RouterFaults::default()
    });
    let v1 = spec("v1");
    for _ in 0..5 {
        reconciler.tick(&policy(), &v1).await.unwrap();
        world.clock.advance(chrono::Duration::seconds(1));
    }
    let (status, _) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!(world.weight(), 0);
    assert_eq!(status.canary_weight, 0, "{status:#?}");
    assert_eq!(status.target.map(|t| t.canary_weight), Some(20));
    assert_eq!(status.unconfirmed_write, None);
    world.router.set_faults(RouterFaults::default());
    reconciler.tick(&policy(), &v1).await.unwrap();
    let (status, _) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!((world.weight(), status.canary_weight), (20, 20));
    assert_eq!(status.target, None);
}
