//! `shiftgate status|promote|pause|resume|abort NAME -n NS` and the `kubectl shiftgate`
//! plugin, as built binaries, against the test API server through a generated
//! kubeconfig (`KUBECONFIG`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use shiftgate::policy::RolloutPolicy;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

const NS: &str = "shop";
const SHIFTGATE: &str = env!("CARGO_BIN_EXE_shiftgate");
const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-shiftgate");

/// A server holding one RolloutPolicy mid-rollout, and a temp dir with a kubeconfig
/// (context namespace `shop`) and an empty local state dir.
fn setup() -> (TestApiServer, tempfile::TempDir) {
    let server = TestApiServer::start_background().unwrap();
    server
        .put_object(
            &ResourceRef::of::<RolloutPolicy>(),
            json!({
                "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
                "metadata": { "name": "checkout", "namespace": NS },
                "spec": { "revision": "v2", "steps": [0, 30, 100] },
                "status": {
                    "revision": "v2", "phase": "Progressing", "step": 1, "canaryWeight": 30,
                    "testRoute": true, "reason": "StepAdvanced",
                    "message": "step 2/3: canary weight 30%",
                },
            }),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    server.write_kubeconfig(dir.path(), NS).unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    (server, dir)
}

fn run(binary: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("HOME", dir)
        .env("SHIFTGATE_STATE_DIR", dir.join("state"))
        .env_remove("SHIFTGATE_CLUSTER")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn annotations(server: &TestApiServer) -> Value {
    server
        .get_object(&ResourceRef::of::<RolloutPolicy>(), Some(NS), "checkout")
        .unwrap()["metadata"]["annotations"]
        .clone()
}

#[test]
fn status_reads_the_policy_from_the_cluster() {
    let (server, dir) = setup();
    let out = run(SHIFTGATE, dir.path(), &["status", "checkout", "-n", NS]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("shop/checkout revision v2"), "{text}");
    assert!(
        text.contains("Progressing · step 2/3 · canary 30% + test route"),
        "{text}"
    );
    assert!(
        text.contains("StepAdvanced: step 2/3: canary weight 30%"),
        "{text}"
    );

    let out = run(
        SHIFTGATE,
        dir.path(),
        &["status", "shop/checkout", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["canaryWeight"], 30);
    assert_eq!(status["phase"], "Progressing");
    assert!(
        server
            .requests_matching("GET", "/namespaces/shop/rolloutpolicies/checkout")
            .len()
            >= 2
    );
}

#[test]
fn commands_are_written_as_annotations_with_a_conditional_merge_patch() {
    let (server, dir) = setup();
    let out = run(SHIFTGATE, dir.path(), &["pause", "checkout", "-n", NS]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`pause` for revision v2 requested for shop/checkout"),
        "{}",
        stderr(&out)
    );
    assert_eq!(annotations(&server)["shiftgate.dev/command"], "pause");
    let patch = server
        .requests_matching("PATCH", "/namespaces/shop/rolloutpolicies/checkout")
        .pop()
        .unwrap();
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    let body = patch.json().unwrap();
    assert!(
        body["metadata"]["resourceVersion"].is_string(),
        "conditional: {body}"
    );
    assert_eq!(
        body["metadata"]["annotations"]["shiftgate.dev/command"],
        "pause"
    );
    assert_eq!(
        body["metadata"]["annotations"]["shiftgate.dev/command-revision"], "v2",
        "the command names the running revision"
    );
    assert!(
        body.get("spec").is_none() && body.get("status").is_none(),
        "{body}"
    );

    // The kubectl plugin: namespace from the kubeconfig context; the unhandled pause
    // is reported as replaced.
    let out = run(PLUGIN, dir.path(), &["promote", "checkout", "--full"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("had not been handled yet"),
        "{}",
        stderr(&out)
    );
    let written = annotations(&server);
    assert_eq!(written["shiftgate.dev/command"], "promote-full");
    let id = written["shiftgate.dev/command-id"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = run(SHIFTGATE, dir.path(), &["status", "checkout", "-n", NS]);
    assert!(
        stderr(&out).contains(&format!(
            "command `promote-full` for v2 (id {id}) requested"
        )),
        "{}",
        stderr(&out)
    );

    for (word, written) in [("resume", "resume"), ("abort", "abort")] {
        let out = run(
            SHIFTGATE,
            dir.path(),
            &[word, "checkout", "--cluster", "-n", NS],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(annotations(&server)["shiftgate.dev/command"], written);
    }
}

#[test]
fn missing_policies_and_unreachable_clusters_exit_3_with_a_reason() {
    let (server, dir) = setup();
    let out = run(SHIFTGATE, dir.path(), &["status", "nope", "-n", NS]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("shop/nope not found"),
        "{}",
        stderr(&out)
    );
    let out = run(SHIFTGATE, dir.path(), &["abort", "nope", "-n", NS]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    drop(server); // nothing listens on that port any more
    let out = run(SHIFTGATE, dir.path(), &["status", "checkout", "-n", NS]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("error:"), "{}", stderr(&out));
}

#[test]
fn a_policy_file_or_local_rollout_is_never_looked_up_in_the_cluster() {
    let (server, dir) = setup();
    // A .yaml path means a local rollout, even one that does not exist (yet).
    run(SHIFTGATE, dir.path(), &["pause", "missing-policy.yaml"]);
    // A name with local state is the local rollout unless --cluster says otherwise.
    let local = dir.path().join("state").join(NS);
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("checkout.json"), "{}").unwrap();
    run(SHIFTGATE, dir.path(), &["status", "checkout", "-n", NS]);
    assert!(server.requests_matching("*", "/rolloutpolicies").is_empty());
    let out = run(
        SHIFTGATE,
        dir.path(),
        &["status", "checkout", "-n", NS, "--cluster"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        server
            .requests_matching("GET", "/rolloutpolicies/checkout")
            .len(),
        1
    );
}
