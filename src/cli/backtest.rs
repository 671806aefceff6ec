//! `shiftgate backtest POLICY --prometheus URL --from T --to T`: replays the policy's
//! judges over past Prometheus data, evaluation by evaluation, as if the rollout had
//! started at `--from`: the real engine and reconciler on a virtual clock, the
//! in-memory router, and the real Prometheus metric source evaluating every query at
//! each virtual instant. Prints the same timeline as `simulate`, then the decision and
//! when it would have been made. Exit codes as `simulate` (docs/cli.md).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use crate::analysis::sample::Sample;
use crate::cli::exit;
use crate::cli::output::say;
use crate::cli::simulate::SimulateOutput;
use crate::metrics::prometheus::PrometheusSource;
use crate::metrics::{MetricSource, PolicyRef};
use crate::policy::parse::parse_file;
use crate::policy::{Duration, PrometheusSpec, RolloutSpec, Timestamp};
use crate::sim::render::render_text;
use crate::sim::scenario::MAX_SCENARIO_DURATION;
use crate::sim::{Outcome, Scenario, SimReport, Simulation};

#[derive(clap::Args, Debug)]
pub struct BacktestArgs {
    /// The policy file whose judges are replayed.
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
    /// The Prometheus holding the history, e.g. `http://127.0.0.1:9090`; replaces the
    /// policy's `analysis.prometheus.address` (its timeout and auth are kept).
    #[arg(long, value_name = "URL")]
    pub prometheus: String,
    /// When the replayed rollout starts (RFC 3339, e.g. `2026-01-05T10:00:00Z`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Timestamp,
    /// When the replay stops if no decision was made (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Timestamp,
    /// Which policy of a multi-document file (by metadata.name); default: the only one.
    #[arg(long)]
    pub name: Option<String>,
    /// `text` (a readable timeline) or `json` (the whole report on stdout).
    #[arg(long, value_enum, default_value_t = SimulateOutput::Text)]
    pub output: SimulateOutput,
}

/// An http(s) URL without credentials in it (they would be printed with the timeline).
/// Checked after parsing, not by clap, which would echo the password in its error.
fn check_prometheus(text: &str) -> Result<(), String> {
    if crate::redact::has_userinfo(text) {
        return Err(format!(
            "--prometheus `{}` carries credentials in the URL; remove `user:password@` and put them in the policy's analysis.prometheus.auth",
            crate::redact::urls(text)
        ));
    }
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(format!(
            "--prometheus `{}` is not an http(s) URL; write e.g. http://127.0.0.1:9090",
            crate::redact::urls(text)
        )),
    }
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            format!("`{text}` is not an RFC 3339 time ({e}); write e.g. 2026-01-05T10:00:00Z")
        })
}

pub fn run(args: BacktestArgs) -> i32 {
    let (policy, spec) = match load(&args) {
        Ok(loaded) => loaded,
        Err(message) => {
            say!("shiftgate: {message}");
            return exit::INVALID_INPUT;
        }
    };
    let span = match (args.to - args.from).to_std() {
        Ok(span) if !span.is_zero() && Duration::from(span) <= MAX_SCENARIO_DURATION => span,
        _ => {
            say!(
                "shiftgate: --to must be after --from, by at most {}",
                MAX_SCENARIO_DURATION.to_human()
            );
            return exit::INVALID_INPUT;
        }
    };
    if args.to > crate::runtime::Clock::now(&crate::runtime::SystemClock) {
        say!(
            "shiftgate: --to {} is in the future: Prometheus holds no data there yet; write a time up to now",
            args.to.to_rfc3339()
        );
        return exit::INVALID_INPUT;
    }
    let mut scenario = Scenario::healthy(&format!(
        "backtest {} → {}",
        args.from.to_rfc3339(),
        args.to.to_rfc3339()
    ));
    scenario.start = args.from;
    scenario.max_duration = Duration::from(span);
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let source: Arc<dyn MetricSource> = Arc::new(PrometheusSource::new(None));
    if let Err(message) = runtime.block_on(reachable(&*source, &policy, &spec, args.from)) {
        say!("shiftgate: {message}");
        return exit::COULD_NOT_RUN;
    }
    let mut simulation = match Simulation::with_source(policy, spec, scenario, source) {
        Ok(s) => s,
        Err(e) => {
            say!("shiftgate: {}: {e}", args.policy.display());
            return exit::INVALID_INPUT;
        }
    };
    runtime.block_on(async { while simulation.tick_async().await {} });
    let report = simulation.report();
    if let Err(e) = print(&report, &args) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            say!("shiftgate: cannot write the timeline: {e}");
            return exit::COULD_NOT_RUN;
        }
    }
    if saw_no_data(&report) {
        say!(
            "shiftgate: prometheus at {} held no data for any evaluation from {} to {}: the \
             decision above judged nothing. Check the range against its retention \
             (--storage.tsdb.retention.time) and the policy's targets against its labels.",
            args.prometheus,
            args.from.to_rfc3339(),
            args.to.to_rfc3339()
        );
        return exit::COULD_NOT_RUN;
    }
    report.outcome.exit_code()
}

