//! `shiftgate run POLICY`: one rollout in the foreground, to its end. An Envoy policy
//! drives a local Envoy; an Istio or Service policy drives the cluster of the kubeconfig
//! (`--context`), with the state and operator commands kept under `--state-dir` either
//! way (see `runtime::cluster_run`).
//!
//! Progress goes to stderr (step, weight, time left, each metric against its limit),
//! `--output json` prints the final status on stdout. Exit codes: 0 promoted, 1 rolled
//! back or aborted, 4 held or paused, 3 could not run, 2 invalid input, 130 interrupted
//! (Ctrl-C or SIGTERM: the tick in flight finishes its write and persists; running the
//! same command again resumes).

use std::path::PathBuf;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cli::exit;
use crate::cli::output::{out, say};
pub use crate::cli::progress::Progress;
use crate::cli::route_lock;
use crate::policy::{Phase, RolloutStatus, Timestamp};
use crate::runtime::cluster_run::{is_cluster_policy, prepare};
use crate::runtime::local::{
    load_policy, LocalError, LocalRun, RunEnd, RunOptions, DEFAULT_STATE_DIR,
};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Policy file holding one RolloutPolicy (`spec.router.envoy`, `istio` or `service`).
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
    /// kubeconfig context for an Istio or Service policy (default: the current one): the
    /// global `--context`.
    #[arg(skip)]
    pub context: Option<String>,
    /// Where local rollout state and operator commands live.
    #[arg(long, env = "SHIFTGATE_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Evaluate every step for real, but never write a route or the state file.
    #[arg(long)]
    pub dry_run: bool,
    /// `text`: progress and summary on stderr. `json`: also the final status on stdout.
    #[arg(long, value_enum, default_value_t = RunOutput::Text)]
    pub output: RunOutput,
    /// Serve the read-only status page of this rollout on ADDR (e.g. `127.0.0.1:0`:
    /// a free port) and print its URL (docs/web.md).
    #[arg(long, value_name = "ADDR")]
    pub web: Option<std::net::SocketAddr>,
    /// Accepted for CI pipelines; `run` always waits for the end of the rollout.
    #[arg(long, hide = true)]
    pub wait: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutput {
    Text,
    Json,
}

pub fn run(args: RunArgs) -> i32 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> i32 {
    let mut local = match load_policy(&args.policy) {
        Ok(local) => local,
        Err(e) => return report_error(&e),
    };
    if !is_cluster_policy(&local.spec) {
        // Blue/green with colours: the live colour is stable, the idle one the canary.
        crate::runtime::colours::orient_local(
            &mut local,
            &args.state_dir,
            crate::runtime::colours::envoy_router,
        )
        .await;
    }
    let options = RunOptions {
        dry_run: args.dry_run,
    };
    let revision = match &local.spec.workloads {
        // `revisionFrom`: the revision is read from the canary Deployment by the run.
        Some(w) if local.spec.revision.is_empty() => format!("from Deployment {}", w.canary),
        _ => local.spec.revision.clone(),
    };
    let mut client = None;
    // A cluster run's writes wait for its route Leases.
    let mut fence = None;
    // What the queries select, said once the run starts (from the DestinationRule, else
    // from the policy).
    let mut selection = None;
    let runner = if is_cluster_policy(&local.spec) {
        match prepare(
            &args.policy,
            args.context.as_deref(),
            &args.state_dir,
            options,
        )
        .await
        {
            Ok(cluster) => {
                if let Some(warning) = cluster.warning {
                    say!("warning: {warning}; make sure no daemon drives this policy");
                }
                client = Some(cluster.client);
                fence = Some(cluster.fence);
                selection = cluster.selection;
                cluster.run
            }
            Err(e) => return report_error(&e),
        }
    } else {
        if args.context.is_some() {
            say!("warning: --context is ignored: an Envoy policy runs locally");
        }
        match LocalRun::new(local, &args.state_dir, options) {
            Ok(runner) => runner,
            Err(e) => return report_error(&e),
        }
    };
    let policy = &runner.policy().policy;
    let label = format!("{}/{}", policy.namespace, policy.name);
    // Colours with `revisionFrom`: decided from the idle colour's Deployment by now.
    let revision = match runner.policy().spec.revision.as_str() {
        "" => revision,
        derived => derived.to_owned(),
    };
    // Held to the end: `pause` & co. and `status` tell whether a run drives the rollout.
    let _running = if args.dry_run {
        None
    } else {
        let store = crate::store::file::FileStore::new(&args.state_dir);
        match crate::cli::run_lock::hold(&store, policy) {
            Ok(lock) => Some(lock),
            Err(e) => {
                say!(
                    "error: {label}: cannot take the run lock under {}: {e}; make the state \
                     directory writable or pass --state-dir",
                    args.state_dir.display()
                );
                return exit::COULD_NOT_RUN;
            }
        }
    };
    // One run per route: the second on a route exits 3 naming the first.
    let held = if args.dry_run {
        None
    } else {
        match route_lock::hold(runner.policy(), client).await {
            Ok(held) => {
                if let Some(fence) = &fence {
                    held.arm(fence);
                }
                Some(held)
            }
            Err(refusal) => {
                say!("error: {label}: {refusal}");
                return exit::COULD_NOT_RUN;
            }
        }
    };
    if let Err(e) = runner.preflight().await {
        return report_error(&e);
    }
    let dry = if args.dry_run {
        " (dry run: no route is written)"
    } else {
        ""
    };
    let board = args.web.map(|address| (address, crate::web::Board::new()));
    // With the page, the rollout's metrics too (`/metrics`, as the daemon's).
    let metrics = board
        .as_ref()
        .map(|_| std::sync::Arc::new(crate::observe::metrics::Metrics::new()));
    if let (Some((address, board)), Some(metrics)) = (&board, &metrics) {
        metrics.set_thresholds(policy, &runner.policy().spec);
        match crate::web::page::spawn_with_metrics(*address, board.clone(), metrics.clone()).await {
            Ok(bound) => say!("shiftgate: watch it at {}", crate::web::page::url(bound)),
            Err(e) => {
                say!("error: cannot serve the status page on {address} (--web): {e}");
                return exit::COULD_NOT_RUN;
            }
        }
    }
    say!("shiftgate: rolling out {label} revision {revision}{dry}");
    let selection = selection.map_or_else(
        || crate::metrics::selection::describe(policy, &runner.policy().spec),
        |s| vec![s],
    );
    for line in selection {
        say!("  {line}");
    }
    let stop = CancellationToken::new();
    tokio::spawn(cancel_on_signal(stop.clone()));
    let mut progress = Progress::default();
    let policy_ref = policy.clone();
    let mut show = |tick: &crate::runtime::local::TickReport<'_>| {
        progress.show(tick);
        if let Some((_, board)) = &board {
            board.record_tick(&policy_ref, tick);
        }
        if let Some(metrics) = &metrics {
            record_metrics(metrics, &policy_ref, tick);
        }
    };
    let run = runner.run(&mut show, &stop);
    let end = route_lock::run_while_held(held.as_ref(), &policy.namespace, run).await;
    if let Some(held) = held {
        held.release().await;
    }
    if let Some((_, board)) = &board {
        // An open page shows the end only once it has fetched it.
        board.linger(std::time::Duration::from_secs(5)).await;
    }
    let end = match end {
        Ok(end) => end,
        Err(lost) => {
            say!("error: {label}: {lost}");
            return exit::ROUTE_LEASE_LOST;
        }
    };
    match end {
        Ok(end) => {
            let grafana = crate::cli::status_view::grafana_link(
                runner.policy().spec.grafana.as_deref(),
                policy,
                end.status(),
            );
            print_summary(&label, &end, progress.started, grafana.as_deref());
            let code = exit_code(&end);
            if args.output == RunOutput::Json {
                if let Err(e) = print_json(&label, &end, code) {
                    say!("error: cannot write the status: {e:#}");
                }
            }
            code
        }
        Err(e) => report_error(&e),
    }
}

