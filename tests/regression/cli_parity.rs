//! Regression tests of issue "operate" §7 (CLI parity with the Argo Rollouts plugin)
//! and §4's Grafana link in `status`: the built binaries against the test API server
//! (through a generated kubeconfig) and local state directories.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use shiftgate::cli::exit;
use shiftgate::policy::RolloutPolicy;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

const SHIFTGATE: &str = env!("CARGO_BIN_EXE_shiftgate");
const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-shiftgate");
const POLICY: &str = include_str!("../../policies/envoy-local.yaml");

/// A RolloutPolicy `shop/checkout` whose status is `status`.
fn policy_object(status: Value) -> Value {
    json!({
        "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
        "metadata": { "name": "checkout", "namespace": "shop" },
        "spec": {
            "revision": "v2", "steps": [0, 30, 100],
            "grafana": { "url": "https://grafana.example", "dashboard": "shiftgate-rollout" },
        },
        "status": status,
    })
}

fn rolled_back() -> Value {
    json!({
        "revision": "v2", "phase": "RolledBack", "step": 1, "canaryWeight": 0,
        "startedAt": "2026-01-05T10:00:00Z",
        "reason": "RolledBack", "message": "every request is back on stable",
        "history": [{
            "at": "2026-01-05T10:05:00Z", "phase": "RolledBack", "step": 1,
            "canaryWeight": 0, "reason": "RolledBack",
            "message": "every request is back on stable",
        }],
    })
}

/// A test API server holding `shop/checkout`, and a temp dir with a kubeconfig whose
/// context's namespace is `default` (so only `-n shop` finds the policy).
fn cluster(status: Value) -> (TestApiServer, tempfile::TempDir) {
    let server = TestApiServer::start_background().unwrap();
    server
        .put_object(&ResourceRef::of::<RolloutPolicy>(), policy_object(status))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    server.write_kubeconfig(dir.path(), "default").unwrap();
    (server, dir)
}

/// Runs `binary ARGS` with no kubeconfig in the environment unless `kubeconfig`.
fn run(binary: &str, dir: &Path, kubeconfig: bool, args: &[&str]) -> Output {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("HOME", dir)
        .env("SHIFTGATE_STATE_DIR", dir.join("state"))
        .env_remove("KUBECONFIG")
        .env_remove("SHIFTGATE_CLUSTER")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null());
    if kubeconfig {
        command.env("KUBECONFIG", dir.join("kubeconfig"));
    }
    command.output().unwrap()
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn status_exits_zero_on_a_rolled_back_rollout() {
    let (_server, dir) = cluster(rolled_back());
    let out = run(
        SHIFTGATE,
        dir.path(),
        true,
        &["status", "shop/checkout", "--cluster"],
    );
    assert_eq!(out.status.code(), Some(exit::ROLLED_BACK), "{}", said(&out));
    let out = run(
        PLUGIN,
        dir.path(),
        true,
        &["status", "shop/checkout", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(exit::ROLLED_BACK), "{}", said(&out));
}

#[test]
fn plugin_rejects_namespace_before_the_subcommand() {
    let (_server, dir) = cluster(rolled_back());
    let out = run(
        PLUGIN,
        dir.path(),
        true,
        &["-n", "shop", "status", "checkout"],
    );
    let text = said(&out);
    assert!(text.contains("shop/checkout revision v2"), "{text}");
    assert_eq!(out.status.code(), Some(exit::ROLLED_BACK), "{text}");
}

#[test]
fn plugin_rejects_kubeconfig() {
    let (_server, dir) = cluster(rolled_back());
    let kubeconfig = dir.path().join("kubeconfig");
    let kubeconfig = kubeconfig.to_str().unwrap();
    // No $KUBECONFIG and no ~/.kube/config: only the flag names the cluster.
    for args in [
        [
            "--kubeconfig",
            kubeconfig,
            "status",
            "checkout",
            "-n",
            "shop",
        ],
        [
            "status",
            "checkout",
            "-n",
            "shop",
            "--kubeconfig",
            kubeconfig,
        ],
    ] {
        let out = run(PLUGIN, dir.path(), false, &args);
        let text = said(&out);
        assert!(
            text.contains("shop/checkout revision v2"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn check_cannot_read_stdin() {
    let mut child = Command::new(SHIFTGATE)
        .args(["check", "-", "--output", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(POLICY.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", said(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["policies"], 1, "{report}");
}

#[test]
fn check_takes_every_document_for_a_policy() {
    let dir = tempfile::tempdir().unwrap();
    let stream = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{ name: web }}\nspec: {{ replicas: 2 }}\n\
         ---\n{POLICY}---\napiVersion: v1\nkind: Service\nmetadata: {{ name: web }}\n"
    );
    let file = dir.path().join("kustomize-output.yaml");
    std::fs::write(&file, stream).unwrap();
    let file = file.to_str().unwrap();
    let out = run(SHIFTGATE, dir.path(), false, &["check", file]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(exit::OK), "{text}");
    assert!(text.contains("skipped Deployment web"), "{text}");
    assert!(text.contains("skipped Service web"), "{text}");
    let strict = run(SHIFTGATE, dir.path(), false, &["check", "--strict", file]);
    assert_eq!(
        strict.status.code(),
        Some(exit::INVALID_INPUT),
        "{}",
        said(&strict)
    );
}

#[test]
fn plugin_help_says_local_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let top = said(&run(PLUGIN, dir.path(), false, &["--help"]));
    assert!(top.contains("Usage: kubectl shiftgate"), "{top}");
    assert!(!top.contains("local rollout"), "{top}");
    let status = said(&run(PLUGIN, dir.path(), false, &["status", "--help"]));
    assert!(
        status.contains("Usage: kubectl shiftgate status"),
        "{status}"
    );
    assert!(status.contains("RolloutPolicy"), "{status}");
    assert!(!status.contains("local rollout"), "{status}");
    assert!(!status.contains("--state-dir"), "{status}");
}

#[test]
fn grafana_link_missing_from_status() {
    let (_server, dir) = cluster(rolled_back());
    // Ended: the range is pinned from a minute before the start to a minute after the end.
    let pinned = "https://grafana.example/d/shiftgate-rollout?var-namespace=shop&var-name=checkout\
                  &from=1767607140000&to=1767607560000";
    let text = said(&run(
        PLUGIN,
        dir.path(),
        true,
        &["status", "checkout", "-n", "shop"],
    ));
    assert!(text.contains(&format!("grafana: {pinned}")), "{text}");
    let out = run(
        PLUGIN,
        dir.path(),
        true,
        &["status", "checkout", "-n", "shop", "-o", "json"],
    );
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["grafanaUrl"], pinned, "{document}");
}