/// Whether there were evaluations and none of them found a single number: a range the
/// Prometheus does not hold (or a policy whose selectors match nothing there).
fn saw_no_data(report: &SimReport) -> bool {
    let mut analyses = report.timeline.iter().filter_map(|e| e.analysis.as_ref());
    let mut any = false;
    let found = analyses.any(|a| {
        any = true;
        a.canary_requests.is_some()
            || a.metrics
                .iter()
                .any(|m| m.canary.is_some() || m.stable.is_some())
    });
    any && !found
}

/// The chosen policy, its analysis pointed at `--prometheus`.
fn load(args: &BacktestArgs) -> Result<(PolicyRef, RolloutSpec), String> {
    check_prometheus(&args.prometheus)?;
    let policies = parse_file(&args.policy).map_err(|diagnostics| {
        diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let mut chosen: Vec<_> = policies
        .into_iter()
        .filter(|p| {
            args.name
                .as_deref()
                .is_none_or(|n| p.policy.metadata.name.as_deref() == Some(n))
        })
        .collect();
    if chosen.len() != 1 {
        return Err(format!(
            "{} holds {} policies{}; choose one with --name",
            args.policy.display(),
            chosen.len(),
            args.name
                .as_deref()
                .map(|n| format!(" named {n}"))
                .unwrap_or_default()
        ));
    }
    let policy = chosen.remove(0).policy;
    let reference = policy.file_reference();
    let mut spec = policy.spec;
    let mut prometheus = spec.analysis.prometheus.take().unwrap_or_else(|| {
        Box::new(PrometheusSpec {
            address: None,
            provider: None,
            timeout: Duration::from_secs(5),
            auth: None,
            ca_file: None,
            ca_secret_ref: None,
        })
    });
    prometheus.address = Some(args.prometheus.clone());
    prometheus.provider = None;
    spec.analysis.prometheus = Some(prometheus);
    Ok((reference, spec))
}

/// Asks every query once at the first evaluation's instant: an unreachable Prometheus
/// would make every evaluation Inconclusive, which is no backtest.
async fn reachable(
    source: &dyn MetricSource,
    policy: &PolicyRef,
    spec: &RolloutSpec,
    from: Timestamp,
) -> Result<(), String> {
    let input = source.observe(policy, spec, from, None).await;
    let samples = std::iter::once(&input.canary_requests).chain(
        input
            .metrics
            .iter()
            .flat_map(|m| std::iter::once(&m.canary).chain(m.stable.as_ref())),
    );
    for sample in samples {
        match sample {
            Sample::Unreachable { message } | Sample::Invalid { message } => {
                return Err(message.clone())
            }
            Sample::TimedOut => {
                return Err("prometheus did not answer within the policy's timeout".to_owned())
            }
            _ => {}
        }
    }
    Ok(())
}

fn print(report: &SimReport, args: &BacktestArgs) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match args.output {
        SimulateOutput::Text => {
            // The simulation's timeline under a heading of its own (no scenario, no seed).
            let timeline = render_text(report);
            let body = timeline.split_once('\n').map_or("", |(_, rest)| rest);
            writeln!(
                out,
                "backtesting {} (revision {}) over {} from {} to {}",
                report.policy,
                report.revision,
                args.prometheus,
                args.from.to_rfc3339(),
                args.to.to_rfc3339()
            )?;
            out.write_all(body.as_bytes())?;
            writeln!(out, "{}", decision(report, args.from))?;
        }
        SimulateOutput::Json => {
            serde_json::to_writer_pretty(&mut out, report).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
    }
    out.flush()
}

/// "would have rolled back at 2026-01-05T10:04:00+00:00 (4m after --from)".
fn decision(report: &SimReport, from: Timestamp) -> String {
    let when = crate::engine::plan::later(from, crate::engine::plan::to_chrono(report.elapsed));
    let at = format!("at {} ({} after --from)", when.to_rfc3339(), report.elapsed);
    match report.outcome {
        Outcome::Promoted => format!("decision: would have promoted {at}"),
        Outcome::RolledBack => format!("decision: would have rolled back {at}"),
        Outcome::Aborted => format!("decision: would have aborted {at}"),
        Outcome::Held => format!("decision: would have held {at}, waiting for an operator"),
        Outcome::Paused => format!("decision: would have paused {at}, waiting for an operator"),
        Outcome::Unfinished => format!("decision: none before --to ({at})"),
        Outcome::Refused => "decision: would have refused to start".to_owned(),
    }
}
