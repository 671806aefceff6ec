//! Issue "lifecycle" §3: the Deployments behind a rollout. Before it, nothing looked at
//! the Deployments: traffic moved to a canary whose pods were not up, a new image
//! needed a hand-edited `spec.revision`, and the previous stable ran forever. Each test
//! runs against the real kube-apiserver as deploy/'s ServiceAccount (the RBAC shipped
//! is what is used) with the Deployments' status written by the test. Blue/green with
//! colours names one Deployment per colour; before that, `workloads` with `colors` was
//! refused, so seed 004's pipeline could not name its Deployments at all.

use serde_json::json;
use shiftgate::policy::Phase;

use super::support::workloads::{
    coloured_spec, create, deployments, replicas, server, set_available, spec, ColourWorld, World,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_moved_before_the_canary_deployment_was_available() {
    let server = server();
    let namespace = server.create_namespace("lifecycle-wait-available").await;
    let api = deployments(server, &namespace).await;
    create(&api, "web-blue", "web:1", 2).await;
    set_available(&api, "web-blue", 2).await;
    create(&api, "web-green", "web:2", 2).await;
    set_available(&api, "web-green", 1).await;
    let world = World::new(server, &namespace).await;
    let spec = spec(Some("v2"), json!({}));

    for _ in 0..3 {
        let outcome = world.tick_after(5, &spec).await;
        assert!(outcome.writes.is_empty(), "{:?}", outcome.writes);
        assert_eq!(outcome.status.phase, Phase::Waiting);
        let message = outcome.status.message.unwrap_or_default();
        assert!(
            message.contains("web-green") && message.contains("1 of 2"),
            "{message}"
        );
    }
    assert_eq!(world.router.route().canary_weight, 0);

    set_available(&api, "web-green", 2).await;
    let outcome = world.tick_after(5, &spec).await;
    assert_eq!(outcome.status.phase, Phase::Progressing);
    assert_eq!(world.router.route().canary_weight, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_change_of_the_canary_deployment_did_not_start_a_rollout() {
    let server = server();
    let namespace = server.create_namespace("lifecycle-revision-from").await;
    let api = deployments(server, &namespace).await;
    create(&api, "web-blue", "registry.example/web:1", 2).await;
    set_available(&api, "web-blue", 2).await;
    create(&api, "web-green", "registry.example/web:2", 2).await;
    let world = World::new(server, &namespace).await;
    let spec = spec(None, json!({ "revisionFrom": "canaryDeployment" }));

    let first = world.tick_after(0, &spec).await.status;
    let first_revision = first.revision.clone().unwrap();
    assert!(first_revision.starts_with("web:2@"), "{first_revision}");
    // Reading it again changes nothing: the revision is a function of the template.
    let again = world.tick_after(5, &spec).await.status;
    assert_eq!(again.revision.as_deref(), Some(first_revision.as_str()));

    let image = json!({ "spec": { "template": { "spec": {
        "containers": [ { "name": "web", "image": "registry.example/web:3" } ] } } } });
    api.patch(
        "web-green",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(&image),
    )
    .await
    .unwrap();
    let next = world.tick_after(5, &spec).await.status;
    let next_revision = next.revision.clone().unwrap();
    assert!(next_revision.starts_with("web:3@"), "{next_revision}");
    assert!(
        next.history
            .iter()
            .any(|h| *h.message == *format!("revision {next_revision} replaces {first_revision}")),
        "{:#?}",
        next.history
    );
    // The new template's pods are not up yet: the new rollout waits for them.
    assert_eq!(next.phase, Phase::Waiting);
    assert!(world.router.writes() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_stable_was_never_scaled_down_after_a_promotion() {
    let server = server();
    let namespace = server.create_namespace("lifecycle-scale-down").await;
    let api = deployments(server, &namespace).await;
    create(&api, "web-blue", "web:1", 3).await;
    set_available(&api, "web-blue", 3).await;
    create(&api, "web-green", "web:2", 2).await;
    set_available(&api, "web-green", 2).await;
    let world = World::new(server, &namespace).await;
    let spec = spec(Some("v2"), json!({ "scaleDown": { "after": "10m" } }));

    let promoted = world.until_promoted(&spec).await;
    let due = promoted.status.workloads.unwrap().scale_down_at.unwrap();
    assert_eq!(due, world.clock_now() + chrono::Duration::minutes(10));

    let before = world.tick_after(599, &spec).await;
    assert_eq!(
        replicas(&api, "web-blue").await,
        3,
        "scaled down before its delay"
    );
    assert_eq!(before.wake_at, Some(due));

    let after = world.tick_after(1, &spec).await;
    assert_eq!(replicas(&api, "web-blue").await, 0);
    let stored = after.status.workloads.unwrap().scaled_down.unwrap();
    assert_eq!(
        (stored.deployment.as_str(), stored.replicas),
        ("web-blue", 3)
    );
    assert_eq!(
        replicas(&api, "web-green").await,
        2,
        "the new stable is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_the_scale_down_left_the_previous_stable_at_zero() {
    let server = server();
    let namespace = server.create_namespace("lifecycle-undo-scale").await;
    let api = deployments(server, &namespace).await;
    create(&api, "web-blue", "web:1", 3).await;
    set_available(&api, "web-blue", 3).await;
    create(&api, "web-green", "web:2", 2).await;
    set_available(&api, "web-green", 2).await;
    let world = World::new(server, &namespace).await;
    let spec = spec(Some("v2"), json!({ "scaleDown": { "after": "10m" } }));
    world.until_promoted(&spec).await;
    world.tick_after(600, &spec).await;
    assert_eq!(replicas(&api, "web-blue").await, 0);
    set_available(&api, "web-blue", 0).await;

    world
        .commands
        .push(&world.policy, shiftgate::engine::Command::Undo, Some("v2"));
    let asked = world.tick_after(5, &spec).await;
    assert_eq!(replicas(&api, "web-blue").await, 3, "replicas not put back");
    assert!(
        asked.writes.is_empty(),
        "the route moved before the stable was back"
    );
    assert_eq!(world.router.route().canary_weight, 100);
    let waiting = world.tick_after(5, &spec).await;
    assert!(waiting.writes.is_empty());
    assert_eq!(waiting.status.phase, Phase::RollingBack);

    // The Deployment controller's part: the pods are up again.
    set_available(&api, "web-blue", 3).await;
    let undone = world.tick_after(5, &spec).await;
    assert_eq!(world.router.route().canary_weight, 0);
    assert_eq!(undone.status.phase, Phase::RolledBack);
    assert_eq!(replicas(&api, "web-blue").await, 3);
}

#[test]
fn a_local_envoy_run_refuses_workloads_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let text = std::fs::read_to_string("policies/envoy-local.yaml")
        .unwrap()
        .replace(
            "  steps: [0, 25, 50, 100]",
            "  workloads: { stable: web-blue, canary: web-green }\n  steps: [0, 25, 50, 100]",
        )
        .replace("/tmp/shiftgate-local/routes/routes.json", "routes.json");
    std::fs::write(&policy, text).unwrap();
    let output = std::process::Command::new(super::support::envoy::shiftgate_binary())
        .args(["run", policy.to_str().unwrap(), "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains("spec.workloads names Kubernetes Deployments"),
        "{log}"
    );
    assert!(!dir.path().join("routes.json").exists());
}

#[test]
fn workloads_were_refused_with_colours() {
    let example = std::path::Path::new("policies/istio-blue-green-colors-workloads.yaml");
    let loaded = shiftgate::policy::parse::parse_file(example).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let workloads = loaded[0].policy.spec.workloads.clone().unwrap();
    assert_eq!(workloads.colors["blue"], "myapp-blue");
    assert_eq!(workloads.colors["green"], "myapp-green");

    // The colour keys are the router's, said with file:line:col.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.yaml");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("      green: myapp-green ", "      red: myapp-red     ");
    std::fs::write(&wrong, text).unwrap();
    let said: Vec<String> = shiftgate::policy::parse::parse_file(&wrong)
        .err()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        said.iter().any(|d| d.contains(
            "wrong.yaml:31:7: spec.workloads.colors.red: `red` is not a colour of the router"
        )),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|d| d.contains("no Deployment for the router's colour `green`")),
        "{said:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_colour_releases_wait_for_and_scale_down_the_colour_each_left() {
    let server = server();
    let namespace = server.create_namespace("lifecycle-colour-workloads").await;
    let api = deployments(server, &namespace).await;
    create(&api, "web-blue", "web:1", 3).await;
    set_available(&api, "web-blue", 3).await;
    create(&api, "web-green", "web:2", 2).await;
    set_available(&api, "web-green", 2).await;
    let world = ColourWorld::new(server, &namespace).await;
    let scale_down = json!({ "scaleDown": { "after": "10m" } });

    // v2: blue is live, green's Deployment is the canary; promoted into green.
    let v2 = coloured_spec("v2", scale_down.clone());
    let (_, oriented) = world.tick_after(0, &v2).await;
    let w = oriented.workloads.unwrap();
    assert_eq!(
        (w.stable.as_str(), w.canary.as_str()),
        ("web-blue", "web-green")
    );
    world.until_promoted(&v2).await;
    assert_eq!(world.route.green(), 100);
    world.tick_after(599, &v2).await;
    assert_eq!(
        replicas(&api, "web-blue").await,
        3,
        "scaled down before its delay"
    );
    world.tick_after(1, &v2).await;
    assert_eq!(
        replicas(&api, "web-blue").await,
        0,
        "blue, the colour v2 left"
    );
    assert_eq!(replicas(&api, "web-green").await, 2);
    set_available(&api, "web-blue", 0).await;

    // v3, nothing edited but the revision: it goes to blue, whose Deployment is at 0
    // replicas, so nothing moves until CI has deployed blue.
    let v3 = coloured_spec("v3", scale_down);
    let writes = world.route.writes();
    let (waiting, oriented) = world.tick_after(5, &v3).await;
    let w = oriented.workloads.unwrap();
    assert_eq!(
        (w.stable.as_str(), w.canary.as_str()),
        ("web-green", "web-blue")
    );
    assert_eq!(waiting.status.phase, Phase::Waiting);
    let message = waiting.status.message.unwrap_or_default();
    assert!(message.contains("web-blue"), "{message}");
    assert_eq!(world.route.writes(), writes);
    let deploy = json!({ "spec": { "replicas": 3, "template": { "spec": {
        "containers": [ { "name": "web", "image": "web:3" } ] } } } });
    api.patch(
        "web-blue",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(&deploy),
    )
    .await
    .unwrap();
    set_available(&api, "web-blue", 3).await;
    let promoted = world.until_promoted(&v3).await;
    assert_eq!(world.route.green(), 0, "every user on blue");
    assert_eq!(promoted.status.live_color.as_deref(), Some("blue"));

    // Now green, the colour v3 left, is the one scaled down, after the same delay.
    world.tick_after(599, &v3).await;
    assert_eq!(
        replicas(&api, "web-green").await,
        2,
        "scaled down before its delay"
    );
    let (after, _) = world.tick_after(1, &v3).await;
    assert_eq!(replicas(&api, "web-green").await, 0);
    assert_eq!(
        replicas(&api, "web-blue").await,
        3,
        "the live colour is left alone"
    );
    let stored = after.status.workloads.unwrap().scaled_down.unwrap();
    assert_eq!(
        (stored.deployment.as_str(), stored.replicas),
        ("web-green", 2)
    );
}
