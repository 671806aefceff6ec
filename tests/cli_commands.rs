//! `status --watch`, `list`, `retry`, `completion` and the global flags, as built
//! binaries against the test API server (through a generated kubeconfig) and local
//! state directories.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shiftgate::cli::exit;
use shiftgate::policy::RolloutPolicy;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

const SHIFTGATE: &str = env!("CARGO_BIN_EXE_shiftgate");
const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-shiftgate");

fn object(namespace: &str, name: &str, status: Value) -> Value {
    json!({
        "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "revision": "v2", "steps": [0, 30, 100] },
        "status": status,
    })
}

fn progressing() -> Value {
    json!({ "revision": "v2", "phase": "Progressing", "step": 1, "canaryWeight": 30 })
}

fn with_phase(phase: &str, weight: u8) -> Value {
    json!({ "revision": "v2", "phase": phase, "step": 2, "canaryWeight": weight })
}

/// A server holding `shop/checkout` with `status`, and a kubeconfig (namespace shop).
fn setup(status: Value) -> (TestApiServer, tempfile::TempDir) {
    let server = TestApiServer::start_background().unwrap();
    server
        .put_object(
            &ResourceRef::of::<RolloutPolicy>(),
            object("shop", "checkout", status),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    server.write_kubeconfig(dir.path(), "shop").unwrap();
    (server, dir)
}

fn command(binary: &str, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("HOME", dir)
        .env("SHIFTGATE_STATE_DIR", dir.join("state"))
        .env_remove("SHIFTGATE_CLUSTER")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

fn run(binary: &str, dir: &Path, args: &[&str]) -> Output {
    command(binary, dir, args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Polls `condition` every 20 ms for at most 20 s.
#[allow(clippy::disallowed_methods)] // a test's own deadline, not the engine's clock
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: Child) -> Output {
    let mut child = child;
    wait_for("the watch to end", || child.try_wait().unwrap().is_some());
    child.wait_with_output().unwrap()
}

#[test]
fn watch_follows_a_rollout_to_its_end_with_one_line_per_change() {
    let resource = ResourceRef::of::<RolloutPolicy>();
    for (end, code) in [
        (with_phase("Promoted", 100), exit::OK),
        (with_phase("RolledBack", 0), exit::ROLLED_BACK),
        (with_phase("Held", 30), exit::HELD),
    ] {
        let (server, dir) = setup(progressing());
        let reads = || {
            server
                .requests_matching("GET", "/namespaces/shop/rolloutpolicies/checkout")
                .len()
        };
        let child = command(
            PLUGIN,
            dir.path(),
            &["status", "checkout", "--watch", "--interval", "50ms"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_for("the first reading", || reads() >= 2);
        server
            .put_object(&resource, object("shop", "checkout", end.clone()))
            .unwrap();
        let out = finish(child);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(code), "{said}");
        let phase = end["phase"].as_str().unwrap();
        let lines: Vec<&str> = said
            .lines()
            .filter(|l| l.starts_with("shop/checkout"))
            .collect();
        assert_eq!(
            lines,
            [
                "shop/checkout Progressing step 2 canary 30%".to_owned(),
                format!(
                    "shop/checkout {phase} step 3 canary {}%",
                    end["canaryWeight"]
                ),
            ],
            "one line per change, not per reading: {said}"
        );
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // measures that the watch ends near its timeout
fn watch_gives_up_at_its_timeout_and_waits_for_a_new_revision() {
    let (server, dir) = setup(with_phase("Promoted", 100));
    // The spec names v3, the status is v2's promotion: v3 has not started, not the end.
    let resource = ResourceRef::of::<RolloutPolicy>();
    let mut newer = object("shop", "checkout", with_phase("Promoted", 100));
    newer["spec"]["revision"] = json!("v3");
    server.put_object(&resource, newer).unwrap();
    let started = Instant::now();
    let out = run(
        SHIFTGATE,
        dir.path(),
        &[
            "status",
            "checkout",
            "--cluster",
            "-w",
            "--timeout",
            "1s",
            "--interval",
            "100ms",
        ],
    );
    assert_eq!(out.status.code(), Some(exit::TIMED_OUT), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(text(&out).contains("--timeout"), "{}", text(&out));
}

#[test]
fn list_shows_every_rollout_of_a_namespace_or_of_all() {
    let (server, dir) = setup(progressing());
    let resource = ResourceRef::of::<RolloutPolicy>();
    server
        .put_object(
            &resource,
            object("web", "frontend", with_phase("RolledBack", 0)),
        )
        .unwrap();
    let out = run(PLUGIN, dir.path(), &["list"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out));
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(lines[0].starts_with("NAME"), "{said}");
    assert!(lines[1].starts_with("checkout  shop"), "{said}");
    assert!(lines[1].contains("Progressing"), "{said}");

    let out = run(PLUGIN, dir.path(), &["list", "-A", "-o", "yaml"]);
    let document: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = document["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{document:?}");
    assert!(names.contains(&"frontend") && names.contains(&"checkout"));
    let out = run(
        SHIFTGATE,
        dir.path(),
        &["-n", "web", "list", "--cluster", "-o", "json"],
    );
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["items"][0]["phase"], "RolledBack", "{document}");
    assert_eq!(document["items"].as_array().unwrap().len(), 1);
}

#[test]
fn list_shows_local_rollouts_from_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/shop");
    std::fs::create_dir_all(&state).unwrap();
    let stored = json!({ "generation": 1, "status": progressing() });
    std::fs::write(state.join("checkout.json"), stored.to_string()).unwrap();
    let out = run(SHIFTGATE, dir.path(), &["list"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out));
    assert!(
        said.lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with("checkout  shop       Progressing"),
        "{said}"
    );
}

#[test]
fn retry_is_sent_for_a_rolled_back_rollout_and_refused_otherwise() {
    let (server, dir) = setup(progressing());
    let refused = run(PLUGIN, dir.path(), &["retry", "checkout"]);
    assert_eq!(
        refused.status.code(),
        Some(exit::NOT_IN_PROGRESS),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("still in progress"),
        "{}",
        text(&refused)
    );

    let resource = ResourceRef::of::<RolloutPolicy>();
    server
        .put_object(
            &resource,
            object("shop", "checkout", with_phase("RolledBack", 0)),
        )
        .unwrap();
    let sent = run(PLUGIN, dir.path(), &["retry", "checkout"]);
    assert_eq!(sent.status.code(), Some(exit::OK), "{}", text(&sent));
    let annotations = &server
        .get_object(&resource, Some("shop"), "checkout")
        .unwrap()["metadata"]["annotations"];
    assert_eq!(
        annotations["shiftgate.dev/command"], "retry",
        "{annotations}"
    );
    assert_eq!(
        annotations["shiftgate.dev/command-revision"], "v2",
        "{annotations}"
    );
}

#[test]
fn completion_scripts_name_the_binary_and_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
    ] {
        let out = run(SHIFTGATE, dir.path(), &["completion", shell]);
        let script = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out));
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("shiftgate") && script.contains("retry"),
            "{shell}"
        );
        let out = run(PLUGIN, dir.path(), &["completion", shell]);
        let script = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(script.contains("kubectl-shiftgate"), "{shell}: plugin");
    }
    let bad = run(SHIFTGATE, dir.path(), &["completion", "powershell"]);
    assert_eq!(bad.status.code(), Some(exit::INVALID_INPUT));
}

