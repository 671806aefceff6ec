//! `shiftgate measure-rollback` (hidden; driven by `scripts/measure-rollback`): time to
//! rollback on the local stack. Real Envoy in front of two demo app instances, real
//! Prometheus scraping Envoy every second, steady user load, and `shiftgate run` (this
//! binary, as a child process) with a 1 s analysis interval. For each run the canary
//! reaches 50% with a passed analysis, then starts failing (`POST /admin/faults`); the
//! time to rollback is from the fault's answer to the first poll of Envoy's live config
//! that shows the canary at 0%. Also reports the CPU time and peak RSS of the
//! `shiftgate run` process, read from /proc.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;

use crate::cli::exit;
use crate::cli::output::{out, say};
use crate::demo::app::{set_remote_faults, Faults, FaultsUpdate};
use crate::demo::load::{run_load, LoadConfig, LoadCounters};
use crate::demo::processes::{self, EnvoyHandle, Supervisor};
use crate::router::envoy::EnvoyRouter;
use crate::router::TrafficRouter;

#[path = "measure_breakdown.rs"]
mod breakdown;

/// How often Envoy's live config is read while waiting for the rollback.
const ENVOY_POLL: Duration = Duration::from_millis(20);
/// The longest one run may take.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Kernel clock ticks per second in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;
/// Flagger's fastest default detection: 10 s interval × threshold 5.
const FLAGGER_MIN_SECONDS: f64 = 50.0;

#[derive(clap::Args, Debug)]
pub struct MeasureArgs {
    /// How many rollbacks to measure.
    #[arg(long, default_value_t = 10)]
    pub runs: u32,
    /// The canary's error rate once the fault is injected (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    pub error_rate: f64,
    /// The analysis query window (the interval is 1 s).
    #[arg(long, default_value = "5s")]
    pub window: String,
    /// User requests per second through Envoy.
    #[arg(long, default_value_t = 50)]
    pub load: u32,
    /// How long the healthy canary stays at 50% before it starts failing (the CPU and
    /// memory figures are mostly this steady state).
    #[arg(long, default_value_t = 10)]
    pub healthy_seconds: u64,
}

pub fn run(args: MeasureArgs) -> i32 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    match runtime.block_on(measure(args)) {
        Ok(()) => exit::OK,
        Err(e) => {
            say!("error: {e:#}");
            exit::COULD_NOT_RUN
        }
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct RunFigures {
    rollback_seconds: f64,
    cpu_seconds: f64,
    wall_seconds: f64,
    peak_rss_kib: u64,
    breakdown: breakdown::Breakdown,
}

struct Stack {
    supervisor: Supervisor,
    canary_app: SocketAddr,
    envoy: EnvoyHandle,
    prometheus: SocketAddr,
}

async fn measure(args: MeasureArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("cannot find the shiftgate binary")?;
    let mut supervisor = Supervisor::new()?;
    let healthy = Faults {
        error_rate: 0.0,
        latency_ms: 0,
    };
    let stable_app =
        processes::start_app(&mut supervisor, &binary, "stable-app", "v1", healthy, 1).await?;
    let canary_app =
        processes::start_app(&mut supervisor, &binary, "canary-app", "v2", healthy, 2).await?;
    let envoy = processes::start_envoy(&mut supervisor, stable_app, canary_app).await?;
    let prometheus = processes::start_prometheus(&mut supervisor, envoy.admin).await?;
    let stack = Stack {
        supervisor,
        canary_app,
        envoy,
        prometheus,
    };
    let load_stop = CancellationToken::new();
    let load = LoadConfig {
        target: stack.envoy.listener,
        requests_per_second: args.load,
        duration: Duration::from_secs(3600),
        headers: Vec::new(),
    };
    {
        let stop = load_stop.clone();
        tokio::spawn(async move { run_load(&load, &LoadCounters::default(), &stop).await });
    }
    let _stop_load = load_stop.drop_guard();
    say!(
        "measure-rollback: envoy admin {}, prometheus {}, {} user req/s, fault: canary error rate {}",
        stack.envoy.admin, stack.prometheus, args.load, args.error_rate
    );
    let mut figures = Vec::new();
    for run in 1..=args.runs {
        let one = measure_one(&stack, &binary, &args, run).await?;
        say!(
            "run {run:2}: rollback {:.2} s · shiftgate run cpu {:.3} s over {:.1} s wall · peak rss {} KiB\n        {}",
            one.rollback_seconds,
            one.cpu_seconds,
            one.wall_seconds,
            one.peak_rss_kib,
            one.breakdown.describe(one.rollback_seconds)
        );
        figures.push(one);
    }
    print_summary(&figures, &args);
    Ok(())
}

fn policy_text(stack: &Stack, revision: &str, window: &str) -> String {
    let router = &stack.envoy.router;
    format!(
        r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: checkout, namespace: measure }}
spec:
  revision: "{revision}"
  router:
    envoy:
      routesFile: "{routes}"
      adminAddress: "{admin}"
      stableCluster: {stable}
      canaryCluster: {canary}
  steps: [0, {{ weight: 50, hold: 10m }}, 100]
  analysis:
    interval: 1s
    window: {window}
    prometheus: {{ address: "http://{prometheus}", timeout: 900ms }}
    minRequests: 5
    metrics:
      - {{ name: error-rate, template: envoy-error-rate, max: 0.05 }}
    failureLimit: 0
    inconclusiveLimit: 10
  onFailure: rollback
"#,
        routes = router.routes_file,
        admin = router.admin_address,
        stable = router.stable_cluster,
        canary = router.canary_cluster,
        prometheus = stack.prometheus,
    )
}

