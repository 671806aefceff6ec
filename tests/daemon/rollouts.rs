//! A rollout end to end: every step in order, a rollback, a restart that resumes, a leader that dies.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_every_step_to_promoted_and_touches_only_the_weights() {
    let cluster = Cluster::start().await;
    let before = cluster.virtual_service().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    daemon.wait_ready().await;
    cluster
        .create_on_checkout("checkout", json!([0, 50, 100]))
        .await;
    let status = cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(40), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(status.canary_weight, 100);
    assert_steps_in_order(&cluster.log.weights(), &[0, 50, 100]);

    let mut after = cluster.virtual_service().await;
    assert_eq!(canary_weight(&after), 100);
    // Put the old weights back: nothing else may differ.
    after["spec"]["http"][1]["route"][0]["weight"] = json!(100);
    after["spec"]["http"][1]["route"][1]["weight"] = json!(0);
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);

    let events = cluster.event_reasons("checkout").await;
    let reasons: Vec<&str> = events.iter().map(|(_, r, _)| r.as_str()).collect();
    assert!(reasons.contains(&"RolloutStarted"), "{events:?}");
    assert!(reasons.contains(&"StepAdvanced"), "{events:?}");
    assert!(reasons.contains(&"Promoted"), "{events:?}");
    let (_, _, note) = events.iter().find(|(_, r, _)| r == "Promoted").unwrap();
    assert!(
        note.contains(
            "https://grafana.example/d/shiftgate-rollout?var-namespace=shop&var-name=checkout"
        ),
        "{note}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_canary_is_rolled_back_with_a_warning_event() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.2), false);
    cluster
        .create_on_checkout("checkout", json!([0, 30, 100]))
        .await;
    let status = cluster
        .wait_for_status("checkout", "RolledBack", Duration::from_secs(40), |s| {
            s.phase == Phase::RolledBack
        })
        .await;
    assert_eq!(status.canary_weight, 0);
    assert_eq!(canary_weight(&cluster.virtual_service().await), 0);
    assert_eq!(
        cluster.log.weights(),
        vec![30, 0],
        "one step, then one rollback write"
    );
    let events = cluster.event_reasons("checkout").await;
    let rolled_back = events
        .iter()
        .find(|(_, reason, _)| reason == "RolledBack")
        .unwrap_or_else(|| panic!("no RolledBack event in {events:?}"));
    assert_eq!(rolled_back.0, "Warning");
    assert!(rolled_back.2.contains("error-rate"), "{rolled_back:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_daemon_resumes_from_the_status_without_repeating_a_step() {
    let cluster = Cluster::start().await;
    let metrics = ScriptedErrorRate::new(0.001);
    let first = cluster.daemon("pod-a", metrics.clone(), false);
    cluster
        .create_on_checkout("checkout", json!(LONG_STEPS))
        .await;
    cluster
        .wait_for_status("checkout", "step 2", Duration::from_secs(40), |s| {
            s.step >= 2
        })
        .await;
    first.stop().await;
    let second = cluster.daemon("pod-b", metrics, false);
    // Ready with policies already in the cache (the initial list is not empty).
    second.wait_ready().await;
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(60), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_steps_in_order(&cluster.log.weights(), &LONG_STEPS);
    assert!(
        !cluster.log.by("pod-b").is_empty(),
        "the second daemon continued"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_follower_continues_after_it_dies() {
    let cluster = Cluster::start().await;
    let metrics = ScriptedErrorRate::new(0.001);
    let a = cluster.daemon("pod-a", metrics.clone(), true);
    // a must lead before b starts, so the roles are known.
    cluster.wait_for_leader("pod-a").await;
    let b = cluster.daemon("pod-b", metrics, true);
    cluster
        .create_on_checkout("checkout", json!(LONG_STEPS))
        .await;
    cluster
        .wait_for_status("checkout", "step 2", Duration::from_secs(40), |s| {
            s.step >= 2
        })
        .await;
    assert!(cluster.log.by("pod-b").is_empty(), "a follower wrote");
    // Killed mid-tick, a's last write may land without a reply: count it as landed.
    a.kill();
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(60), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_steps_in_order(&cluster.committed_weights(), &LONG_STEPS);
    assert!(!cluster.log.by("pod-b").is_empty(), "pod-b took over");
    b.stop().await;
}
