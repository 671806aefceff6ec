//! `shiftgate simulate POLICY --scenario SCENARIO [--seed N] [--output text|json]`: runs
//! the real engine and reconciler against a scripted world on a virtual clock, prints
//! the timeline and exits with the outcome's code (0 promoted, 1 rolled back or
//! aborted, 4 held or paused, 3 unfinished), or 5 when the scenario's `expect` is not met.

use std::io::Write as _;
use std::path::PathBuf;

use crate::cli::exit;
use crate::cli::output::{say, stdout_all, with_stdout};
use crate::policy::parse::parse_file;
use crate::sim::render::render_text;
use crate::sim::{Scenario, Simulation};

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// The policy file to simulate.
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
    /// The scenario file (`kind: Scenario`, see docs/simulation.md).
    #[arg(long, value_name = "SCENARIO")]
    pub scenario: PathBuf,
    /// Seed of the scripted noise: the same seed gives the same timeline.
    #[arg(long, default_value_t = 1, env = "SHIFTGATE_SIM_SEED")]
    pub seed: u64,
    /// Which policy of a multi-document file (by metadata.name); default: the only one.
    #[arg(long)]
    pub name: Option<String>,
    /// `text` (a readable timeline) or `json` (the whole report on stdout).
    #[arg(long, value_enum, default_value_t = SimulateOutput::Text)]
    pub output: SimulateOutput,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimulateOutput {
    Text,
    Json,
}

pub fn run(args: SimulateArgs) -> i32 {
    let policies = match parse_file(&args.policy) {
        Ok(policies) => policies,
        Err(diagnostics) => {
            for d in diagnostics {
                say!("{d}");
            }
            return exit::INVALID_INPUT;
        }
    };
    let chosen: Vec<_> = policies
        .iter()
        .filter(|p| {
            args.name
                .as_deref()
                .is_none_or(|n| p.policy.metadata.name.as_deref() == Some(n))
        })
        .collect();
    let loaded = match chosen.as_slice() {
        [one] => *one,
        [] => {
            say!(
                "shiftgate: {} holds no policy{}; check the file or --name",
                args.policy.display(),
                args.name
                    .as_deref()
                    .map(|n| format!(" named {n}"))
                    .unwrap_or_default()
            );
            return exit::INVALID_INPUT;
        }
        _ => {
            say!(
                "shiftgate: {} holds {} policies; choose one with --name",
                args.policy.display(),
                chosen.len()
            );
            return exit::INVALID_INPUT;
        }
    };
    let scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            say!("shiftgate: {e}");
            return exit::INVALID_INPUT;
        }
    };
    let policy = loaded.policy.file_reference();
    let simulation = match Simulation::new(policy, loaded.policy.spec.clone(), scenario, args.seed)
    {
        Ok(s) => s,
        Err(e) => {
            say!("shiftgate: {}: {e}", args.policy.display());
            return exit::INVALID_INPUT;
        }
    };
    let report = simulation.run();
    // A closed pipe (`… --output json | head`) is a normal end: the outcome's code.
    let printed = match args.output {
        SimulateOutput::Text => stdout_all(&render_text(&report)),
        SimulateOutput::Json => with_stdout(|out| {
            // `From` keeps the I/O error's kind (a broken pipe stays one).
            serde_json::to_writer_pretty(&mut *out, &report).map_err(std::io::Error::from)?;
            writeln!(out)
        }),
    };
    if let Err(e) = printed {
        say!("shiftgate: cannot write the timeline: {e}");
        return exit::COULD_NOT_RUN;
    }
    if !report.expectation_failures.is_empty() {
        for failure in &report.expectation_failures {
            say!("shiftgate: expectation not met: {failure}");
        }
        return exit::EXPECTATION_NOT_MET;
    }
    report.outcome.exit_code()
}
