//! Issue "lifecycle": `revisionFrom` with colours (the idle colour's Deployment read
//! against its baseline), and the route Lease of a cluster `run` fencing its writes.

use serde_json::json;
use shiftgate::policy::validate::validate_spec;
use shiftgate::policy::{Phase, RolloutSpec};

use super::support::workloads::{
    coloured_spec, create, deployments, server, set_available, set_image, ColourWorld,
};

/// The revision of `outcome`'s rollout, or a panic saying nothing ran.
fn revision(outcome: &Option<(shiftgate::runtime::TickOutcome, RolloutSpec)>) -> String {
    let (outcome, _) = outcome.as_ref().expect("the engine ran");
    outcome.status.revision.clone().unwrap_or_default()
}

/// Ticks every 30 s until the derived rollout is promoted.
async fn until_promoted(world: &ColourWorld, spec: &RolloutSpec) -> String {
    for _ in 0..10 {
        let ticked = world.tick_derived_after(30, spec).await;
        if ticked
            .as_ref()
            .is_some_and(|(o, _)| o.status.phase == Phase::Promoted)
        {
            return revision(&ticked);
        }
    }
    panic!("not promoted after 10 ticks");
}

/// Before: a policy with colours and `revisionFrom` was refused ("not supported with the
/// router's `colors` yet"), so seed 004's "deploy into the idle colour" could not start
/// a rollout. Now two releases go out driven only by images set on the idle colour's
/// Deployment, and the colour a promotion left (still running the release before) is
/// never rolled out again.
#[tokio::test]
async fn revision_from_with_colours_is_refused() {
    let spec = coloured_spec("", json!({ "revisionFrom": "canaryDeployment" }));
    let errors: Vec<_> = validate_spec(&spec)
        .into_iter()
        .filter(|i| i.severity == shiftgate::policy::diagnostic::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    let server = server();
    let namespace = server.create_namespace("lifecycle-fence-colours").await;
    let api = deployments(server, &namespace).await;
    // Blue is live with 1; green, idle, still runs the release before (0).
    create(&api, "web-blue", "web:1", 2).await;
    set_available(&api, "web-blue", 2).await;
    create(&api, "web-green", "web:0", 2).await;
    set_available(&api, "web-green", 2).await;
    let world = ColourWorld::new(server, &namespace).await;

    // The idle colour as first seen is its baseline: nothing rolls out, nothing written.
    for _ in 0..2 {
        assert!(world.tick_derived_after(30, &spec).await.is_none());
    }
    let waiting = world.status().await.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("WaitingForRelease"));
    assert!(
        waiting.message.as_deref().unwrap().contains("web-green"),
        "{waiting:?}"
    );
    assert_eq!(world.route.writes(), 0);

    // Release 2: deployed into green, the idle colour; the rollout starts by itself.
    set_image(&api, "web-green", "web:2").await;
    set_available(&api, "web-green", 2).await;
    let started = world.tick_derived_after(30, &spec).await;
    assert!(
        revision(&started).starts_with("web:2@"),
        "{}",
        revision(&started)
    );
    let promoted = until_promoted(&world, &spec).await;
    assert!(promoted.starts_with("web:2@"), "{promoted}");
    assert_eq!(world.route.green(), 100);

    // Blue, idle now, still runs web:1: never rolled out again.
    let writes = world.route.writes();
    for _ in 0..3 {
        let ticked = world.tick_derived_after(30, &spec).await;
        assert_eq!(revision(&ticked), promoted, "blue re-rolled");
        assert_eq!(ticked.unwrap().0.status.phase, Phase::Promoted);
    }
    assert_eq!(world.route.writes(), writes, "a write after the promotion");

    // Release 3: deployed into blue, the colour release 2 left idle.
    set_image(&api, "web-blue", "web:3").await;
    set_available(&api, "web-blue", 2).await;
    let started = world.tick_derived_after(30, &spec).await;
    let (_, oriented) = started.as_ref().unwrap();
    let w = oriented.workloads.as_ref().unwrap();
    assert_eq!(
        (w.stable.as_str(), w.canary.as_str()),
        ("web-green", "web-blue")
    );
    assert!(
        revision(&started).starts_with("web:3@"),
        "{}",
        revision(&started)
    );
    let promoted = until_promoted(&world, &spec).await;
    assert!(promoted.starts_with("web:3@"), "{promoted}");
    assert_eq!(world.route.green(), 0);

    // Green, idle now with release 2: never rolled out again.
    let writes = world.route.writes();
    for _ in 0..3 {
        let ticked = world.tick_derived_after(30, &spec).await;
        assert_eq!(revision(&ticked), promoted, "green re-rolled");
    }
    assert_eq!(world.route.writes(), writes, "a write after the promotion");
}

