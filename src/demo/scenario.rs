//! The demo: real Prometheus, real Envoy, two app instances, steady user load, and two
//! rollouts driven by the real local runtime. A good release (`v2`) is promoted to
//! 100%; a bad one (`v3`, which starts failing half-way) is rolled back by itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::app::{set_remote_faults, Faults, FaultsUpdate};
use super::load::{run_load, LoadConfig, LoadCounters, LoadReport};
use super::processes::{self, EnvoyHandle, ProcessError, Supervisor};
use crate::policy::status::HistoryEntry;
use crate::policy::Phase;
use crate::router::envoy::EnvoyRouter;
use crate::router::{ManagedRoute, TrafficRouter};
use crate::runtime::local::{load_policy, LocalError, LocalRun, RunEnd, RunOptions, TickReport};

/// Users' requests per second through Envoy during the whole demo.
const USER_LOAD_PER_SECOND: u32 = 60;
/// Upper bound of the load's duration (it is stopped when the demo ends).
const LOAD_LIMIT: Duration = Duration::from_secs(600);
/// The bad release's error rate once its fault is injected.
const BAD_ERROR_RATE: f64 = 0.3;
/// The fault is injected when the bad release reaches this weight.
const FAULT_AT_WEIGHT: u8 = 50;
/// The demo policy's namespace and name (both rollouts are the same policy).
const POLICY_NAMESPACE: &str = "demo";
const POLICY_NAME: &str = "checkout";

/// The policy both rollouts of the demo drive (the status page's key for them).
pub fn demo_policy() -> crate::metrics::PolicyRef {
    crate::metrics::PolicyRef {
        namespace: POLICY_NAMESPACE.to_owned(),
        name: POLICY_NAME.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("the demo could not {what}: {message}")]
    Step { what: String, message: String },
}

/// One rollout of the demo, for the summary.
#[derive(Clone, Debug)]
pub struct RolloutSummary {
    pub revision: String,
    pub end: RunEnd,
    pub seconds: f64,
    pub users: LoadReport,
}

/// Both rollouts, or where the demo stopped.
#[derive(Clone, Debug)]
pub struct DemoSummary {
    pub rollouts: Vec<RolloutSummary>,
    pub interrupted: bool,
}

/// Everything the demo started; dropping it stops and removes everything.
struct Environment {
    supervisor: Supervisor,
    app_binary: PathBuf,
    stable_app: SocketAddr,
    canary_app: SocketAddr,
    envoy: EnvoyHandle,
    prometheus: SocketAddr,
}

fn step_error(what: &str, message: impl ToString) -> DemoError {
    DemoError::Step {
        what: what.to_owned(),
        message: message.to_string(),
    }
}

async fn start_environment(app_binary: &Path) -> Result<Environment, DemoError> {
    let mut supervisor = Supervisor::new()?;
    let healthy = Faults {
        error_rate: 0.0,
        latency_ms: 5,
    };
    let stable_app =
        processes::start_app(&mut supervisor, app_binary, "stable-app", "v1", healthy, 1).await?;
    let canary_app =
        processes::start_app(&mut supervisor, app_binary, "canary-app", "v2", healthy, 2).await?;
    let envoy = processes::start_envoy(&mut supervisor, stable_app, canary_app).await?;
    let prometheus = processes::start_prometheus(&mut supervisor, envoy.admin).await?;
    Ok(Environment {
        supervisor,
        app_binary: app_binary.to_owned(),
        stable_app,
        canary_app,
        envoy,
        prometheus,
    })
}

/// The demo policy for `revision`, as a user would write it (checked by the real parser).
fn policy_yaml(env: &Environment, revision: &str) -> String {
    let router = &env.envoy.router;
    format!(
        r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: {POLICY_NAME}, namespace: {POLICY_NAMESPACE} }}
spec:
  revision: "{revision}"
  router:
    envoy:
      routesFile: "{routes}"
      adminAddress: "{admin}"
      stableCluster: {stable}
      canaryCluster: {canary}
  steps: [0, 20, {fault_at}, 100]
  testRoute: {{ cookie: "test=true" }}
  checks:
    - name: canary-answers-through-test-route
      http: {{ url: "http://{listener}/", headers: {{ cookie: "test=true" }}, expectBody: "{revision}", timeout: 2s, attempts: 3 }}
  analysis:
    interval: 3s
    prometheus: {{ address: "http://{prometheus}", timeout: 2s }}
    minRequests: 10
    metrics:
      - {{ name: error-rate, template: envoy-error-rate, max: 0.05 }}
      - {{ name: p99-latency-ms, template: envoy-latency-p99, max: 250 }}
      - {{ name: errors-vs-stable, template: envoy-error-rate, compare: {{}} }}
    failureLimit: 0
    inconclusiveLimit: 5
  onFailure: rollback
