//! `shiftgate check FILE|DIR|-...`: validates policy files (`-`: standard input, e.g.
//! `kustomize build | shiftgate check -`) and reports every problem of every file at
//! once, like a compiler: `file:line:col: path: message (hint: …)`. Documents of other
//! kinds (a Deployment in the same stream) are skipped with a note; `--strict` fails on
//! them. Exit 0 when all are valid, 2 (invalid input) otherwise.

use std::io::Write as _;
use std::path::PathBuf;

use crate::cli::exit;
use crate::cli::output::say;
use crate::cli::status_view::{encode, ReadOutput};
use crate::policy::parse::SkippedDocument;
use crate::policy::report::{check_paths, Report};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Policy files, directories searched recursively for `*.yaml` and `*.yml`, or `-`
    /// for standard input.
    #[arg(required = true, value_name = "FILE|DIR|-")]
    pub paths: Vec<PathBuf>,
    /// `text` (one line per problem), or one `json` or `yaml` document on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = ReadOutput::Text)]
    pub output: ReadOutput,
    /// Treat warnings as errors (exit 2 when there is any).
    #[arg(long, env = "SHIFTGATE_DENY_WARNINGS")]
    pub deny_warnings: bool,
    /// Fail (exit 2) on documents of other kinds instead of skipping them.
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: CheckArgs) -> i32 {
    let report = check_paths(&args.paths);
    // With --strict a document of another kind is an error.
    let other_kinds_fail = args.strict && !report.skipped.is_empty();
    let valid = report.is_valid(args.deny_warnings) && !other_kinds_fail;
    let printed = match args.output {
        ReadOutput::Text => print_text(&report, args.strict),
        format => print_document(&report, valid, format),
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

/// `file:line: skipped: Deployment web is not a RolloutPolicy` (an error with --strict).
fn skipped_line(skipped: &SkippedDocument, strict: bool) -> String {
    let name = skipped
        .name
        .as_deref()
        .map_or_else(String::new, |name| format!(" {name}"));
    if strict {
        format!(
            "{}:{}:1: error: {}{name} is not a RolloutPolicy (--strict fails on other kinds; \
             check only the policies, or drop --strict to skip the rest)",
            skipped.file.display(),
            skipped.line,
            skipped.kind
        )
    } else {
        format!(
            "{}:{}: note: skipped {}{name}: not a RolloutPolicy",
            skipped.file.display(),
            skipped.line,
            skipped.kind
        )
    }
}

fn print_text(report: &Report, strict: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for diagnostic in &report.diagnostics {
        writeln!(out, "{diagnostic}")?;
    }
    if strict {
        for skipped in &report.skipped {
            writeln!(out, "{}", skipped_line(skipped, true))?;
        }
    }
    out.flush()?;
    if !strict {
        for skipped in &report.skipped {
            say!("{}", skipped_line(skipped, false));
        }
    }
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

fn print_document(report: &Report, valid: bool, format: ReadOutput) -> std::io::Result<()> {
    let document = serde_json::json!({
        "valid": valid,
        "files": report.files,
        "policies": report.documents,
        "errors": report.errors(),
        "warnings": report.warnings(),
        "diagnostics": report.diagnostics,
        "skipped": report.skipped,
    });
    let text = encode(&document, format).map_err(std::io::Error::other)?;
    crate::cli::output::stdout_all(&text)
}

/// `checked 7 files (7 policies): 2 errors, 1 warning`.
fn summary(report: &Report) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let skipped = match report.skipped.len() {
        0 => String::new(),
        n => format!(", {} of other kinds skipped", plural(n, "document")),
    };
    format!(
        "checked {} ({}{skipped}): {}, {}",
        plural(report.files, "file"),
        plural(report.documents, "policy").replace("policys", "policies"),
        plural(report.errors(), "error"),
        plural(report.warnings(), "warning"),
    )
}
