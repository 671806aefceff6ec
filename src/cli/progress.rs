//! The progress lines of `shiftgate run` (and the demo) on stderr: a line when
//! something changes (a transition, a new evaluation, a move, the checks) and, during
//! a long hold, a reminder once a minute with the time left. Never the same line over
//! and over: a run ticks up to four times a second, and the time left alone is no news.

use crate::cli::output::say;
use crate::policy::{Phase, RolloutStatus, Timestamp};
use crate::runtime::local::{describe_progress, TickReport};

/// How often a hold with nothing new is reported anyway (with the time left).
const REMINDER_SECONDS: i64 = 60;

/// Decides which lines a tick is worth; [`Progress::show`] prints them.
#[derive(Default)]
pub struct Progress {
    pub started: Option<Timestamp>,
    /// What the last status line showed, but its countdown.
    last_seen: Option<Seen>,
    last_line: String,
    last_printed_at: Option<Timestamp>,
    last_problems: Vec<String>,
    /// The hook answers already printed.
    hooks_shown: Vec<crate::policy::HookResult>,
}

/// What makes a status line news: everything it shows except the time left.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    phase: Phase,
    step: u32,
    canary_weight: u8,
    test_route: bool,
    moving_to: Option<u8>,
    step_started_at: Option<Timestamp>,
    analysis_at: Option<Timestamp>,
}

impl Seen {
    fn of(status: &RolloutStatus) -> Self {
        Seen {
            phase: status.phase,
            step: status.step,
            canary_weight: status.canary_weight,
            test_route: status.test_route,
            moving_to: status.target.map(|target| target.canary_weight),
            step_started_at: status.step_started_at,
            analysis_at: status.last_analysis.as_ref().map(|analysis| analysis.at),
        }
    }
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
        for result in &outcome.status.last_hooks {
            if !self.hooks_shown.contains(result) {
                let hook = crate::runtime::hooks::describe_hook(result);
                lines.push(format!("[{elapsed:6.1}s] {hook}"));
                self.hooks_shown.push(result.clone());
            }
        }
        let line = describe_progress(tick.spec, &outcome.status, tick.now);
        let seen = Seen::of(&outcome.status);
        let news = self.last_seen.as_ref() != Some(&seen)
            || outcome.checked
            || !outcome.transitions.is_empty();
        // Only a line that says something new (the time left) is worth a reminder.
        let reminder = line != self.last_line
            && self
                .last_printed_at
                .is_some_and(|at| (tick.now - at).num_seconds() >= REMINDER_SECONDS);
        if news || reminder {
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
            self.last_line = line;
            self.last_printed_at = Some(tick.now);
            self.last_seen = Some(seen);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::RolloutSpec;
    use crate::runtime::reconcile::TickOutcome;

    fn spec() -> RolloutSpec {
        serde_json::from_value(serde_json::json!({
            "revision": "v1",
            "router": { "envoy": { "routesFile": "/r.yaml", "adminAddress": "127.0.0.1:1",
                                   "stableCluster": "s", "canaryCluster": "c" } },
            "steps": [0, { "weight": 20, "hold": "1h" }, 100],
            "analysis": {
                "interval": "1h",
                "metrics": [ { "name": "error-rate", "query": "e", "max": 0.05 } ],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_quiet_hold_is_reported_once_a_minute() {
        let spec = spec();
        let start = chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap();
        let outcome = TickOutcome {
            status: RolloutStatus {
                revision: Some("v1".to_owned()),
                phase: Phase::Progressing,
                step: 1,
                canary_weight: 20,
                step_started_at: Some(start),
                ..RolloutStatus::default()
            },
            wake_at: None,
            transitions: Vec::new(),
            writes: Vec::new(),
            evaluated: false,
            checked: false,
            problems: Vec::new(),
        };
        let mut progress = Progress::default();
        let mut printed = Vec::new();
        for second in 0..150 {
            let now = start + chrono::Duration::seconds(second);
            printed.extend(progress.lines(&TickReport {
                now,
                spec: &spec,
                outcome: &outcome,
            }));
        }
        let at: Vec<&str> = printed.iter().map(|l| &l[..9]).collect();
        assert_eq!(at, ["[   0.0s]", "[  60.0s]", "[ 120.0s]"], "{printed:#?}");
        assert!(printed[1].contains("3541s left in step"), "{}", printed[1]);
    }
}
