//! The progress lines of `shiftgate run` (and the demo) on stderr: what each tick
//! changed, as it happens.

use crate::cli::output::say;
use crate::policy::Timestamp;
use crate::runtime::local::{describe_progress, TickReport};

/// Decides which lines a tick is worth; [`Progress::show`] prints them.
#[derive(Default)]
pub struct Progress {
    pub started: Option<Timestamp>,
    last_line: String,
    last_problems: Vec<String>,
}

impl Progress {
    /// Prints the lines of [`Progress::lines`] on stderr.
    pub fn show(&mut self, tick: &TickReport<'_>) {
        for line in self.lines(tick) {
            say!("{line}");
        }
    }

    /// The lines worth printing for this tick (none when nothing changed).
    pub fn lines(&mut self, tick: &TickReport<'_>) -> Vec<String> {
        let mut lines = Vec::new();
        let started = *self.started.get_or_insert(tick.now);
        let elapsed = (tick.now - started).num_milliseconds() as f64 / 1000.0;
        let outcome = tick.outcome;
        for transition in &outcome.transitions {
            lines.push(format!(
                "[{elapsed:6.1}s] {:?}: {} (canary {}%)",
                transition.kind, transition.message, transition.canary_weight
            ));
        }
        let problems: Vec<String> = outcome
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.reason, p.message))
            .collect();
        if problems != self.last_problems {
            for problem in &problems {
                lines.push(format!("[{elapsed:6.1}s] ! {problem}"));
            }
            self.last_problems = problems;
        }
        let line = describe_progress(tick.spec, &outcome.status, tick.now);
        let changed = line != self.last_line;
        if outcome.evaluated || outcome.checked || !outcome.transitions.is_empty() || changed {
            lines.push(format!("[{elapsed:6.1}s] {line}"));
            for check in outcome
                .status
                .last_checks
                .iter()
                .filter(|_| outcome.checked)
            {
                let mark = if check.passed { "passed" } else { "FAILED" };
                lines.push(format!(
                    "          check {} {mark}: {}",
                    check.name, check.message
                ));
            }
        }
        self.last_line = line;
        lines
    }
}
