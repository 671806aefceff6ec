//! Policies the daemon does not move: refused ones, a second policy on a route, a paused step.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_policies_get_a_condition_and_an_event_and_nothing_is_written() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create(&policy(
            "missing-vs",
            json!([0, 100]),
            "nope",
            "primary",
            "v2",
        ))
        .await;
    cluster
        .create(&policy(
            "missing-route",
            json!([0, 100]),
            "checkout",
            "nope",
            "v2",
        ))
        .await;
    cluster
        .create(&policy(
            "missing-destination",
            json!([0, 100]),
            "checkout",
            "primary",
            "v9",
        ))
        .await;
    cluster
        .create(&policy(
            "invalid",
            json!([0, 150]),
            "other",
            "primary",
            "v2",
        ))
        .await;
    assert_refused(&cluster, "missing-vs", "RouteInvalid", "nope").await;
    assert_refused(&cluster, "missing-route", "RouteInvalid", "nope").await;
    assert_refused(&cluster, "missing-destination", "RouteInvalid", "v9").await;
    assert_refused(&cluster, "invalid", "InvalidPolicy", "spec.steps").await;

    // Events are sent once per refusal, not per reconcile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = cluster.event_reasons("missing-vs").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(cluster
        .server
        .requests_matching("PATCH", "/virtualservices/")
        .is_empty());
    assert!(cluster.log.weights().is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_policy_on_the_same_route_is_refused() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create_on_checkout("first", json!([0, 50, 100]))
        .await;
    cluster
        .wait_for_status("first", "first accepted", Duration::from_secs(20), |s| {
            s.revision.is_some()
        })
        .await;
    cluster.create_on_checkout("second", json!([0, 100])).await;
    assert_refused(&cluster, "second", "RouteConflict", "shop/first").await;
    cluster
        .wait_for_status("first", "Promoted", Duration::from_secs(40), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(
        cluster.log.weights(),
        vec![50, 100],
        "only the first policy wrote"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_step_waits_for_the_promote_annotation() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create_on_checkout("checkout", json!([0, { "weight": 50, "pause": true }, 100]))
        .await;
    cluster
        .wait_for_status("checkout", "Paused at 50%", Duration::from_secs(30), |s| {
            s.phase == Phase::Paused && s.canary_weight == 50
        })
        .await;
    // Paused means paused: nothing moves while nobody decides.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.status("checkout").await.phase, Phase::Paused);
    assert_eq!(cluster.log.weights(), vec![50]);
    submit_command(
        cluster.server.client().unwrap(),
        NS,
        "checkout",
        shiftgate::engine::Command::Promote,
        "v2",
    )
    .await
    .unwrap();
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(30), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(cluster.log.weights(), vec![50, 100]);
    daemon.stop().await;
}