"#,
        routes = router.routes_file,
        admin = router.admin_address,
        stable = router.stable_cluster,
        canary = router.canary_cluster,
        fault_at = FAULT_AT_WEIGHT,
        listener = env.envoy.listener,
        prometheus = env.prometheus,
    )
}

/// Runs the whole demo. `observe` sees every tick (for progress lines); the demo stops
/// between ticks when `stop` is cancelled, and everything is cleaned up on return.
pub async fn run_demo(
    app_binary: &Path,
    observe: &mut (dyn FnMut(&TickReport<'_>) + Send),
    stop: &CancellationToken,
) -> Result<DemoSummary, DemoError> {
    crate::cli::output::say!("demo: starting two app instances (v1 stable, v2 canary), Envoy and Prometheus on 127.0.0.1");
    let started = tokio::select! {
        env = start_environment(app_binary) => env?,
        _ = stop.cancelled() => return Ok(DemoSummary { rollouts: Vec::new(), interrupted: true }),
    };
    let mut env = started;
    crate::cli::output::say!(
        "demo: envoy listener http://{} (admin {}), prometheus http://{}, files in {}",
        env.envoy.listener,
        env.envoy.admin,
        env.prometheus,
        env.supervisor.dir().display()
    );
    let counters = LoadCounters::default();
    let load_stop = stop.child_token();
    let load_config = LoadConfig {
        target: env.envoy.listener,
        requests_per_second: USER_LOAD_PER_SECOND,
        duration: LOAD_LIMIT,
        headers: Vec::new(),
    };
    let load = {
        let counters = counters.clone();
        let load_stop = load_stop.clone();
        tokio::spawn(async move { run_load(&load_config, &counters, &load_stop).await })
    };
    crate::cli::output::say!("demo: {USER_LOAD_PER_SECOND} user requests/s flowing through Envoy");

    let outcome = both_rollouts(&mut env, &counters, observe, stop).await;
    load_stop.cancel();
    let _ = load.await;
    drop(env);
    crate::cli::output::say!("demo: stopped every process and removed the temp dir");
    outcome
}

async fn both_rollouts(
    env: &mut Environment,
    counters: &LoadCounters,
    observe: &mut (dyn FnMut(&TickReport<'_>) + Send),
    stop: &CancellationToken,
) -> Result<DemoSummary, DemoError> {
    let state_dir = env.supervisor.dir().join("state");
    let mut summary = DemoSummary {
        rollouts: Vec::new(),
        interrupted: false,
    };
    crate::cli::output::say!("\ndemo: ── rollout 1: revision v2, a good release ──");
    let good = rollout(env, &state_dir, "v2", None, counters, observe, stop).await?;
    let finished = matches!(good.end, RunEnd::Settled(_));
    summary.rollouts.push(good);
    if !finished {
        summary.interrupted = true;
        return Ok(summary);
    }
    release_promoted_to_stable(env).await?;
    crate::cli::output::say!(
        "\ndemo: ── rollout 2: revision v3, which starts failing at {FAULT_AT_WEIGHT}% ──"
    );
    let bad = rollout(
        env,
        &state_dir,
        "v3",
        Some(env.canary_app),
        counters,
        observe,
        stop,
    )
    .await?;
    summary.interrupted = !matches!(bad.end, RunEnd::Settled(_));
    summary.rollouts.push(bad);
    Ok(summary)
}

/// After a promotion, what a release pipeline does next: the stable instance now runs
/// v2, every request goes back to it, and the canary instance gets the next release v3.
async fn release_promoted_to_stable(env: &mut Environment) -> Result<(), DemoError> {
    crate::cli::output::say!("\ndemo: v2 promoted; redeploying stable as v2, routing users back to it, deploying v3 as canary");
    let healthy = Faults {
        error_rate: 0.0,
        latency_ms: 5,
    };
    env.supervisor.kill("stable-app");
    let stable = processes::start_app_at(
        &mut env.supervisor,
        &env.app_binary,
        "stable-app",
        "v2",
        healthy,
        3,
        env.stable_app,
    )
    .await?;
    let router = EnvoyRouter::new(&env.envoy.router, None)
        .map_err(|e| step_error("route users back to stable", e))?;
    let live = router
        .read()
        .await
        .map_err(|e| step_error("read the route", e))?;
    let all_stable = ManagedRoute {
        canary_weight: 0,
        test_route: false,
    };
    router
        .apply(&live.version, all_stable)
        .await
        .map_err(|e| step_error("route users back to stable", e))?;
    env.supervisor.kill("canary-app");
    let canary = processes::start_app_at(
        &mut env.supervisor,
        &env.app_binary,
        "canary-app",
        "v3",
        healthy,
        4,
        env.canary_app,
    )
    .await?;
    env.stable_app = stable;
    env.canary_app = canary;
    Ok(())
}

async fn rollout(
    env: &Environment,
    state_dir: &Path,
    revision: &str,
    fail_app: Option<SocketAddr>,
    counters: &LoadCounters,
    observe: &mut (dyn FnMut(&TickReport<'_>) + Send),
    stop: &CancellationToken,
) -> Result<RolloutSummary, DemoError> {
    let file = env.supervisor.dir().join(format!("policy-{revision}.yaml"));
    std::fs::write(&file, policy_yaml(env, revision))
        .map_err(|e| step_error("write the demo policy", e))?;
    let local = load_policy(&file)?;
    let runner = LocalRun::new(local, state_dir, RunOptions::default())?;
    runner.preflight().await?;
    let before = counters.snapshot();
    let mut window_start = before.clone();
    let mut first_tick = None;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| step_error("build an HTTP client", e))?;
    let mut injected = false;
    let mut last_seconds = 0.0;
    let mut wrapped = |tick: &TickReport<'_>| {
        observe(tick);
        let start = *first_tick.get_or_insert(tick.now);
        last_seconds = (tick.now - start).num_milliseconds() as f64 / 1000.0;
        if tick.outcome.evaluated || !tick.outcome.transitions.is_empty() {
            let now = counters.snapshot();
            crate::cli::output::say!(
                "          users: {}",
                describe_users(&now.since(&window_start))
            );
            window_start = now;
        }
        let weight = tick.outcome.status.canary_weight;
        if let (Some(app), false) = (fail_app, injected) {
            if weight >= FAULT_AT_WEIGHT && tick.outcome.status.phase == Phase::Progressing {
                injected = true;
                crate::cli::output::say!(
                    "          demo: injecting faults: v3 now fails {:.0}% of its requests",
                    BAD_ERROR_RATE * 100.0
                );
                let http = http.clone();
                let update = FaultsUpdate {
                    error_rate: Some(BAD_ERROR_RATE),
                    latency_ms: None,
                };
                tokio::spawn(async move {
                    if let Err(e) = set_remote_faults(&http, app, update).await {
                        crate::cli::output::say!("          demo: could not inject the fault: {e}");
                    }
                });
            }
        }
    };
    let end = runner.run(&mut wrapped, stop).await?;
    let users = counters.snapshot().since(&before);
    Ok(RolloutSummary {
        revision: revision.to_owned(),
        end,
        seconds: last_seconds,
        users,
    })
}

/// `v1 70% · v2 30% · 5xx 0`.
pub fn describe_users(report: &LoadReport) -> String {
    let total = report.total_answered().max(1) as f64;
    let mut parts: Vec<String> = report
        .per_version
        .iter()
        .filter(|(_, counts)| counts.ok + counts.server_errors > 0)
        .map(|(version, counts)| {
            let n = counts.ok + counts.server_errors;
            format!("{version} {:.0}%", n as f64 * 100.0 / total)
        })
        .collect();
    let errors: u64 = report
        .per_version
        .values()
        .map(|c| c.server_errors)
        .sum::<u64>()
        + report.unversioned;
    parts.push(format!("{} reqs, {errors} errors", report.total_answered()));
    if report.transport_errors > 0 {
        parts.push(format!("{} unanswered", report.transport_errors));
    }
    parts.join(" · ")
}

/// The timelines of both rollouts, for the end of the demo.
pub fn describe_summary(summary: &DemoSummary) -> String {
    let mut text = String::from("\ndemo summary\n");
    for rollout in &summary.rollouts {
        let status = rollout.end.status();
        text.push_str(&format!(
            "  revision {}: {} at canary {}% after {:.0}s ({})\n",
            rollout.revision,
            status.phase,
            status.canary_weight,
            rollout.seconds,
            describe_users(&rollout.users)
        ));
        let origin = status
            .started_at
            .or_else(|| status.history.first().map(|h| h.at));
        for entry in status.history.iter().filter(|h| Some(h.at) >= origin) {
            text.push_str(&format!("    {}\n", describe_entry(entry, origin)));
        }
    }
    if summary.interrupted {
        text.push_str("  (interrupted before the end)\n");
    }
    text
}

fn describe_entry(entry: &HistoryEntry, origin: Option<crate::policy::Timestamp>) -> String {
    let at = origin.map_or(0.0, |o| (entry.at - o).num_milliseconds() as f64 / 1000.0);
    format!(
        "+{at:5.1}s {:<11} {:>3}%  {}",
        entry.phase.as_str(),
        entry.canary_weight,
        entry.message
    )
}

/// Whether the demo showed what it promises: v2 promoted, v3 rolled back.
pub fn demo_succeeded(summary: &DemoSummary) -> bool {
    let phases: Vec<Phase> = summary
        .rollouts
        .iter()
        .map(|r| r.end.status().phase)
        .collect();
    !summary.interrupted && phases == [Phase::Promoted, Phase::RolledBack]
}
