//! The whole local stack for end-to-end rollout tests: two demo app instances (stable
//! `v1`, canary `v2`), a real Envoy routing between them from the RDS file shiftgate
//! writes, a real Prometheus scraping Envoy every second, and (optionally) steady user
//! load through Envoy. Everything listens on free 127.0.0.1 ports and is stopped and
//! removed when the [`Stack`] is dropped, also when a test panics.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use shiftgate::demo::app::{set_remote_faults, FaultsUpdate};
use shiftgate::demo::load::{run_load, LoadConfig, LoadCounters};
use shiftgate::demo::processes::start_prometheus;
use shiftgate::router::envoy::EnvoyRouter;
use shiftgate::router::{ManagedRoute, TrafficRouter};
use tokio_util::sync::CancellationToken;

use super::envoy::{require_binary, shiftgate_binary, start, LocalEnvoy};

/// Requests per second the users send through Envoy.
pub const USER_LOAD_PER_SECOND: u32 = 50;
/// The longest any wait in these tests lasts.
pub const WAIT_LIMIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);

/// The running stack; dropping it stops the load, then every process, then removes
/// the temp dirs.
pub struct Stack {
    pub prometheus: SocketAddr,
    pub state_dir: tempfile::TempDir,
    pub load: LoadCounters,
    load_stop: CancellationToken,
    // Last: kills the processes and removes their dir after the load has stopped.
    pub local: LocalEnvoy,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.load_stop.cancel();
    }
}

impl Stack {
    /// Starts everything, with user load through Envoy.
    pub async fn start() -> Stack {
        Stack::start_with_load(true).await
    }

    /// Starts everything; `with_load` false leaves Envoy without any user request.
    pub async fn start_with_load(with_load: bool) -> Stack {
        require_binary("envoy");
        require_binary("prometheus");
        let mut local = start().await;
        let prometheus = start_prometheus(&mut local.supervisor, local.envoy.admin)
            .await
            .unwrap();
        let load = LoadCounters::default();
        let load_stop = CancellationToken::new();
        if with_load {
            let config = LoadConfig {
                target: local.envoy.listener,
                requests_per_second: USER_LOAD_PER_SECOND,
                duration: Duration::from_secs(600),
                headers: Vec::new(),
            };
            let (counters, stop) = (load.clone(), load_stop.clone());
            tokio::spawn(async move { run_load(&config, &counters, &stop).await });
        }
        let stack = Stack {
            prometheus,
            state_dir: tempfile::tempdir().unwrap(),
            load,
            load_stop,
            local,
        };
        stack.wait_until_scraped().await;
        stack
    }

