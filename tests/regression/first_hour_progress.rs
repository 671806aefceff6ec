//! Regression tests of issue "first hour", `run`'s progress lines: what it prints per
//! tick, fed ticks as the run loop makes them.

use chrono::Duration;
use shiftgate::cli::progress::Progress;
use shiftgate::policy::status::VerdictKind;
use shiftgate::policy::status::{AnalysisSummary, MetricSummary, RouteTarget, TargetPurpose};
use shiftgate::policy::{Phase, RolloutSpec, RolloutStatus, Timestamp};
use shiftgate::runtime::local::TickReport;
use shiftgate::runtime::reconcile::TickOutcome;

use super::super::support::command_world::{spec, start};

fn at(seconds: i64) -> Timestamp {
    start() + Duration::milliseconds(seconds * 1000)
}

fn analysis(at: Timestamp, verdict: VerdictKind, reason: &str, message: &str) -> AnalysisSummary {
    AnalysisSummary {
        at,
        verdict,
        reason: reason.into(),
        message: message.to_owned(),
        canary_requests: Some(42.0),
        metrics: vec![MetricSummary {
            name: "error-rate".to_owned(),
            canary: Some(0.001),
            stable: None,
            verdict,
            reason: reason.into(),
            message: format!("0.0010 <= 0.05 (evaluated at {})", at.format("%T")),
            evidence: None,
        }],
    }
}

/// Step 2 (20%, an hour's hold) confirmed at `at(0)`.
fn holding() -> RolloutStatus {
    RolloutStatus {
        revision: Some("v1".to_owned()),
        phase: Phase::Progressing,
        step: 1,
        canary_weight: 20,
        step_started_at: Some(at(0)),
        ..RolloutStatus::default()
    }
}

fn outcome(status: &RolloutStatus, evaluated: bool) -> TickOutcome {
    TickOutcome {
        status: status.clone(),
        wake_at: None,
        transitions: Vec::new(),
        writes: Vec::new(),
        evaluated,
        checked: false,
        problems: Vec::new(),
    }
}

fn lines(
    progress: &mut Progress,
    spec: &RolloutSpec,
    now: Timestamp,
    outcome: &TickOutcome,
) -> Vec<String> {
    progress.lines(&TickReport { now, spec, outcome })
}

/// The line without its `[  12.3s]` prefix.
fn text(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, text)| text)
}

#[test]
fn hold_prints_a_line_per_change_not_four_a_second() {
    let spec = spec("v1");
    let mut status = holding();
    let mut progress = Progress::default();
    let mut printed = Vec::new();
    // Three minutes of the hold, a tick every 250 ms, an evaluation every 30 s.
    for quarter in 0..(180 * 4) {
        let now = start() + Duration::milliseconds(quarter * 250);
        let evaluated = quarter % (30 * 4) == 0;
        if evaluated {
            status.last_analysis = Some(analysis(
                now,
                VerdictKind::Pass,
                "Passed",
                "every metric passed",
            ));
        }
        printed.extend(lines(
            &mut progress,
            &spec,
            now,
            &outcome(&status, evaluated),
        ));
    }
    // 6 evaluations and at most a reminder a minute.
    assert!(
        (6..=10).contains(&printed.len()),
        "{} lines in 3 minutes:\n{}",
        printed.len(),
        printed.join("\n")
    );
    for pair in printed.windows(2) {
        assert_ne!(text(&pair[0]), text(&pair[1]), "a line repeated");
    }
}

#[test]
fn promote_does_not_show_the_previous_steps_analysis_as_current() {
    let spec = spec("v1");
    let mut status = holding();
    status.last_analysis = Some(analysis(
        at(30),
        VerdictKind::Pass,
        "Passed",
        "every metric passed",
    ));
    let mut progress = Progress::default();
    let before = lines(&mut progress, &spec, at(31), &outcome(&status, true)).join("\n");
    assert!(before.contains("analysis Pass"), "{before}");
    // `promote`: on to step 3 (50%); the write is in flight, then confirmed.
    status.step = 2;
    status.step_started_at = None;
    status.target = Some(RouteTarget {
        canary_weight: 50,
        test_route: false,
        purpose: TargetPurpose::Step,
    });
    let moving = lines(&mut progress, &spec, at(32), &outcome(&status, false)).join("\n");
    status.target = None;
    status.canary_weight = 50;
    status.step_started_at = Some(at(33));
    let confirmed = lines(&mut progress, &spec, at(33), &outcome(&status, false)).join("\n");
    for shown in [&moving, &confirmed] {
        assert!(shown.contains("step 3/5"), "{shown}");
        assert!(
            !shown.contains("analysis Pass") && !shown.contains("error-rate"),
            "the analysis of step 2 shown as step 3's:\n{shown}"
        );
    }
}

#[test]
fn inconclusive_evaluation_says_why_in_the_progress_line() {
    let spec = spec("v1");
    let mut status = holding();
    status.last_analysis = Some(analysis(
        at(30),
        VerdictKind::Inconclusive,
        "TooFewRequests",
        "the canary served 3 requests in the window, fewer than minRequests 20",
    ));
    status.consecutive_inconclusive = 1;
    let mut progress = Progress::default();
    let shown = lines(&mut progress, &spec, at(30), &outcome(&status, true)).join("\n");
    assert!(shown.contains("Inconclusive"), "{shown}");
    assert!(
        shown.contains("TooFewRequests") && shown.contains("fewer than minRequests 20"),
        "no reason for Inconclusive:\n{shown}"
    );
}
