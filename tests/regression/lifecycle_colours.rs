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
