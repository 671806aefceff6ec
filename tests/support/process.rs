//! Child processes of the integration tests: killed when a test fails half-way, stopped
//! with SIGTERM when the test is about how they stop, and their metrics linted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// Kills (SIGKILL) and reaps the child when dropped, so a test that fails half-way
/// leaves no process behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM to `child` and waits (30 s at most) for it to exit; its exit code.
/// `name` says which process in a failure.
pub async fn terminate(child: &mut Child, name: &str) -> Option<i32> {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lints a Prometheus text exposition with `promtool check metrics`; a finding fails
/// the test with `what` (which exposition), promtool's output and the text.
pub fn promtool_check_metrics(exposition: &str, what: &str) {
    super::envoy::require_binary("promtool");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let linted = promtool.wait_with_output().unwrap();
    assert!(
        linted.status.success(),
        "{what}: promtool check metrics said:\n{}{}\n{exposition}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );
}
