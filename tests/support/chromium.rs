//! A real headless Chromium (Debian package `chromium-headless-shell`, or `chromium`)
//! driven over the DevTools protocol on `--remote-debugging-pipe`: the browser reads
//! commands on fd 3 and writes answers on fd 4, NUL-separated JSON, so no websocket
//! client is needed. One page session: load a URL, read what is on screen, take a
//! screenshot. The browser and its profile dir are gone when the [`Browser`] is dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
// Wall-clock time only bounds the waits of a test harness (timeouts), never a decision.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The longest one DevTools call may take.
const CALL_LIMIT: Duration = Duration::from_secs(20);

/// The browser binary on PATH; fails the test loudly when there is none (also in CI).
pub fn require_chromium() -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    for binary in ["chromium-headless-shell", "chromium"] {
        if let Some(found) = std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|path| path.is_file())
        {
            return found;
        }
    }
    let where_ = if std::env::var_os("CI").is_some() {
        "in CI"
    } else {
        "on this machine"
    };
    panic!(
        "a headless Chromium is required by this test but neither `chromium-headless-shell` nor \
         `chromium` is on PATH {where_}; run scripts/install-deps (Debian package \
         chromium-headless-shell)"
    );
}

/// Where the tests keep their screenshots (docs/testing.md): `target/tmp/web-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots")
}

pub struct Browser {
    child: Child,
    commands: ChildStdin,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    // Last: removed after the browser is gone.
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn launch() -> Browser {
        let binary = require_chromium();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("sh")
            // fd 3 <- our stdin pipe, fd 4 -> our stdout pipe; the browser's own output
            // goes to stderr.
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(&binary)
            .arg("--headless")
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            // Tests run as root in CI containers, where the sandbox cannot start.
            .arg("--no-sandbox")
            .args([
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1280,1800",
                "about:blank",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let commands = child.stdin.take().unwrap();
        let output = child.stdout.take().unwrap();
        let (send, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(output);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).unwrap_or(0) > 0 {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if send.send(value).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        Browser {
            child,
            commands,
            answers,
            next_id: 0,
            session: None,
            _profile: profile,
        }
    }

    /// Sends one command (to the page once one is open) and waits for its answer.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&command).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .unwrap_or_else(|e| panic!("the browser stopped reading commands ({method}): {e}"));
        let started = Instant::now();
        loop {
            let left = CALL_LIMIT.saturating_sub(started.elapsed());
            let message = self.answers.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no answer from the browser to {method} within {CALL_LIMIT:?}")
            });
            if message["id"] == json!(id) {
                if let Some(error) = message.get("error") {
                    panic!("the browser refused {method}: {error}");
                }
                return message["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page and keeps that page's session for the next calls.
    pub fn open(&mut self, url: &str) {
        self.session = None;
        let target = self.call("Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
    }

    /// The value of a JavaScript expression in the page.
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw in the page: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// What is on screen: the rendered text of the page.
    pub fn text(&mut self) -> String {
        self.evaluate("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a PNG of the page as `name` under [`screenshot_dir`]; returns its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing through the protocol lets the browser stop its own helper processes.
        self.session = None;
        self.next_id += 1;
        let close = json!({ "id": self.next_id, "method": "Browser.close" });
        let mut bytes = serde_json::to_vec(&close).unwrap_or_default();
        bytes.push(0);
        let _ = self.commands.write_all(&bytes);
        let _ = self.commands.flush();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the status page shows of one rollout, read from its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub weight: Option<u8>,
    pub verdict: Option<String>,
    pub phase: Option<String>,
}

impl Seen {
    /// The detail panel's facts ("Canary weight 20%", "Last verdict Pass", "Phase …").
    pub fn of(text: &str) -> Seen {
        let fact = |label: &str| {
            let pattern = regex::Regex::new(&format!(r"(?m)^{label}\s+(\S+)")).unwrap();
            pattern
                .captures(text)
                .map(|c| c[1].trim_end_matches('%').to_owned())
        };
        Seen {
            weight: fact("Canary weight").and_then(|w| w.parse().ok()),
            verdict: fact("Last verdict").filter(|v| v != "–"),
            phase: fact("Phase"),
        }
    }
}

/// Everything the page showed while it was watched, in order (consecutive repeats
/// dropped).
#[derive(Default, Debug)]
pub struct Watched {
    pub seen: Vec<Seen>,
    pub last_text: String,
}

impl Watched {
    pub fn note(&mut self, text: String) {
        let seen = Seen::of(&text);
        if self.seen.last() != Some(&seen) {
            self.seen.push(seen);
        }
        self.last_text = text;
    }

    pub fn weights(&self) -> Vec<u8> {
        let mut weights: Vec<u8> = self.seen.iter().filter_map(|s| s.weight).collect();
        weights.dedup();
        weights
    }

    pub fn verdicts(&self) -> Vec<String> {
        let mut verdicts: Vec<String> =
            self.seen.iter().filter_map(|s| s.verdict.clone()).collect();
        verdicts.dedup();
        verdicts
    }
}
