//! `shiftgate demo` as a child process whose stderr lines arrive on a channel as they
//! come (read on a thread, so the demo never blocks on a full pipe), and the status
//! page URL it prints first.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
// Wall-clock time only bounds the waits of a test harness (timeouts), never a decision.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::envoy::{require_binary, shiftgate_binary};

pub struct Demo {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Demo {
    pub fn spawn() -> Demo {
        require_binary("envoy");
        require_binary("prometheus");
        let mut child = Command::new(shiftgate_binary())
            .arg("demo")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The next line, within `limit`.
    pub fn next_line(&mut self, limit: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(limit).ok()?;
        self.log.push(line.clone());
        Some(line)
    }

    /// Every line printed so far (without waiting).
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    pub fn log_text(&self) -> String {
        self.log.join("\n")
    }

    /// SIGINT, as Ctrl-C: the demo stops everything it started and exits 130.
    pub fn interrupt(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        self.wait(Duration::from_secs(30))
    }

    /// The exit code, once the demo has ended (killed after `limit`).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            self.drain();
            if let Some(status) = self.child.try_wait().unwrap() {
                self.drain();
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Ctrl-C first so the demo cleans up its own processes and temp dir.
            let _ = self.interrupt();
        }
    }
}

/// The status page URL of the demo's first line, `demo: watch it in a browser: URL (…)`.
pub fn page_url(first_line: &str) -> Option<String> {
    let rest = first_line.strip_prefix("demo: watch it in a browser: ")?;
    rest.split_whitespace()
        .next()
        .filter(|url| url.starts_with("http://127.0.0.1:"))
        .map(str::to_owned)
}