/// The exit code of a finished local run.
pub fn exit_code(end: &RunEnd) -> i32 {
    match end {
        RunEnd::Interrupted(_) => exit::INTERRUPTED,
        RunEnd::Paused(_) => exit::HELD,
        RunEnd::Settled(status) => match status.phase {
            Phase::Promoted => exit::OK,
            Phase::RolledBack | Phase::Aborted => exit::ROLLED_BACK,
            _ => exit::HELD,
        },
    }
}

fn report_error(e: &LocalError) -> i32 {
    say!("error: {e}");
    if e.is_invalid_input() {
        exit::INVALID_INPUT
    } else {
        exit::COULD_NOT_RUN
    }
}

/// Cancels `stop` on the first Ctrl-C or SIGTERM.
pub async fn cancel_on_signal(stop: CancellationToken) {
    crate::cli::demo_app::shutdown_signal().await;
    say!("shiftgate: interrupted; finishing the write in flight and saving the state");
    stop.cancel();
}

fn print_summary(label: &str, end: &RunEnd, started: Option<Timestamp>, grafana: Option<&str>) {
    let status = end.status();
    let how = match end {
        RunEnd::Settled(_) => "",
        RunEnd::Paused(_) => " (paused: `shiftgate resume` then run again)",
        RunEnd::Interrupted(_) => " (interrupted: run again to resume)",
    };
    say!(
        "shiftgate: {label} is {} at canary {}%{how}",
        status.phase,
        status.canary_weight
    );
    if let Some(colours) = crate::engine::colours::describe(status) {
        say!("  {colours}");
    }
    if let Some(message) = &status.message {
        say!("  {}: {message}", status.reason.as_deref().unwrap_or("-"));
    }
    if let Some(link) = grafana {
        say!("  grafana: {link}");
    }
    print_history(status, started);
}

/// The transitions of this revision, oldest first.
pub fn print_history(status: &RolloutStatus, since: Option<Timestamp>) {
    let origin = since.or(status.started_at);
    for entry in &status.history {
        let at = match origin {
            Some(origin) => format!(
                "+{:5.1}s",
                (entry.at - origin).num_milliseconds() as f64 / 1000.0
            ),
            None => entry.at.format("%H:%M:%S").to_string(),
        };
        say!(
            "  {at} {:<11} step {} canary {:>3}%  {}",
            entry.phase.as_str(),
            entry.step + 1,
            entry.canary_weight,
            entry.message
        );
    }
}

fn print_json(label: &str, end: &RunEnd, code: i32) -> anyhow::Result<()> {
    let document = serde_json::json!({
        "policy": label,
        "phase": end.status().phase,
        "canaryWeight": end.status().canary_weight,
        "exitCode": code,
        "interrupted": matches!(end, RunEnd::Interrupted(_)),
        "status": end.status(),
    });
    let text = serde_json::to_string_pretty(&document).context("cannot encode the status")?;
    out!("{text}");
    Ok(())
}

/// What one tick of `run` shows on its `/metrics`: the phase, step and weight, and the
/// result (with its duration) of a rollout that ended.
fn record_metrics(
    metrics: &crate::observe::metrics::Metrics,
    policy: &crate::metrics::PolicyRef,
    tick: &crate::runtime::local::TickReport<'_>,
) {
    let status = &tick.outcome.status;
    metrics.set_rollout(policy, status.phase, status.step, status.canary_weight);
    for transition in &tick.outcome.transitions {
        metrics.transition_observed(policy, transition, status.started_at);
    }
}
