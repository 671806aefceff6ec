//! `shiftgate local up` as a user starts it: the built binary in the background, found
//! by the other commands through its state file; stopped (and waited for) on drop.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use shiftgate::demo::playground_state::{self as state, Endpoints, PlaygroundState};

use super::envoy::{require_binary, shiftgate_binary};

/// How long the playground may take to start (four processes on a busy machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A `shiftgate local up` running with its own state file.
pub struct LocalUp {
    pub child: Child,
    pub state_file: PathBuf,
    pub log: PathBuf,
}

/// `shiftgate ARGS` with the playground's state file, as a user types it.
pub fn shiftgate(state_file: &Path, args: &[&str]) -> Output {
    Command::new(shiftgate_binary())
        .args(args)
        .env("SHIFTGATE_LOCAL_STATE", state_file)
        .env_remove("SHIFTGATE_LOG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Starts `shiftgate local up EXTRA` (its output goes to `<log_dir>/up.log`).
pub fn spawn_up(state_file: &Path, log_dir: &Path, extra: &[&str]) -> LocalUp {
    require_binary("envoy");
    require_binary("prometheus");
    let log = log_dir.join("up.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(shiftgate_binary())
        .args(["local", "up"])
        .args(extra)
        .env("SHIFTGATE_LOCAL_STATE", state_file)
        .env_remove("SHIFTGATE_LOG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    LocalUp {
        child,
        state_file: state_file.to_owned(),
        log,
    }
}

impl LocalUp {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the state file until the playground is up; fails with its log.
    #[allow(clippy::disallowed_methods)] // a test's timeout, not a decision's clock
    pub fn wait_ready(&mut self) -> (PlaygroundState, Endpoints) {
        let started = Instant::now();
        loop {
            if let Ok(Some(recorded)) = state::read(&self.state_file) {
                // Only this `local up`'s state: a stale one may be there before it.
                let mine = recorded.pid == self.child.id();
                if let (true, Some(endpoints)) = (mine, recorded.endpoints.clone()) {
                    return (recorded, endpoints);
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("`local up` exited with {status}:\n{}", self.log_text());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the playground was not up within {START_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for `local up` to exit; its exit code.
    #[allow(clippy::disallowed_methods)] // a test's timeout, not a decision's clock
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < timeout,
                "`local up` still runs after {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        // A test that failed half-way: stop everything the playground started.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = state::stop(&self.state_file, Duration::from_secs(30));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Processes that still mention `dir` in their command line (none once it is down).
pub fn processes_mentioning(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && state::is_alive(*pid))
        .filter_map(|pid| {
            let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
            line.contains(&dir).then(|| format!("{pid}: {line}"))
        })
        .collect()
}

/// Asserts the playground left nothing: no process, no dir, no state file.
pub fn assert_nothing_left(recorded: &PlaygroundState, state_file: &Path) {
    for process in &recorded.processes {
        assert!(
            !state::is_alive(process.pid),
            "{} (pid {}) still runs",
            process.name,
            process.pid
        );
    }
    assert!(
        !state::is_alive(recorded.pid),
        "`local up` (pid {}) still runs",
        recorded.pid
    );
    let left = processes_mentioning(&recorded.dir);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(
        !recorded.dir.exists(),
        "{} was not removed",
        recorded.dir.display()
    );
    assert!(
        !state_file.exists(),
        "{} was not removed",
        state_file.display()
    );
}
