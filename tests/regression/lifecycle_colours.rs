//! Regression tests of issue "lifecycle" §1, §2 and §8: colours that alternate, the
//! flip back after a promotion (`undo`), and one `shiftgate run` per route.

use std::process::Output;

use shiftgate::cli::exit;

use super::support::rollout::{stderr, PolicyOptions, Stack};

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// The routes file's generation (`version_info`): it grows by one per write.
fn routes_generation(stack: &Stack) -> u64 {
    let text = std::fs::read_to_string(&stack.local.envoy.router.routes_file).unwrap();
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    doc["version_info"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .or_else(|| doc["version_info"].as_u64())
        .unwrap_or_else(|| panic!("no version_info in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_route_exits_three_naming_the_first() {
    let stack = Stack::start().await;
    // The first run holds 50% for a minute: it is still running when the second starts.
    let policy = stack.write_policy(&PolicyOptions {
        steps: "[0, { weight: 50, hold: 60s }, 100]".to_owned(),
        ..PolicyOptions::default()
    });
    let first = stack.spawn_run(&policy);
    stack
        .wait_for_state("canary at 50%", |s| s["status"]["canaryWeight"] == 50)
        .await;
    // Another policy name, another state directory: the same routes file is the same
    // route.
    let other_state = tempfile::tempdir().unwrap();
    let other_policy = other_state.path().join("other.yaml");
    std::fs::write(
        &other_policy,
        std::fs::read_to_string(&policy)
            .unwrap()
            .replace("name: checkout", "name: checkout-copy"),
    )
    .unwrap();
    let second = std::process::Command::new(super::support::envoy::shiftgate_binary())
        .args(["run", other_policy.to_str().unwrap(), "--state-dir"])
        .arg(other_state.path())
        .env_remove("SHIFTGATE_LOG")
        .output()
        .unwrap();
    let said = stderr(&second);
    assert_eq!(code(&second), exit::COULD_NOT_RUN, "{said}");
    assert!(
        said.contains("already driven by another `shiftgate run`"),
        "{said}"
    );
    assert!(said.contains(&format!("pid {}", first.id())), "{said}");
    assert!(said.contains("policy e2e/checkout"), "{said}");
    assert!(said.contains("Envoy routes file"), "{said}");
    // The second run wrote nothing: the first is still at 50%.
    assert_eq!(stack.served().await.canary_weight, 50);
    assert!(!other_state.path().join("e2e/checkout-copy.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_a_promotion_puts_every_user_back_on_stable_in_one_write() {
    let stack = Stack::start().await;
    let policy = stack.write_policy(&PolicyOptions::default());
    let promoted = stack.run(&policy).await;
    assert_eq!(code(&promoted), exit::OK, "{}", stderr(&promoted));
    assert_eq!(stack.served().await.canary_weight, 100);
    let before = routes_generation(&stack);
    let undo = stack
        .command(&["undo", policy.to_str().unwrap()])
        .output()
        .unwrap();
    let said = stderr(&undo);
    assert_eq!(code(&undo), exit::OK, "{said}");
    assert!(said.contains("every request is back on"), "{said}");
    let served = stack.served().await;
    assert_eq!((served.canary_weight, served.test_route), (0, false));
    assert_eq!(routes_generation(&stack), before + 1, "one write");
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["phase"], "RolledBack");
    assert_eq!(state["status"]["reason"], "Undone");
    // Nothing is left to undo: refused, exit 7, nothing written.
    let again = stack
        .command(&["undo", policy.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&again), exit::NOTHING_TO_UNDO, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already undone"),
        "{}",
        stderr(&again)
    );
    assert_eq!(routes_generation(&stack), before + 1);
}

/// The stack's policy with `colors` (blue: the stack's stable cluster, green: its
/// canary cluster) instead of the fixed clusters, for `revision`.
fn colours_policy(stack: &Stack, revision: &str, canary_color: Option<&str>) -> std::path::PathBuf {
    let router = &stack.local.envoy.router;
    let fixed = format!(
        "      stableCluster: {}\n      canaryCluster: {}\n",
        router.stable_cluster, router.canary_cluster
    );
    let coloured = format!(
        "      colors: {{ blue: {}, green: {} }}\n",
        router.stable_cluster, router.canary_cluster
    );
    let mut text = stack
        .policy_text(&PolicyOptions::default())
        .replace(&fixed, &coloured)
        .replace("revision: v2", &format!("revision: {revision}"));
    assert!(text.contains("colors:"), "{text}");
    if let Some(colour) = canary_color {
        text = text.replace(
            "  revision:",
            &format!("  canaryColor: {colour}\n  revision:"),
        );
    }
    let path = stack
        .state_dir
        .path()
        .join(format!("colours-{revision}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_blue_green_release_goes_to_the_colour_the_last_one_left_idle() {
    let stack = Stack::start().await;
    // Blue (the stack's stable cluster) is live: v2 goes to green.
    let v2 = stack.run(&colours_policy(&stack, "v2", None)).await;
    assert_eq!(code(&v2), exit::OK, "{}", stderr(&v2));
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["canaryColor"], "green", "{state:#}");
    assert_eq!(state["status"]["liveColor"], "green");
    assert_eq!(stack.served().await.canary_weight, 100, "green serves all");
    // Same policy, only the revision changed: v3 goes to blue, the idle colour.
    let v3 = stack.run(&colours_policy(&stack, "v3", None)).await;
    let said = stderr(&v3);
    assert_eq!(code(&v3), exit::OK, "{said}");
    let state = stack.state().unwrap();
    assert_eq!(state["status"]["stableColor"], "green", "{state:#}");
    assert_eq!(state["status"]["canaryColor"], "blue");
    assert_eq!(state["status"]["liveColor"], "blue");
    assert!(said.contains("live colour blue"), "{said}");
    // Blue serves every request again: in the fixed orientation, canary 0.
    assert_eq!(stack.served().await.canary_weight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploying_into_the_live_colour_is_refused_and_writes_nothing() {
    let stack = Stack::start().await;
    // Blue is live; the pipeline (a tag like v2-blue) deploys into blue by mistake.
    let before = routes_generation(&stack);
    let refused = stack.run(&colours_policy(&stack, "v2", Some("blue"))).await;
    let said = stderr(&refused);
    assert_eq!(code(&refused), exit::INVALID_INPUT, "{said}");
    assert!(said.contains("blue"), "{said}");
    assert!(said.contains("is the live colour"), "{said}");
    assert!(said.contains("Nothing was written"), "{said}");
    assert_eq!(routes_generation(&stack), before, "nothing written");
    assert_eq!(stack.served().await.canary_weight, 0);
}

/// `check` described a policy with colours by its unset stable/canary destinations:
/// `destination_service=".default.svc.cluster.local"`, an empty host and no colour.
#[test]
fn check_described_coloured_queries_with_an_empty_host() {
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/istio-blue-green-colors.yaml");
    let output = std::process::Command::new(super::support::envoy::shiftgate_binary())
        .arg("check")
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let said = stderr(&output);
    assert!(!said.contains("destination_service=\".default"), "{said}");
    assert!(
        said.contains("while blue is live (green after a flip)"),
        "{said}"
    );
    assert!(
        said.contains("destination_service=\"myapp.default.svc.cluster.local\""),
        "{said}"
    );
}
