//! Deployments: a revision read from the canary Deployment, undo after a promotion, colours.

use super::*;

/// `revisionFrom` of a canary Deployment that does not exist: refused with the
/// Deployment named, nothing written; once it exists, the revision is its template's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_from_a_missing_deployment_is_refused_until_it_exists() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    let mut derived = policy("derived", json!([0, 100]), "checkout", "primary", "v2");
    derived.spec.revision = String::new();
    derived.spec.workloads = serde_json::from_value(json!({
        "stable": "web-blue", "canary": "web-green", "revisionFrom": "canaryDeployment"
    }))
    .unwrap();
    cluster.create(&derived).await;
    assert_refused(&cluster, "derived", "InvalidPolicy", "web-green").await;
    assert!(cluster.log.weights().is_empty());

    let deployments = ResourceRef::new("apps", "v1", "deployments");
    for name in ["web-blue", "web-green"] {
        cluster
            .server
            .put_object(
                &deployments,
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": { "name": name, "namespace": NS },
                    "spec": { "replicas": 1, "selector": { "matchLabels": { "app": name } },
                              "template": { "metadata": { "labels": { "app": name } },
                                            "spec": { "containers": [{ "name": "web", "image": "registry.example/web:7" }] } } },
                    "status": { "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1 }
                }),
            )
            .unwrap();
    }
    let status = cluster
        .wait_for_status(
            "derived",
            "the derived revision",
            Duration::from_secs(30),
            |s| {
                s.revision
                    .as_deref()
                    .is_some_and(|r| r.starts_with("web:7@"))
            },
        )
        .await;
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status == "True"),
        "{:?}",
        status.conditions
    );
    daemon.stop().await;
}

