//! `shiftgate local up|down|status|fault|release` as a user runs them: the built binary, a real
//! Envoy and Prometheus on free ports, and the state file the commands share. A second
//! `up` is refused, a playground that died is cleaned up after, and nothing is left.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use shiftgate::demo::playground_state as state;
use support::playground::{assert_nothing_left, processes_mentioning, shiftgate, spawn_up, text};

#[test]
fn a_second_up_is_refused_while_one_runs_and_down_stops_everything() {
    let temp = tempfile::tempdir().unwrap();
    let state_file = temp.path().join("local.json");
    let dir = temp.path().join("playground");
    let dir_arg = dir.to_str().unwrap();
    let mut up = spawn_up(
        &state_file,
        temp.path(),
        &["--free-ports", "--dir", dir_arg],
    );
    let (recorded, endpoints) = up.wait_ready();
    assert_eq!(recorded.dir, dir);
    assert_eq!(recorded.processes.len(), 4, "{recorded:?}");
    let log = up.log_text();
    for shown in [
        endpoints.envoy_listener.to_string(),
        endpoints.prometheus.to_string(),
        endpoints.policy.display().to_string(),
        format!("shiftgate run {}", endpoints.policy.display()),
        "shiftgate local fault canary --error-rate 0.3".to_owned(),
    ] {
        assert!(log.contains(&shown), "{shown} not in:\n{log}");
    }
    let status = shiftgate(&state_file, &["local", "status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains(&endpoints.envoy_listener.to_string()),
        "{shown}"
    );
    assert!(shown.contains(&format!("pid {}", recorded.pid)), "{shown}");
    // Users' requests go through Envoy to the stable app.
    let body = get_text(&format!("http://{}/", endpoints.envoy_listener));
    assert_eq!(body, "v1\n");

    let other = temp.path().join("other");
    let second = shiftgate(
        &state_file,
        &[
            "local",
            "up",
            "--free-ports",
            "--dir",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    assert!(
        text(&second).contains("already running"),
        "{}",
        text(&second)
    );
    assert!(
        text(&second).contains("shiftgate local down"),
        "{}",
        text(&second)
    );
    assert!(!other.exists());

    let down = shiftgate(&state_file, &["local", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert_eq!(up.wait_exit(Duration::from_secs(30)), Some(0));
    assert_nothing_left(&recorded, &state_file);

    let status = shiftgate(&state_file, &["local", "status"]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    assert!(
        text(&status).contains("shiftgate local up"),
        "{}",
        text(&status)
    );
    let again = shiftgate(&state_file, &["local", "down"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("no playground is running"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_playground_that_died_is_cleaned_up_by_the_next_up() {
    let temp = tempfile::tempdir().unwrap();
    let state_file = temp.path().join("local.json");
    let first_dir = temp.path().join("first");
    let mut first = spawn_up(
        &state_file,
        temp.path(),
        &["--free-ports", "--dir", first_dir.to_str().unwrap()],
    );
    let (stale, _) = first.wait_ready();
    // Killed without a chance to clean up: its apps, Envoy and Prometheus live on.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(!processes_mentioning(&first_dir).is_empty());

    let fault = shiftgate(
        &state_file,
        &["local", "fault", "canary", "--error-rate", "0.5"],
    );
    assert_eq!(fault.status.code(), Some(3), "{}", text(&fault));
    assert!(
        text(&fault).contains("no longer running"),
        "{}",
        text(&fault)
    );

    let second_dir = temp.path().join("second");
    let log_dir = temp.path().join("second-log");
    std::fs::create_dir(&log_dir).unwrap();
    let mut second = spawn_up(
        &state_file,
        &log_dir,
        &["--free-ports", "--dir", second_dir.to_str().unwrap()],
    );
    let (recorded, _) = second.wait_ready();
    assert!(
        second.log_text().contains("cleaned up after a playground"),
        "{}",
        second.log_text()
    );
    assert!(processes_mentioning(&first_dir).is_empty());
    assert!(!first_dir.exists());
    for process in &stale.processes {
        assert!(!state::is_alive(process.pid), "{process:?}");
    }

    let down = shiftgate(&state_file, &["local", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert_eq!(second.wait_exit(Duration::from_secs(30)), Some(0));
    assert_nothing_left(&recorded, &state_file);
}

#[test]
fn a_taken_well_known_port_falls_back_to_a_free_one_and_says_which_policy_to_run() {
    // Taken by this test, or by something else already: either way not for Envoy.
    let _held = std::net::TcpListener::bind("127.0.0.1:9901");
    let temp = tempfile::tempdir().unwrap();
    let state_file = temp.path().join("local.json");
    let dir = temp.path().join("playground");
    let mut up = spawn_up(&state_file, temp.path(), &["--dir", dir.to_str().unwrap()]);
    let (recorded, endpoints) = up.wait_ready();
    assert_ne!(endpoints.envoy_admin.port(), 9901);
    let log = up.log_text();
    assert!(log.contains("which this playground does not use"), "{log}");
    let written = format!("shiftgate run {}", endpoints.policy.display());
    assert!(log.contains(&written), "{log}");
    assert!(
        !log.contains("shiftgate run policies/envoy-local.yaml"),
        "{log}"
    );
    let policy = std::fs::read_to_string(&endpoints.policy).unwrap();
    assert!(
        policy.contains(&format!("adminAddress: {}", endpoints.envoy_admin)),
        "{policy}"
    );
    let down = shiftgate(&state_file, &["local", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert_eq!(up.wait_exit(Duration::from_secs(30)), Some(0));
    assert_nothing_left(&recorded, &state_file);
}

#[test]
fn a_process_that_dies_stops_the_playground_with_its_log() {
    let temp = tempfile::tempdir().unwrap();
    let state_file = temp.path().join("local.json");
    let dir = temp.path().join("playground");
    let mut up = spawn_up(
        &state_file,
        temp.path(),
        &["--free-ports", "--dir", dir.to_str().unwrap()],
    );
    let (recorded, _) = up.wait_ready();
    let envoy = recorded
        .processes
        .iter()
        .find(|p| p.name == "envoy")
        .expect("envoy is recorded");
    state::signal(envoy.pid, "KILL").unwrap();
    assert_eq!(up.wait_exit(Duration::from_secs(30)), Some(3));
    let log = up.log_text();
    assert!(log.contains("envoy exited on its own"), "{log}");
    assert!(log.contains("stopped every process"), "{log}");
    assert_nothing_left(&recorded, &state_file);
}

#[test]
fn fault_and_release_without_a_playground_say_how_to_start_one() {
    let temp = tempfile::tempdir().unwrap();
    let state_file = temp.path().join("none.json");
    for args in [
        &["local", "fault", "canary", "--error-rate", "0.3"][..],
        &["local", "release", "v3"][..],
    ] {
        let output = shiftgate(&state_file, args);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains("shiftgate local up"),
            "{}",
            text(&output)
        );
    }
    let nothing = shiftgate(&state_file, &["local", "fault", "canary"]);
    assert_eq!(nothing.status.code(), Some(2), "{}", text(&nothing));
    assert!(
        text(&nothing).contains("--error-rate"),
        "{}",
        text(&nothing)
    );
    let too_much = shiftgate(
        &state_file,
        &["local", "fault", "canary", "--error-rate", "1.5"],
    );
    assert_eq!(too_much.status.code(), Some(2), "{}", text(&too_much));
    let bad_version = shiftgate(&state_file, &["local", "release", "v 3"]);
    assert_eq!(bad_version.status.code(), Some(2), "{}", text(&bad_version));
}

/// `GET url`'s body.
fn get_text(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        client.get(url).send().await.unwrap().text().await.unwrap()
    })
}
