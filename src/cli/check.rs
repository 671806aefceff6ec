//! `shiftgate check FILE|DIR...`: validates policy files and reports every problem of
//! every file at once, like a compiler: `file:line:col: path: message (hint: …)`.
//! Exit 0 when all are valid, 2 (invalid input) otherwise.

use std::io::Write as _;
use std::path::PathBuf;

use crate::cli::exit;
use crate::cli::output::say;
use crate::policy::report::{check_paths, Report};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Policy files, or directories searched recursively for `*.yaml` and `*.yml`.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// `text` (one line per problem) or `json` (one document on stdout).
    #[arg(long, value_enum, default_value_t = CheckOutput::Text)]
    pub output: CheckOutput,
    /// Treat warnings as errors (exit 2 when there is any).
    #[arg(long, env = "SHIFTGATE_DENY_WARNINGS")]
    pub deny_warnings: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutput {
    Text,
    Json,
}

pub fn run(args: CheckArgs) -> i32 {
    let report = check_paths(&args.paths);
    let valid = report.is_valid(args.deny_warnings);
    let printed = match args.output {
        CheckOutput::Text => print_text(&report),
        CheckOutput::Json => print_json(&report, valid),
    };
    // A closed pipe (`shiftgate check … | head`) is not a failure of the check.
    if let Err(e) = printed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            say!("shiftgate: cannot write the report: {e}");
            return exit::COULD_NOT_RUN;
        }
    }
    if valid {
        exit::OK
    } else {
        exit::INVALID_INPUT
    }
}

fn print_text(report: &Report) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for diagnostic in &report.diagnostics {
        writeln!(out, "{diagnostic}")?;
    }
    out.flush()?;
    say!("{}", summary(report));
    // Offline, the cluster is not read: what the queries will select, and what that assumes.
    for loaded in &report.policies {
        let policy = loaded.policy.file_reference();
        // A policy with colours has no stable or canary until a live route says which
        // colour serves: described as if the first colour served (the other way round
        // after the next promotion).
        let spec = &loaded.policy.spec;
        let (spec, when) =
            match crate::policy::colours::colour_names(&spec.router).and_then(|[live, idle]| {
                let oriented = crate::policy::colours::orient(spec, &live)?;
                Some((
                    oriented,
                    format!("while {live} is live ({idle} after a flip): "),
                ))
            }) {
                Some((oriented, when)) => (std::borrow::Cow::Owned(oriented), when),
                None => (std::borrow::Cow::Borrowed(spec), String::new()),
            };
        for line in crate::metrics::selection::describe(&policy, &spec) {
            say!(
                "{}: {}/{}: {when}{line}",
                loaded.file.display(),
                policy.namespace,
                policy.name
            );
        }
    }
    Ok(())
}

fn print_json(report: &Report, valid: bool) -> std::io::Result<()> {
    let document = serde_json::json!({
        "valid": valid,
        "files": report.files,
        "policies": report.documents,
        "errors": report.errors(),
        "warnings": report.warnings(),
        "diagnostics": report.diagnostics,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &document)?;
    writeln!(out)?;
    out.flush()
}

/// `checked 7 files (7 policies): 2 errors, 1 warning`.
fn summary(report: &Report) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "checked {} ({}): {}, {}",
        plural(report.files, "file"),
        plural(report.documents, "policy").replace("policys", "policies"),
        plural(report.errors(), "error"),
        plural(report.warnings(), "warning"),
    )
}