#[test]
fn global_flags_are_taken_anywhere_and_a_missing_kubeconfig_is_named() {
    let (_server, dir) = setup(progressing());
    for args in [
        &["-n", "shop", "status", "checkout", "--cluster"][..],
        &["status", "--cluster", "checkout", "-n", "shop"][..],
        &[
            "--context",
            "shiftgate-test",
            "status",
            "checkout",
            "--cluster",
        ][..],
    ] {
        let out = run(SHIFTGATE, dir.path(), args);
        assert!(
            text(&out).contains("shop/checkout revision v2"),
            "{args:?}: {}",
            text(&out)
        );
    }
    let out = run(
        SHIFTGATE,
        dir.path(),
        &[
            "status",
            "checkout",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(exit::INVALID_INPUT),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("/nonexistent/kubeconfig"),
        "{}",
        text(&out)
    );
}

#[test]
fn retry_of_a_local_rollout_queues_a_command_file_only_after_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/shop");
    std::fs::create_dir_all(&state).unwrap();
    let store = |status: Value| {
        let stored = json!({ "generation": 1, "status": status });
        std::fs::write(state.join("checkout.json"), stored.to_string()).unwrap();
    };
    store(progressing());
    let refused = run(SHIFTGATE, dir.path(), &["retry", "shop/checkout"]);
    assert_eq!(
        refused.status.code(),
        Some(exit::NOT_IN_PROGRESS),
        "{}",
        text(&refused)
    );
    assert!(!state.join("checkout.commands").exists(), "nothing queued");

    store(with_phase("Aborted", 0));
    let sent = run(SHIFTGATE, dir.path(), &["retry", "checkout", "-n", "shop"]);
    assert_eq!(sent.status.code(), Some(exit::OK), "{}", text(&sent));
    let queued: Vec<_> = std::fs::read_dir(state.join("checkout.commands"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cmd"))
        .collect();
    assert_eq!(queued.len(), 1);
    let command: Value =
        serde_json::from_str(&std::fs::read_to_string(queued[0].path()).unwrap()).unwrap();
    assert_eq!(command, json!({ "command": "retry", "revision": "v2" }));
}