/// What `undo` looks at before flipping back onto subset `v1` of host `checkout`: its
/// DestinationRule labels, a ready pod carrying them, a ready endpoint of the Service.
fn previous_subset_runs(server: &TestApiServer) {
    server
        .put_object(
            &ResourceRef::new("networking.istio.io", "v1", "destinationrules"),
            json!({ "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                    "metadata": { "name": "checkout", "namespace": NS },
                    "spec": { "host": "checkout", "subsets": [
                        { "name": "v1", "labels": { "version": "v1" } },
                        { "name": "v2", "labels": { "version": "v2" } } ] } }),
        )
        .unwrap();
    server
        .put_object(
            &ResourceRef::new("", "v1", "pods"),
            json!({ "apiVersion": "v1", "kind": "Pod",
                    "metadata": { "name": "checkout-v1-0", "namespace": NS,
                                  "labels": { "version": "v1" } },
                    "spec": { "containers": [ { "name": "app", "image": "checkout:1" } ] },
                    "status": { "conditions": [ { "type": "Ready", "status": "True" } ] } }),
        )
        .unwrap();
    server
        .put_object(
            &ResourceRef::new("discovery.k8s.io", "v1", "endpointslices"),
            json!({ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": { "name": "checkout-x1", "namespace": NS,
                                  "labels": { "kubernetes.io/service-name": "checkout" } },
                    "addressType": "IPv4",
                    "endpoints": [ { "addresses": ["10.0.0.1"], "conditions": { "ready": true },
                                     "targetRef": { "kind": "Pod", "name": "checkout-v1-0" } } ] }),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_a_promotion_flips_back_in_one_write_with_an_event() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    cluster
        .create_on_checkout("checkout", json!([0, 50, 100]))
        .await;
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(30), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(cluster.log.weights(), vec![50, 100]);
    previous_subset_runs(&cluster.server);
    cluster.undo("checkout").await;
    let undone = cluster
        .wait_for_status("checkout", "undone", Duration::from_secs(30), |s| {
            s.phase == Phase::RolledBack
        })
        .await;
    assert_eq!(undone.reason.as_deref(), Some("Undone"));
    assert_eq!(undone.canary_weight, 0);
    assert_eq!(
        cluster.log.weights(),
        vec![50, 100, 0],
        "one write back to the previous stable"
    );
    assert_eq!(canary_weight(&cluster.virtual_service().await), 0);
    let events = cluster.event_reasons("checkout").await;
    assert!(
        events.iter().any(|(kind, reason, note)| kind == "Warning"
            && reason == "RolledBack"
            && note.contains("undo by an operator")),
        "{events:?}"
    );
    // Nothing is left to undo: a second one is refused with an Event, nothing written.
    cluster.undo("checkout").await;
    let started = Instant::now();
    loop {
        let events = cluster.event_reasons("checkout").await;
        if events
            .iter()
            .any(|(_, reason, note)| reason == "CommandRefused" && note.contains("already undone"))
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cluster.log.weights(), vec![50, 100, 0]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_alternates_colours_with_only_the_revision_changed() {
    let cluster = Cluster::start().await;
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    let mut policy = policy("checkout", json!([0, 50, 100]), "checkout", "primary", "v2");
    let spec = serde_json::to_value(&policy.spec).unwrap();
    let mut spec = spec.as_object().unwrap().clone();
    spec["router"]["istio"]
        .as_object_mut()
        .map(|istio| {
            istio.remove("stable");
            istio.remove("canary");
            istio.insert(
                "colors".into(),
                json!({
                    "blue": { "host": "checkout", "subset": "v1" },
                    "green": { "host": "checkout", "subset": "v2" }
                }),
            );
        })
        .unwrap();
    policy.spec = serde_json::from_value(Value::Object(spec)).unwrap();
    cluster.create(&policy).await;
    // Blue (subset v1) serves everyone: v2 goes to green.
    let first = cluster
        .wait_for_status("checkout", "v2 Promoted", Duration::from_secs(30), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(first.canary_color.as_deref(), Some("green"));
    assert_eq!(first.live_color.as_deref(), Some("green"));
    let vs = cluster.virtual_service().await;
    assert_eq!(vs["spec"]["http"][1]["route"][1]["weight"], 100, "{vs:#}");
    // Only the revision changes: v3 goes to blue, the colour v2 left idle.
    let mut next = cluster.policies().get("checkout").await.unwrap();
    next.spec.revision = "v3".into();
    cluster
        .policies()
        .replace("checkout", &PostParams::default(), &next)
        .await
        .unwrap();
    let second = cluster
        .wait_for_status("checkout", "v3 Promoted", Duration::from_secs(30), |s| {
            s.revision.as_deref() == Some("v3") && s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(second.stable_color.as_deref(), Some("green"));
    assert_eq!(second.canary_color.as_deref(), Some("blue"));
    assert_eq!(second.live_color.as_deref(), Some("blue"));
    let vs = cluster.virtual_service().await;
    assert_eq!(vs["spec"]["http"][1]["route"][0]["weight"], 100, "{vs:#}");
    assert_eq!(vs["spec"]["http"][1]["route"][1]["weight"], 0, "{vs:#}");
    assert_eq!(cluster.log.weights(), vec![50, 100, 50, 100]);
    daemon.stop().await;
}

/// A Deployment of colour `name` running `image`, available (the test plays the
/// Deployment controller: whatever generation the server gives it is observed).
fn colour_deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": name } },
                  "template": { "metadata": { "labels": { "app": name } },
                                "spec": { "containers": [{ "name": "web", "image": image }] } } },
        "status": { "observedGeneration": 1000, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1 }
    })
}

/// Colours with `revisionFrom`: the daemon takes what the idle colour runs as its
/// baseline and starts nothing; a new image there starts the rollout; after the flip
/// the colour users left (still on the release before) is not rolled out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rolls_out_what_is_deployed_into_the_idle_colour() {
    let cluster = Cluster::start().await;
    let deployments = ResourceRef::new("apps", "v1", "deployments");
    for (name, image) in [("web-blue", "web:1"), ("web-green", "web:0")] {
        cluster
            .server
            .put_object(&deployments, colour_deployment(name, image))
            .unwrap();
    }
    let daemon = cluster.daemon("pod-a", ScriptedErrorRate::new(0.001), false);
    let mut policy = policy("checkout", json!([0, 100]), "checkout", "primary", "v2");
    let mut spec = serde_json::to_value(&policy.spec).unwrap();
    let istio = spec["router"]["istio"].as_object_mut().unwrap();
    istio.remove("stable");
    istio.remove("canary");
    istio.insert(
        "colors".into(),
        json!({
            "blue": { "host": "checkout", "subset": "v1" },
            "green": { "host": "checkout", "subset": "v2" }
        }),
    );
    spec["workloads"] = json!({
        "colors": { "blue": "web-blue", "green": "web-green" },
        "revisionFrom": "canaryDeployment"
    });
    spec.as_object_mut().unwrap().remove("revision");
    policy.spec = serde_json::from_value(spec).unwrap();
    cluster.create(&policy).await;
    let waiting = cluster
        .wait_for_status(
            "checkout",
            "the idle colour's baseline",
            Duration::from_secs(30),
            |s| s.reason.as_deref() == Some("WaitingForRelease"),
        )
        .await;
    assert!(
        waiting.message.as_deref().unwrap().contains("web-green"),
        "{waiting:?}"
    );
    assert!(cluster.log.weights().is_empty());

    // A new image in green, the idle colour. The daemon looks at Deployments at its
    // resync (30 s here); any change of the policy makes it look now.
    let nudge = |n: u32| {
        let policies = cluster.policies();
        async move {
            let mut current = policies.get("checkout").await.unwrap();
            current
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert("test.example/nudge".into(), n.to_string());
            policies
                .replace("checkout", &PostParams::default(), &current)
                .await
                .unwrap();
        }
    };
    cluster
        .server
        .put_object(&deployments, colour_deployment("web-green", "web:2"))
        .unwrap();
    nudge(1).await;
    let first = cluster
        .wait_for_status("checkout", "web:2 Promoted", Duration::from_secs(30), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    assert!(
        first.revision.as_deref().unwrap().starts_with("web:2@"),
        "{first:?}"
    );
    assert_eq!(first.live_color.as_deref(), Some("green"));
    assert_eq!(cluster.log.weights(), vec![100]);

    // Blue, idle now, still runs web:1: looked at again, it is not rolled out.
    nudge(2).await;
    let baseline = cluster
        .wait_for_status(
            "checkout",
            "blue's baseline",
            Duration::from_secs(30),
            |s| {
                s.workloads
                    .as_ref()
                    .and_then(|w| w.idle_baseline.as_ref())
                    .is_some_and(|b| b.color == "blue" && b.revision.starts_with("web:1@"))
            },
        )
        .await;
    assert_eq!(baseline.revision, first.revision);
    assert_eq!(cluster.log.weights(), vec![100]);

    // A new image in blue: the next release goes there by itself.
    cluster
        .server
        .put_object(&deployments, colour_deployment("web-blue", "web:3"))
        .unwrap();
    nudge(3).await;
    let second = cluster
        .wait_for_status("checkout", "web:3 Promoted", Duration::from_secs(30), |s| {
            s.revision
                .as_deref()
                .is_some_and(|r| r.starts_with("web:3@"))
                && s.phase == Phase::Promoted
        })
        .await;
    assert_eq!(second.live_color.as_deref(), Some("blue"));
    assert_eq!(cluster.log.weights(), vec![100, 100]);
    daemon.stop().await;
}
