//! Policies the Rust types cannot read: refused without stalling the others.

use super::*;

/// `policy(..)` as the API server stores it, with `spec.<field>` replaced by `bad`: a
/// value the CRD schema lets through but the Rust types cannot read.
fn undecodable_policy(name: &str, virtual_service: &str, pointer: &str, bad: Value) -> Value {
    let mut object = serde_json::to_value(policy(
        name,
        json!([0, 100]),
        virtual_service,
        "primary",
        "v2",
    ))
    .unwrap();
    *object.pointer_mut(pointer).unwrap() = bad;
    object
}

/// One policy the types cannot read (in the initial list, and one more arriving by
/// watch) must not stall the others: the good policy is promoted, each bad one gets
/// Accepted=False InvalidPolicy naming its field and one Warning Event, and its
/// VirtualService is never read or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_policy_is_refused_and_does_not_stall_the_others() {
    let cluster = Cluster::start().await;
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    let mut legacy = virtual_service();
    legacy["metadata"]["name"] = json!("legacy");
    cluster.server.put_object(&vs, legacy).unwrap();
    let raw = cluster.raw_policies();
    let create = |object: Value| {
        let raw = raw.clone();
        async move {
            raw.create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .unwrap();
        }
    };
    // Before the daemon starts: a typed list would fail on it, on every retry.
    create(undecodable_policy(
        "broken-steps",
        "legacy",
        "/spec/steps",
        json!(["abc"]),
    ))
    .await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    daemon.wait_ready().await;
    create(undecodable_policy(
        "broken-interval",
        "legacy",
        "/spec/analysis/interval",
        json!("5 parsecs"),
    ))
    .await;
    cluster
        .create_on_checkout("checkout", json!([0, 50, 100]))
        .await;

    for (name, field) in [
        ("broken-steps", "spec.steps[0]"),
        ("broken-interval", "spec.analysis.interval"),
    ] {
        let status = cluster
            .wait_for_status(name, "InvalidPolicy", Duration::from_secs(20), |s| {
                condition(s, "InvalidPolicy").is_some()
            })
            .await;
        let refused = condition(&status, "InvalidPolicy").unwrap();
        assert!(
            refused.message.starts_with(&format!("{field}: ")),
            "{name}: the message names the field first: {:?}",
            refused.message
        );
        assert!(
            refused.message.contains("apply it again"),
            "{name}: the message says what to do: {:?}",
            refused.message
        );
        assert_eq!(refused.observed_generation, Some(1), "{name}");
    }
    let status = cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(40), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert!(condition(&status, "InvalidPolicy").is_none());
    assert_steps_in_order(&cluster.log.weights(), &[0, 50, 100]);

    for name in ["broken-steps", "broken-interval"] {
        let events = cluster.event_reasons(name).await;
        assert_eq!(events.len(), 1, "{name}: exactly one Event: {events:?}");
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_str()),
            ("Warning", "InvalidPolicy"),
            "{name}"
        );
        assert!(events[0].2.contains("spec."), "{name}: {events:?}");
    }
    assert!(
        cluster
            .server
            .requests_matching("*", "/virtualservices/legacy")
            .is_empty(),
        "the route of an undecodable policy was touched"
    );
    daemon.stop().await;
}

/// A policy edited mid-rollout into one the types cannot read stops being driven: no
/// further route writes, the route keeps its live weights, and the policy gets
/// Accepted=False InvalidPolicy naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_edited_into_an_undecodable_one_mid_rollout_is_no_longer_driven() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create_on_checkout("checkout", json!(LONG_STEPS))
        .await;
    cluster
        .wait_for_status("checkout", "step 2", Duration::from_secs(40), |s| {
            s.step >= 2
        })
        .await;
    cluster
        .raw_policies()
        .patch(
            "checkout",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "steps": [0, 20, "forty", 100] } })),
        )
        .await
        .unwrap();
    let status = cluster
        .wait_for_status("checkout", "InvalidPolicy", Duration::from_secs(20), |s| {
            condition(s, "InvalidPolicy").is_some()
        })
        .await;
    let refused = condition(&status, "InvalidPolicy").unwrap();
    assert!(
        refused.message.starts_with("spec.steps[2]: "),
        "{:?}",
        refused.message
    );
    let writes = cluster.log.weights();
    let live = canary_weight(&cluster.virtual_service().await);
    assert_eq!(Some(&(live as u8)), writes.last(), "{writes:?}");
    // Several analysis intervals (1s): a driven rollout would advance in this time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        cluster.log.weights(),
        writes,
        "the rollout was still driven"
    );
    assert_eq!(canary_weight(&cluster.virtual_service().await), live);
    let after = cluster.status("checkout").await;
    assert_ne!(after.phase, Phase::Promoted);
    let events = cluster.event_reasons("checkout").await;
    let invalid: Vec<_> = events
        .iter()
        .filter(|(_, r, _)| r == "InvalidPolicy")
        .collect();
    assert_eq!(invalid.len(), 1, "{events:?}");
    daemon.stop().await;
}

/// With two replicas, only the leader writes an undecodable policy's refusal: one
/// Warning Event, reported by the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_refuses_an_undecodable_policy() {
    let cluster = Cluster::start().await;
    let metrics = ScriptedErrorRate::new(0.001);
    let a = cluster.daemon("pod-a", metrics.clone(), true);
    cluster.wait_for_leader("pod-a").await;
    let b = cluster.daemon("pod-b", metrics, true);
    b.wait_ready().await;
    cluster
        .raw_policies()
        .create(
            &PostParams::default(),
            &serde_json::from_value(undecodable_policy(
                "broken",
                "checkout",
                "/spec/steps",
                json!([0, "half"]),
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    cluster
        .wait_for_status("broken", "InvalidPolicy", Duration::from_secs(20), |s| {
            condition(s, "InvalidPolicy").is_some()
        })
        .await;
    // Both replicas have seen it by now; give a wrongly writing follower time to act.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let instances: Vec<String> = cluster
        .events_about("broken")
        .await
        .iter()
        .map(|e| e["reportingInstance"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(instances, ["pod-a"], "one Event, from the leader");
    assert!(cluster.log.weights().is_empty());
    a.stop().await;
    b.stop().await;
}
