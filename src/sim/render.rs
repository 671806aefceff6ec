//! The human-readable timeline printed by `shiftgate simulate`.

use std::fmt::Write;

use crate::policy::status::VerdictKind;
use crate::sim::run::SimReport;

/// Renders the report as text: one block per tick in which something happened.
pub fn render_text(report: &SimReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "simulating {} (revision {}) against scenario {}, seed {}",
        report.policy,
        report.revision,
        if report.scenario.is_empty() {
            "(unnamed)"
        } else {
            &report.scenario
        },
        report.seed
    );
    let _ = writeln!(
        out,
        "{:>8}  {:<12} {:>5} {:>7}  event",
        "time", "phase", "step", "weight"
    );
    for entry in &report.timeline {
        let head = format!(
            "{:>8}  {:<12} {:>5} {:>6}%",
            entry.at.to_string(),
            entry.phase.as_str(),
            entry.step,
            entry.canary_weight
        );
        let mut lines: Vec<String> = Vec::new();
        if let Some(analysis) = &entry.analysis {
            lines.push(format!(
                "analysis {}: {}",
                verdict_word(analysis.verdict),
                analysis.message
            ));
            for metric in &analysis.metrics {
                let stable = metric
                    .stable
                    .map(|s| format!(" (stable {})", crate::analysis::judge::num(s)))
                    .unwrap_or_default();
                lines.push(format!(
                    "  {:<16} {}{stable} → {}",
                    metric.name,
                    metric.message,
                    verdict_word(metric.verdict)
                ));
            }
        }
        for check in &entry.checks {
            lines.push(format!(
                "check {} {}: {}",
                check.name,
                if check.passed { "PASS" } else { "FAIL" },
                check.message
            ));
        }
        for hook in &entry.hooks {
            lines.push(crate::runtime::hooks::describe_hook(hook));
        }
        for write in &entry.writes {
            lines.push(format!(
                "write canary {}%, test route {}",
                write.canary_weight,
                if write.test_route { "on" } else { "off" }
            ));
        }
        for transition in &entry.transitions {
            lines.push(format!("{}: {}", transition.reason, transition.message));
        }
        if let Some(note) = &entry.note {
            lines.push(note.clone());
        }
        for problem in &entry.problems {
            lines.push(format!("! {problem}"));
        }
        for (i, line) in lines.iter().enumerate() {
            if i == 0 {
                let _ = writeln!(out, "{head}  {line}");
            } else {
                let _ = writeln!(out, "{:>37}{line}", "");
            }
        }
    }
    let _ = writeln!(
        out,
        "outcome: {} after {} ({} ticks, exit {})",
        report.outcome.as_str(),
        report.elapsed,
        report.ticks,
        report.outcome.exit_code()
    );
    if let Some(message) = &report.status.message {
        let _ = writeln!(out, "last: {message}");
    }
    for failure in &report.expectation_failures {
        let _ = writeln!(out, "EXPECTATION NOT MET: {failure}");
    }
    out
}

fn verdict_word(kind: VerdictKind) -> &'static str {
    match kind {
        VerdictKind::Pass => "PASS",
        VerdictKind::Fail => "FAIL",
        VerdictKind::Inconclusive => "INCONCLUSIVE",
    }
}
