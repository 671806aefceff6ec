//! A real Prometheus for integration tests: the `prometheus` binary on 127.0.0.1 with a
//! free port, a temporary data dir and a generated config. Killed and cleaned up on drop,
//! also when the test panics. `stop()` and `start()` bring it down and up again on the
//! same port and data dir (an outage in the middle of a rollout).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::free_port;

/// How long Prometheus may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// One scrape job.
#[derive(Clone, Debug)]
pub struct ScrapeTarget {
    pub job: String,
    /// `host:port`.
    pub address: String,
    pub metrics_path: String,
}

impl ScrapeTarget {
    pub fn new(job: &str, address: &str, metrics_path: &str) -> ScrapeTarget {
        ScrapeTarget {
            job: job.to_owned(),
            address: address.to_owned(),
            metrics_path: metrics_path.to_owned(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PrometheusConfig {
    pub scrape_interval: Duration,
    pub targets: Vec<ScrapeTarget>,
    /// Past samples (OpenMetrics text with timestamps, ending in `# EOF`) written into
    /// the TSDB with `promtool tsdb create-blocks-from openmetrics` before the start.
    pub history: Option<String>,
}

impl PrometheusConfig {
    /// Scrapes `targets` every second.
    pub fn new(targets: Vec<ScrapeTarget>) -> PrometheusConfig {
        PrometheusConfig {
            scrape_interval: Duration::from_secs(1),
            targets,
            history: None,
        }
    }

    fn yaml(&self) -> String {
        let interval = format!("{}ms", self.scrape_interval.as_millis());
        let mut out = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\nscrape_configs:\n"
        );
        for t in &self.targets {
            let _ = write!(
                out,
                "  - job_name: '{}'\n    metrics_path: '{}'\n    static_configs:\n      - targets: ['{}']\n",
                t.job, t.metrics_path, t.address
            );
        }
        out
    }
}

/// A running (or stopped) Prometheus.
pub struct Prometheus {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second, and waits until it is ready.
    pub async fn start_scraping(targets: Vec<ScrapeTarget>) -> Prometheus {
        Prometheus::start_with(PrometheusConfig::new(targets)).await
    }

    /// Starts Prometheus with `config` and waits until it is ready. Panics with the
    /// install hint when the binary is missing, and with its log when it does not start.
    pub async fn start_with(config: PrometheusConfig) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("shiftgate-prometheus-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for prometheus: {e}"));
        std::fs::write(dir.path().join("prometheus.yml"), config.yaml())
            .unwrap_or_else(|e| panic!("cannot write the prometheus config: {e}"));
        if let Some(history) = &config.history {
            write_history(dir.path(), history);
        }
        let mut prometheus = Prometheus {
            port: free_port(),
            dir,
            child: None,
        };
        // The port was free when picked; if another process took it since, pick again.
        for attempt in 0..3 {
            match prometheus.try_start().await {
                Ok(()) => return prometheus,
                Err(log) if attempt < 2 && log.contains("address already in use") => {
                    prometheus.port = free_port();
                }
                Err(log) => panic!("prometheus did not become ready:\n{log}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops Prometheus (SIGTERM, then SIGKILL after 10 s); the port and the data stay.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts Prometheus again on the same port and data dir, and waits until it is ready.
    pub async fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        if let Err(log) = self.try_start().await {
            panic!("prometheus did not become ready again:\n{log}");
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn try_start(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open the prometheus log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share the prometheus log: {e}"));
        let spawned = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!(
                    "prometheus not found: run scripts/install-deps (apt-get install prometheus)"
                )
            }
            Err(e) => panic!("cannot start prometheus: {e}"),
        };
        self.child = Some(child);
        let ready = format!("{}/-/ready", self.url());
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("prometheus exited with {status}:\n{}", self.log()));
                }
            }
            let answer = client
                .get(&ready)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "not ready after {READY_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls the instant query `query` until `accept` is true of its `data.result`, and
    /// returns that result. Panics after `timeout`.
    pub async fn wait_for(
        &self,
        query: &str,
        timeout: Duration,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let client = reqwest::Client::new();
        let url = format!("{}/api/v1/query", self.url());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = serde_json::Value::Null;
        loop {
            let answer = client
                .post(&url)
                .form(&[("query", query)])
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(response) = answer {
                if let Ok(body) = response.json::<serde_json::Value>().await {
                    last = body["data"]["result"].clone();
                    if accept(&last) {
                        return last;
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!("`{query}` did not give the expected result within {timeout:?}; last: {last}\nlog:\n{}", self.log());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Backfills `history` into `dir/data` as TSDB blocks. Prometheus deletes blocks by
/// retention relative to the newest block (not the wall clock), so old timestamps stay.
fn write_history(dir: &std::path::Path, history: &str) {
    let file = dir.join("history.om");
    std::fs::write(&file, history).unwrap_or_else(|e| panic!("cannot write the history: {e}"));
    let output = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool (scripts/install-deps installs it): {e}"));
    assert!(
        output.status.success(),
        "promtool could not write the history: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `dir` (a TempDir) removes itself after this.
    }
}