async fn measure_one(
    stack: &Stack,
    binary: &Path,
    args: &MeasureArgs,
    run: u32,
) -> anyhow::Result<RunFigures> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let healthy = FaultsUpdate {
        error_rate: Some(0.0),
        latency_ms: Some(0),
    };
    set_remote_faults(&http, stack.canary_app, healthy)
        .await
        .map_err(anyhow::Error::msg)?;
    if run > 1 {
        // The previous run's failures must leave the query window first.
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    let dir = stack.supervisor.dir().join(format!("run-{run}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        policy_text(stack, &format!("r{run}"), &args.window),
    )
    .with_context(|| format!("cannot write {}", policy.display()))?;
    let log = std::fs::File::create(dir.join("run.log"))?;
    let child = Command::new(binary)
        .arg("run")
        .arg(&policy)
        .arg("--state-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start shiftgate run")?;
    let mut child = KillOnDrop(child);
    let started = stopwatch();
    let pid = child.0.id();
    let mut peak_rss_kib = 0;
    let state_file = dir.join("measure/checkout.json");
    // Wait for 50% with a passed analysis.
    loop {
        peak_rss_kib = peak_rss_kib.max(read_peak_rss(pid).unwrap_or(0));
        if let Ok(bytes) = std::fs::read(&state_file) {
            if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                if doc["status"]["canaryWeight"] == 50
                    && doc["status"]["lastAnalysis"]["verdict"] == "Pass"
                {
                    break;
                }
            }
        }
        if let Some(status) = child.0.try_wait()? {
            bail!(
                "run {run}: shiftgate run ended with {status} before 50%; see {}",
                dir.join("run.log").display()
            );
        }
        if started.elapsed() > RUN_LIMIT {
            bail!("run {run}: the canary never reached 50% with a passed analysis");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Plus a seeded 0–1 s: with evaluations aligned to scrapes, a fault a fixed time
    // after the first passed analysis always landed at the same point between two
    // scrapes (0.65–0.8 s before the next one), the favourable case.
    let offset = {
        use rand::{Rng, SeedableRng};
        rand::rngs::StdRng::seed_from_u64(u64::from(run)).random_range(0..1000u64)
    };
    let healthy_until =
        stopwatch() + Duration::from_secs(args.healthy_seconds) + Duration::from_millis(offset);
    while stopwatch() < healthy_until {
        peak_rss_kib = peak_rss_kib.max(read_peak_rss(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let router = EnvoyRouter::new(&stack.envoy.router, None)?;
    let failing = FaultsUpdate {
        error_rate: Some(args.error_rate),
        latency_ms: None,
    };
    set_remote_faults(&http, stack.canary_app, failing)
        .await
        .map_err(anyhow::Error::msg)?;
    let fault_at = stopwatch();
    let fault_utc = wall_clock();
    let rollback_seconds = loop {
        let live = router.read().await?;
        if live.route.canary_weight == 0 {
            break fault_at.elapsed().as_secs_f64();
        }
        peak_rss_kib = peak_rss_kib.max(read_peak_rss(pid).unwrap_or(0));
        if fault_at.elapsed() > RUN_LIMIT {
            bail!("run {run}: the canary was never rolled back");
        }
        tokio::time::sleep(ENVOY_POLL).await;
    };
    // The process's own totals just before it exits: poll until it is a zombie-to-be.
    let mut cpu_seconds = read_cpu_seconds(pid).unwrap_or(0.0);
    let ended = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        cpu_seconds = read_cpu_seconds(pid).unwrap_or(cpu_seconds);
        peak_rss_kib = peak_rss_kib.max(read_peak_rss(pid).unwrap_or(0));
        if fault_at.elapsed() > RUN_LIMIT {
            bail!("run {run}: shiftgate run did not exit after the rollback");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall_seconds = started.elapsed().as_secs_f64();
    if ended.code() != Some(exit::ROLLED_BACK) {
        bail!("run {run}: shiftgate run exited with {ended}, not 1 (rolled back)");
    }
    let breakdown = breakdown::read(
        &http,
        stack.prometheus,
        &stack.envoy.router.canary_cluster,
        &state_file,
        Path::new(&stack.envoy.router.routes_file),
        fault_utc,
    )
    .await;
    Ok(RunFigures {
        rollback_seconds,
        cpu_seconds,
        wall_seconds,
        peak_rss_kib,
        breakdown,
    })
}

/// The wall clock. This command times real processes, so reading it is its purpose;
/// nothing it decides depends on it.
#[allow(clippy::disallowed_methods)]
fn stopwatch() -> Instant {
    Instant::now()
}

/// The wall clock, to line the fault up with Prometheus's sample timestamps.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already-exited children make kill fail harmlessly; wait reaps them.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat).
fn read_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The peak resident set (VmHWM) of `pid`, in KiB.
fn read_peak_rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn print_summary(figures: &[RunFigures], args: &MeasureArgs) {
    if figures.is_empty() {
        return;
    }
    let mut times: Vec<f64> = figures.iter().map(|f| f.rollback_seconds).collect();
    times.sort_by(f64::total_cmp);
    let med = median(&times);
    let cpu: f64 = figures.iter().map(|f| f.cpu_seconds).sum();
    let wall: f64 = figures.iter().map(|f| f.wall_seconds).sum();
    let rss = figures.iter().map(|f| f.peak_rss_kib).max().unwrap_or(0);
    out!(
        "time to rollback over {} runs (1 s scrape, 1 s interval, {} window, error rate {}): median {:.2} s, min {:.2} s, max {:.2} s; {:.1}x faster than Flagger's minimum of {FLAGGER_MIN_SECONDS:.0} s (10 s interval x threshold 5)",
        figures.len(),
        args.window,
        args.error_rate,
        med,
        times[0],
        times[times.len() - 1],
        FLAGGER_MIN_SECONDS / med
    );
    out!(
        "shiftgate run: {:.4} cpu s per wall s (user+sys {cpu:.2} s over {wall:.1} s), peak rss {:.1} MiB",
        cpu / wall,
        rss as f64 / 1024.0
    );
}