/// Polls `condition` every 50 ms until it holds, or panics after `secs` seconds of
/// polls (counted: no clock read).
async fn eventually(what: &str, secs: u64, condition: impl Fn() -> bool) {
    for _ in 0..secs * 20 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(condition(), "{what}: not after {secs}s");
}

/// Before: a cluster `shiftgate run` took its route Lease at the start, but its route
/// writes did not depend on still holding it; a run that lost it (paused, cut off, or
/// taken over) kept writing over the route's new driver. Now every write is fenced by
/// the Lease and the run stops when the Lease is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_writes_after_losing_its_route_lease() {
    use std::sync::Arc;

    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Api, Patch, PatchParams};
    use shiftgate::cli::route_lock::{hold, run_while_held};
    use shiftgate::router::memory::MemoryRouter;
    use shiftgate::router::ManagedRoute;
    use shiftgate::runtime::checks::ScriptedChecks;
    use shiftgate::runtime::clock::VirtualClock;
    use shiftgate::runtime::local::LocalPolicy;
    use shiftgate::runtime::route_lease::{lease_name, LeaseFencedRouter, RouteFence};
    use shiftgate::runtime::{QueuedCommands, Reconciler, Seams};
    use shiftgate::store::memory::MemoryStore;

    let server = shiftgate::testkit::apiserver::TestApiServer::start()
        .await
        .unwrap();
    let client = server.client().unwrap();
    let spec: RolloutSpec = serde_json::from_value(json!({
        "revision": "v2",
        "router": { "service": { "service": "web", "selectorKey": "version",
                                 "stableValue": "v1", "canaryValue": "v2" } },
        "steps": [0, 20, 40, 60, 80, 100],
        "analysis": { "interval": "30s",
                      "metrics": [ { "name": "error-rate", "query": "e", "max": 0.01 } ] }
    }))
    .unwrap();
    let local = LocalPolicy {
        policy: shiftgate::metrics::PolicyRef {
            namespace: "shop".to_owned(),
            name: "web".to_owned(),
        },
        spec: spec.clone(),
        file: "web.yaml".into(),
        namespace_from_file: true,
    };
    // The run's router behind its fence, as `cluster_run::prepare` builds it.
    let route = Arc::new(MemoryRouter::new(ManagedRoute {
        canary_weight: 0,
        test_route: false,
    }));
    let fence = RouteFence::default();
    let clock = Arc::new(VirtualClock::new(
        chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
    ));
    let reconciler = Reconciler::new(Seams {
        router: Arc::new(LeaseFencedRouter::new(route.clone(), fence.clone())),
        metrics: Arc::new(super::support::workloads::Healthy),
        store: Arc::new(MemoryStore::default()),
        checks: Arc::new(ScriptedChecks::passing()),
        commands: Arc::new(QueuedCommands::default()),
        clock: clock.clone(),
    });
    let tick = || async {
        clock.advance(chrono::Duration::seconds(30));
        reconciler.tick(&local.policy, &spec).await.unwrap()
    };

    // While the run holds its Lease, the rollout moves.
    let held = hold(&local, Some(client.clone())).await.unwrap();
    held.arm(&fence);
    for _ in 0..10 {
        if route.route().canary_weight >= 20 {
            break;
        }
        tick().await;
    }
    let weight = route.route().canary_weight;
    assert!(
        (20..100).contains(&weight),
        "the run did not move while it held its Lease: {weight}%"
    );

    // Another run takes the route over (the Lease's holder replaced, renewed now).
    let leases: Api<Lease> = Api::namespaced(client, "shop");
    let name = lease_name("Service shop/web");
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    let takeover = json!({ "spec": { "holderIdentity": "pid 2 on ci-b", "renewTime": now } });
    leases
        .patch(&name, &PatchParams::default(), &Patch::Merge(&takeover))
        .await
        .unwrap();
    eventually("the run sees its Lease lost", 10, || !fence.is_held()).await;

    // From then on the run writes nothing, and stops with the Lease it lost.
    let writes = route.writes();
    let refused = tick().await;
    assert_eq!(route.writes(), writes, "a write after the Lease was lost");
    assert!(
        refused
            .problems
            .iter()
            .any(|p| p.message.contains("route Lease")),
        "{:?}",
        refused.problems
    );
    let run = async {
        loop {
            tick().await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let stopped = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        run_while_held(Some(&held), "shop", run),
    )
    .await
    .expect("the run did not stop after losing its Lease");
    let lost = stopped.expect_err("the run went on");
    assert_eq!(lost.key, "Service shop/web");
    assert!(
        lost.to_string().contains("wrote nothing after the loss"),
        "{lost}"
    );
    assert_eq!(route.writes(), writes, "a write after the Lease was lost");
    assert_eq!(route.route().canary_weight, weight);
    held.release().await;
}
