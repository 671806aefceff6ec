//! The command line: one file per subcommand. `main.rs` only parses, starts tracing
//! and dispatches here.

pub mod abort;
pub mod backtest;
pub mod bench_judges;
pub mod check;
pub mod crd;
pub mod daemon;
pub mod demo;
pub mod demo_app;
pub mod exit;
pub mod kube_target;
pub mod local;
pub mod logging;
pub mod measure;
pub mod output;
pub mod pause;
pub mod progress;
pub mod promote;
pub mod resume;
pub mod route_lock;
pub mod run;
pub mod run_lock;
pub mod schema;
pub mod simulate;
pub mod status;
pub mod undo;

use clap::{Parser, Subcommand};

use crate::cli::output::say;

/// shiftgate moves traffic from a stable release to a canary in steps, judges every
/// step from Prometheus, and rolls back by itself when the canary is bad.
#[derive(Parser, Debug)]
#[command(
    name = "shiftgate",
    version = crate::build_info::VERSION_WITH_COMMIT,
    about,
    long_about = None,
    after_help = "Exit codes: each command's `--help` lists its own (all of them: docs/cli.md)."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SHIFTGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate policy files: every problem of every file, with file:line:col and field path.
    Check(check::CheckArgs),
    /// Print the JSON Schema of a policy file (for editors' YAML language servers).
    Schema(schema::SchemaArgs),
    /// Print the RolloutPolicy CustomResourceDefinition (YAML) generated from the types.
    Crd(crd::CrdArgs),
    /// Run a policy against a scripted scenario on virtual time: the real engine, no cluster.
    Simulate(simulate::SimulateArgs),
    /// Replay a policy's judges over past Prometheus data on a virtual clock: the timeline
    /// and the decision it would have made, and when.
    Backtest(backtest::BacktestArgs),
    /// Run the in-cluster controller: watch RolloutPolicies, drive their rollouts, serve /metrics.
    Daemon(Box<daemon::DaemonArgs>),
    /// Run one rollout in the foreground to its end: Envoy locally, or Istio/Service
    /// through kubeconfig.
    Run(run::RunArgs),
    /// Show where a local rollout is.
    Status(status::StatusArgs),
    /// Skip the current step's remaining analysis (`--full`: straight to 100%).
    Promote(promote::PromoteArgs),
    /// Stop moving traffic at the current weight.
    Pause(pause::PauseArgs),
    /// Continue a paused or held rollout.
    Resume(resume::ResumeArgs),
    /// Put every request back on stable now and end the rollout.
    Abort(abort::AbortArgs),
    /// After a promotion: every request back on the previous stable in one write.
    Undo(undo::UndoArgs),
    /// The local demo: real Envoy and Prometheus, a good release promoted, a bad one rolled back.
    Demo(demo::DemoArgs),
    /// The local playground: the demo's stack kept running for your own `shiftgate run`.
    Local(local::LocalArgs),
    /// One instance of the demo HTTP app (started by `shiftgate demo` and the tests).
    #[command(hide = true)]
    DemoApp(demo_app::DemoAppArgs),
    /// Time to rollback on the local stack (driven by scripts/measure-rollback).
    #[command(hide = true)]
    MeasureRollback(measure::MeasureArgs),
    /// The detection benchmark of docs/benchmarks.md: judges on seeded noisy traffic.
    #[command(hide = true)]
    BenchJudges(bench_judges::BenchJudgesArgs),
}

/// The single-threaded runtime the short commands (status, promote, …) run on; a failure
/// to build it is reported and becomes exit code 3.
pub(crate) fn current_thread_runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            say!("error: cannot start the async runtime: {e}");
            exit::COULD_NOT_RUN
        })
}

/// The command line, with every subcommand's exit codes (from [`exit::BY_COMMAND`]) at
/// the end of its `--help`. Both binaries parse with this, never with `Cli::parse`.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command().mut_subcommands(|subcommand| {
        match exit::codes_of(subcommand.get_name()) {
            Some(codes) => subcommand.after_help(exit::help(codes)),
            None => subcommand,
        }
    })
}

/// Parses the process's arguments with [`command`]; a usage error exits 2 (or 0 for
/// `--help`), as clap does.
pub fn parse_args(command: clap::Command) -> Cli {
    let matches = command.get_matches();
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the parsed command and returns the process exit code.
pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Crd(args) => crd::run(args),
        Command::Daemon(args) => daemon::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Local(args) => local::run(args),
        Command::DemoApp(args) => demo_app::run(args),
        Command::MeasureRollback(args) => measure::run(args),
        Command::BenchJudges(args) => bench_judges::run(args),
        Command::Run(args) => run::run(args),
        Command::Status(args) => status::run(args),
        Command::Promote(args) => promote::run(args),
        Command::Pause(args) => pause::run(args),
        Command::Resume(args) => resume::run(args),
        Command::Abort(args) => abort::run(args),
        Command::Undo(args) => undo::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Backtest(args) => backtest::run(args),
    }
}