    /// Polls Prometheus until it holds Envoy's per-cluster request counters, as any
    /// Prometheus that has been running for a while does.
    pub async fn wait_until_scraped(&self) {
        let url = format!(
            "http://{}/api/v1/query?query=envoy_cluster_upstream_rq_total",
            self.prometheus
        );
        let polled = async {
            loop {
                let answer = http().get(&url).send().await;
                if let Ok(answer) = answer {
                    if let Ok(doc) = answer.json::<serde_json::Value>().await {
                        if doc["data"]["result"]
                            .as_array()
                            .is_some_and(|r| r.len() >= 2)
                        {
                            return;
                        }
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        };
        tokio::time::timeout(WAIT_LIMIT, polled)
            .await
            .expect("prometheus never scraped Envoy's cluster stats");
    }

    /// Writes `policy` (see [`PolicyOptions`]) into the state dir; returns its path.
    pub fn write_policy(&self, options: &PolicyOptions) -> PathBuf {
        let path = self.state_dir.path().join("policy.yaml");
        std::fs::write(&path, self.policy_text(options)).unwrap();
        path
    }

    /// The policy text for this stack.
    pub fn policy_text(&self, options: &PolicyOptions) -> String {
        let router = &self.local.envoy.router;
        let prometheus = options
            .prometheus_address
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.prometheus));
        format!(
            r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: checkout, namespace: e2e }}
spec:
  revision: v2
  router:
    envoy:
      routesFile: "{routes}"
      adminAddress: "{admin}"
      stableCluster: {stable}
      canaryCluster: {canary}
  steps: {steps}
  analysis:
    interval: {interval}
    window: {window}
    prometheus: {{ address: "{prometheus}", timeout: 900ms }}
    minRequests: {min_requests}
    metrics:
{metrics}
    failureLimit: 0
    inconclusiveLimit: {inconclusive_limit}
    onInconclusive: {on_inconclusive}
  onFailure: rollback
"#,
            routes = router.routes_file,
            admin = router.admin_address,
            stable = router.stable_cluster,
            canary = router.canary_cluster,
            steps = options.steps,
            interval = options.interval,
            window = options.window,
            min_requests = options.min_requests,
            metrics = options.metrics,
            inconclusive_limit = options.inconclusive_limit,
            on_inconclusive = options.on_inconclusive,
        )
    }

    /// `shiftgate ARGS --state-dir <state dir>`, output captured.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(shiftgate_binary());
        command
            .args(args)
            .arg("--state-dir")
            .arg(self.state_dir.path())
            .env_remove("SHIFTGATE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Starts `shiftgate run POLICY` in the background.
    pub fn spawn_run(&self, policy: &Path) -> ChildGuard {
        ChildGuard(Some(
            self.command(&["run", policy.to_str().unwrap()])
                .spawn()
                .unwrap(),
        ))
    }

    /// Runs `shiftgate run POLICY` to its end.
    pub async fn run(&self, policy: &Path) -> Output {
        self.spawn_run(policy).finish().await
    }

    /// What Envoy serves right now (its live config, read through the admin API).
    pub async fn served(&self) -> ManagedRoute {
        let router = EnvoyRouter::new(&self.local.envoy.router, None).unwrap();
        router.read().await.unwrap().route
    }

    /// Envoy's live route configuration as it dumps it (to compare byte for byte).
    pub async fn live_route_config(&self) -> serde_json::Value {
        let url = format!(
            "http://{}/config_dump?resource=dynamic_route_configs",
            self.local.envoy.admin
        );
        let dump: serde_json::Value = http().get(url).send().await.unwrap().json().await.unwrap();
        // Drop the timestamps Envoy adds when it (re)loads, keep the routes themselves.
        let configs = dump["configs"].as_array().cloned().unwrap_or_default();
        serde_json::Value::Array(configs.iter().map(|c| c["route_config"].clone()).collect())
    }

    /// Where the policy's state lives.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.path().join("e2e/checkout.json")
    }

    /// The stored state, if any.
    pub fn state(&self) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.state_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Polls the state file until `predicate` holds; panics after [`WAIT_LIMIT`].
    pub async fn wait_for_state(
        &self,
        what: &str,
        predicate: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let polled = async {
            loop {
                if let Some(doc) = self.state() {
                    if predicate(&doc) {
                        return doc;
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        };
        match tokio::time::timeout(WAIT_LIMIT, polled).await {
            Ok(doc) => doc,
            Err(_) => panic!(
                "the state never showed {what} within {WAIT_LIMIT:?}; last state: {:#}",
                self.state().unwrap_or_default()
            ),
        }
    }

    /// Changes the canary app's faults at run time (`POST /admin/faults`).
    pub async fn set_canary_faults(&self, error_rate: Option<f64>, latency_ms: Option<u64>) {
        let update = FaultsUpdate {
            error_rate,
            latency_ms,
        };
        set_remote_faults(&http(), self.local.canary_app, update)
            .await
            .unwrap();
    }

    /// Stops Prometheus (SIGKILL, like a crash).
    pub fn stop_prometheus(&mut self) {
        self.local.supervisor.kill("prometheus");
    }

    /// Starts Prometheus again on the same address (a fresh TSDB: the policy keeps its
    /// address, and the data from before the outage is gone as after a real crash
    /// without a persistent volume).
    pub async fn restart_prometheus(&mut self) {
        let config = self.local.supervisor.dir().join("prometheus.yml");
        let data = self
            .local
            .supervisor
            .dir()
            .join("prometheus-data-restarted");
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address={}", self.prometheus),
            "--log.level=warn".to_owned(),
        ];
        self.local
            .supervisor
            .spawn("prometheus", Path::new("prometheus"), &args)
            .unwrap();
        let ready = format!("http://{}/-/ready", self.prometheus);
        self.local
            .supervisor
            .wait_ready("prometheus", |http| {
                let ready = ready.clone();
                async move {
                    matches!(http.get(&ready).send().await, Ok(r) if r.status().is_success())
                        .then_some(())
                }
            })
            .await
            .unwrap();
    }

    /// Envoy's counts of requests sent to the stable and the canary cluster so far.
    pub async fn upstream_requests(&self) -> ClusterCounts {
        let url = format!(
            "http://{}/stats?filter=^cluster\\.(stable|canary)\\.upstream_rq_total$",
            self.local.envoy.admin
        );
        let text = http().get(url).send().await.unwrap().text().await.unwrap();
        let value = |cluster: &str| {
            let prefix = format!("cluster.{cluster}.upstream_rq_total: ");
            text.lines()
                .find_map(|line| line.strip_prefix(prefix.as_str()))
                .map_or(0, |v| v.trim().parse().unwrap())
        };
        ClusterCounts {
            stable: value("stable"),
            canary: value("canary"),
        }
    }
}

/// Requests Envoy sent upstream, per cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    pub stable: u64,
    pub canary: u64,
}

impl ClusterCounts {
    pub fn since(&self, earlier: &ClusterCounts) -> ClusterCounts {
        ClusterCounts {
            stable: self.stable - earlier.stable,
            canary: self.canary - earlier.canary,
        }
    }
}

/// What a generated policy says. Defaults: 1 s analysis interval over a 5 s window, steps 0 → 50 → 100,
/// the error rate under 5%, 5 canary requests per window, 10 inconclusive tolerated.
#[derive(Clone, Debug)]
pub struct PolicyOptions {
    pub steps: String,
    pub interval: String,
    /// The query window; 1 s scrapes need a few of them for `rate()`.
    pub window: String,
    pub min_requests: u64,
    /// The `metrics:` list items, indented by 6 spaces.
    pub metrics: String,
    pub inconclusive_limit: u32,
    pub on_inconclusive: String,
    /// Instead of the stack's Prometheus.
    pub prometheus_address: Option<String>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            steps: "[0, 50, 100]".to_owned(),
            interval: "1s".to_owned(),
            window: "5s".to_owned(),
            min_requests: 5,
            metrics: ERROR_RATE_METRIC.to_owned(),
            inconclusive_limit: 10,
            on_inconclusive: "rollback".to_owned(),
            prometheus_address: None,
        }
    }
}

/// The canary's error rate must stay under 5%.
pub const ERROR_RATE_METRIC: &str =
    "      - { name: error-rate, template: envoy-error-rate, max: 0.05 }";
/// The canary's p99 latency must stay under 100 ms.
pub const LATENCY_METRIC: &str =
    "      - { name: p99-latency-ms, template: envoy-latency-p99, max: 100 }";

/// A running `shiftgate run`, killed if the test ends before it does.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Waits for the end and collects its output.
    pub async fn finish(mut self) -> Output {
        let child = self.0.take().unwrap();
        let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
        tokio::time::timeout(WAIT_LIMIT, waited)
            .await
            .expect("shiftgate run did not end in time")
            .unwrap()
            .unwrap()
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}
