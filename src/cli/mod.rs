//! The command line: one file per subcommand. `main.rs` only parses, starts tracing
//! and dispatches here.

pub mod abort;
pub mod backtest;
pub mod bench_judges;
pub mod check;
pub mod completion;
pub mod crd;
pub mod daemon;
pub mod demo;
pub mod demo_app;
pub mod exit;
pub mod globals;
pub mod kube_target;
pub mod list;
pub mod local;
pub mod logging;
pub mod measure;
pub mod output;
pub mod pause;
pub mod plugin;
pub mod progress;
pub mod promote;
pub mod resume;
pub mod retry;
pub mod route_lock;
pub mod run;
pub mod run_lock;
pub mod schema;
pub mod simulate;
pub mod status;
pub mod status_view;
pub mod status_watch;
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
    #[command(flatten)]
    pub globals: globals::GlobalArgs,
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
    /// Show where a rollout is: a local one, or a RolloutPolicy in the cluster (`--watch`:
    /// follow it to its end).
    Status(status::StatusArgs),
    /// List the rollouts: local ones under --state-dir, or RolloutPolicies in the cluster
    /// (`--cluster`; `-A`: every namespace).
    List(list::ListArgs),
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
    /// Start a rolled-back or aborted rollout again from step 1 (same revision).
    Retry(retry::RetryArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completion(completion::CompletionArgs),
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
    let Cli {
        globals, command, ..
    } = cli;
    if let Err(code) = globals.apply() {
        return code;
    }
    match command {
        Command::Check(args) => check::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Crd(args) => crd::run(args),
        Command::Daemon(mut args) => {
            args.namespace = globals.daemon_namespace();
            daemon::run(args)
        }
        Command::Demo(args) => demo::run(args),
        Command::Local(args) => local::run(args),
        Command::DemoApp(args) => demo_app::run(args),
        Command::MeasureRollback(args) => measure::run(args),
        Command::BenchJudges(args) => bench_judges::run(args),
        Command::Run(mut args) => {
            args.context.clone_from(&globals.context);
            run::run(args)
        }
        Command::Status(mut args) => {
            globals.fill(&mut args.target);
            status::run(args)
        }
        Command::List(args) => list::run(args, &globals),
        Command::Promote(mut args) => {
            globals.fill(&mut args.target);
            promote::run(args)
        }
        Command::Pause(mut args) => {
            globals.fill(&mut args.target);
            pause::run(args)
        }
        Command::Resume(mut args) => {
            globals.fill(&mut args.target);
            resume::run(args)
        }
        Command::Abort(mut args) => {
            globals.fill(&mut args.target);
            abort::run(args)
        }
        Command::Undo(mut args) => {
            globals.fill(&mut args.target);
            undo::run(args)
        }
        Command::Retry(mut args) => {
            globals.fill(&mut args.target);
            retry::run(args)
        }
        Command::Completion(args) => completion::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Backtest(args) => backtest::run(args),
    }
}
