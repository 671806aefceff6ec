//! Table-like unit tests of the state machine: one observation in, one decision out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::TimeZone;

use super::*;
use crate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use crate::policy::status::{CheckResult, PauseReason, Phase, RouteTarget, TargetPurpose};
use crate::policy::{RolloutSpec, RolloutStatus, Timestamp};
use crate::router::ManagedRoute;

const SPEC: &str = r#"{
  "revision": "v2",
  "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
  "steps": [0, {"weight": 30, "hold": "2m"}, {"weight": 60, "pause": true}, 100],
  "testRoute": { "cookie": "test=true" },
  "checks": [ { "http": { "url": "http://gw/ready" } } ],
  "analysis": {
    "interval": "30s", "minRequests": 10, "failureLimit": 1, "inconclusiveLimit": 1,
    "metrics": [ { "name": "error-rate", "query": "x", "max": 0.01 } ]
  }
}"#;

fn spec_with(patch: serde_json::Value) -> RolloutSpec {
    let mut value: serde_json::Value = serde_json::from_str(SPEC).unwrap();
    if let (Some(map), serde_json::Value::Object(patch)) = (value.as_object_mut(), patch) {
        for (k, v) in patch {
            map.insert(k, v);
        }
    }
    serde_json::from_value(value).unwrap()
}

fn plan() -> Plan {
    Plan::new(&spec_with(serde_json::json!({}))).unwrap()
}

fn t(secs: i64) -> Timestamp {
    chrono::Utc.timestamp_opt(1_767_607_200 + secs, 0).unwrap()
}

fn route(w: u8, test: bool) -> ManagedRoute {
    ManagedRoute {
        canary_weight: w,
        test_route: test,
    }
}

/// Commands for the plan's revision, each with a new id.
fn cmds(words: &[Command]) -> Vec<OperatorCommand> {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    words
        .iter()
        .map(|w| {
            let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            OperatorCommand::new(id.to_string(), *w, "v2")
        })
        .collect()
}

fn obs(secs: i64, live: ManagedRoute) -> Observation {
    Observation::at(t(secs), Ok(live))
}

fn analysis(error_rate: Sample, requests: f64) -> AnalysisInput {
    AnalysisInput {
        at: t(0),
        canary_requests: Sample::value(requests),
        metrics: vec![MetricObservation {
            name: "error-rate".into(),
            canary: error_rate,
            stable: None,
        }],
    }
}

/// A state at step `index`, confirmed at `started` seconds.
fn at_step(index: u32, started: i64) -> RolloutStatus {
    let p = plan();
    RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Progressing,
        step: index,
        current_step: Some(format!("{}/{}", index + 1, p.steps().len())),
        canary_weight: p.step(index).weight,
        test_route: true,
        checks_passed: true,
        started_at: Some(t(0)),
        step_started_at: Some(t(started)),
        ..RolloutStatus::default()
    }
}

fn writes(d: &Decision) -> Vec<ManagedRoute> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::ApplyRoute(r) => Some(*r),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_revision_starts_from_the_live_weight_at_step_zero() {
    let d = step(&plan(), &RolloutStatus::default(), &obs(0, route(0, false)));
    assert_eq!(writes(&d), vec![route(0, true)]);
    assert_eq!(d.state.phase, Phase::Checking);
    assert!(d.transitions().any(|t| t.kind == TransitionKind::Started));
}

#[test]
fn a_new_revision_into_a_live_canary_writes_nothing_until_the_route_allows_it() {
    let d = step(
        &plan(),
        &RolloutStatus::default(),
        &obs(0, route(40, false)),
    );
    assert!(writes(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(d.state.phase, Phase::Pending);
    assert!(refused_live_canary(&d.state));
    assert_eq!(d.state.canary_weight, 40, "the live weight is the baseline");
    assert_eq!(d.transitions().count(), 0);
    let message = d.state.message.clone().unwrap_or_default();
    assert!(message.contains("canary c already serves 40%"), "{message}");
    let accepted = d.state.conditions.iter().find(|c| c.type_ == "Accepted");
    assert_eq!(
        accepted.map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("False", reasons::CANARY_IS_LIVE))
    );
    let again = step(&plan(), &d.state, &obs(60, route(40, false)));
    assert_eq!(again.state, d.state, "refused once, not on every look");
    // Someone put the route back: the rollout starts, and is accepted.
    let started = step(&plan(), &d.state, &obs(90, route(0, false)));
    assert_eq!(writes(&started), vec![route(0, true)]);
    assert!(!refused_live_canary(&started.state));
    let accepted = started
        .state
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted");
    assert_eq!(accepted.map(|c| c.status.as_str()), Some("True"));
}

#[test]
fn a_new_revision_never_deploys_into_the_live_colour() {
    let mut old = at_step(3, 0);
    old.revision = Some("v1".into());
    old.phase = Phase::Promoted;
    let d = step(&plan(), &old, &obs(0, route(100, false)));
    assert_eq!(d.state.revision.as_deref(), Some("v2"));
    assert!(writes(&d).is_empty(), "{:?}", d.actions);
    let message = d.state.message.clone().unwrap_or_default();
    assert!(message.contains("that is the live colour"), "{message}");
    assert!(message.contains("every user to s, unjudged"), "{message}");
    // An operator's explicit `promote-full` is still obeyed.
    let mut o = obs(10, route(100, false));
    o.commands = cmds(&[Command::PromoteFull]);
    let d2 = step(&plan(), &d.state, &o);
    assert_eq!(d2.state.phase, Phase::Promoted);
}

#[test]
fn a_drifted_canary_is_judged_at_its_live_weight_and_a_fail_holds_per_on_failure() {
    let spec = spec_with(serde_json::json!({"onFailure": "hold"}));
    let plan = Plan::new(&spec).unwrap();
    let mut s = at_step(1, 0);
    s.consecutive_failures = 1;
    let d = step(&plan, &s, &obs(10, route(90, true)));
    assert_eq!(d.state.pause_reason, Some(PauseReason::Drift));
    assert_eq!(d.actions.last(), Some(&Action::QueryMetrics));
    let mut o = obs(10, route(90, true));
    o.analysis = Some(analysis(Sample::value(0.5), 900.0));
    let d2 = step(&plan, &d.state, &o);
    assert_eq!(d2.state.phase, Phase::Held);
    assert!(writes(&d2).is_empty(), "hold writes nothing");
    let again = step(&plan, &d2.state, &obs(20, route(90, true)));
    let again2 = step(&plan, &again.state, &obs(30, route(90, true)));
    assert_eq!(again2.state, again.state, "held after drift says so once");
}

#[test]
fn a_drifted_canary_at_zero_is_not_judged() {
    let d = step(&plan(), &at_step(1, 0), &obs(10, route(0, false)));
    assert_eq!(d.state.pause_reason, Some(PauseReason::Drift));
    assert!(!d.needs_input());
}

#[test]
fn a_manual_gate_at_zero_is_never_evaluated() {
    let spec = spec_with(serde_json::json!({"steps": [{"weight": 0, "pause": true}, 100]}));
    let plan = Plan::new(&spec).unwrap();
    let mut s = at_step(0, 0);
    s.canary_weight = 0;
    s.phase = Phase::Paused;
    s.pause_reason = Some(PauseReason::ManualGate);
    s.resume_phase = Some(Phase::Progressing);
    let d = step(&plan, &s, &obs(3600, route(0, true)));
    assert!(!d.needs_input());
    assert_eq!(d.state.phase, Phase::Paused);
    assert_eq!(d.state.pause_reason, Some(PauseReason::ManualGate));
    assert_eq!(d.state.last_evaluation_at, None, "nothing was judged");
    assert_eq!(d.state.consecutive_inconclusive, 0);
    assert_eq!(d.wake_at, None, "only `promote` moves a 0% gate");
}

#[test]
fn the_step_clock_starts_only_when_the_router_confirms() {
    let d = step(&plan(), &RolloutStatus::default(), &obs(0, route(0, false)));
    assert_eq!(d.state.step_started_at, None);
    assert!(d.state.target.is_some());
    // Not landed yet: the same write is asked for again, nothing else happens.
    let d2 = step(&plan(), &d.state, &obs(5, route(0, false)));
    assert_eq!(writes(&d2), vec![route(0, true)]);
    assert_eq!(d2.state.step_started_at, None);
    // Landed: the clock starts now and the checks are requested.
    let d3 = step(&plan(), &d.state, &obs(7, route(0, true)));
    assert_eq!(d3.state.step_started_at, Some(t(7)));
    assert!(d3.actions.contains(&Action::RunChecks));
}

#[test]
fn checks_pass_then_the_first_traffic_step_is_written() {
    let d = step(&plan(), &RolloutStatus::default(), &obs(0, route(0, true)));
    let mut o = obs(0, route(0, true));
    o.checks = Some(ChecksOutcome {
        results: vec![CheckResult {
            name: "ready".into(),
            passed: true,
            message: "200".into(),
        }],
    });
    let d = step(&plan(), &d.state, &o);
    assert!(d.state.checks_passed);
    assert_eq!(writes(&d), vec![route(30, true)]);
    assert_eq!(d.state.step, 1);
}

#[test]
fn failed_checks_roll_back_with_the_test_route_removed() {
    let spec = spec_with(
        serde_json::json!({"analysis": {"failureLimit": 0, "metrics": [ { "name": "error-rate", "query": "x", "max": 0.01 } ]}}),
    );
    let plan = Plan::new(&spec).unwrap();
    let d = step(&plan, &RolloutStatus::default(), &obs(0, route(0, true)));
    let mut o = obs(0, route(0, true));
    o.checks = Some(ChecksOutcome {
        results: vec![CheckResult {
            name: "ready".into(),
            passed: false,
            message: "503".into(),
        }],
    });
    let d = step(&plan, &d.state, &o);
    assert_eq!(d.state.phase, Phase::RollingBack);
    assert_eq!(writes(&d), vec![route(0, false)]);
}

#[test]
fn the_first_evaluation_waits_one_interval_after_confirmation() {
    let s = at_step(1, 100);
    let d = step(&plan(), &s, &obs(129, route(30, true)));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.wake_at, Some(t(130)));
    let d = step(&plan(), &s, &obs(130, route(30, true)));
    assert_eq!(d.actions, vec![Action::QueryMetrics]);
}

#[test]
fn a_pass_advances_only_after_the_hold() {
    let s = at_step(1, 0);
    let mut o = obs(30, route(30, true));
    o.analysis = Some(analysis(Sample::value(0.001), 500.0));
    let d = step(&plan(), &s, &o);
    assert_eq!(d.state.step, 1, "hold is 2m");
    assert!(writes(&d).is_empty());
    assert_eq!(
        d.wake_at,
        Some(t(60)),
        "the next evaluation comes before the hold ends"
    );
    let d2 = step(&plan(), &d.state, &obs(120, route(30, true)));
    assert_eq!(
        d2.actions,
        vec![Action::QueryMetrics],
        "an evaluation is due at 2m"
    );
    let mut o = obs(120, route(30, true));
    o.analysis = Some(analysis(Sample::value(0.001), 500.0));
    let d3 = step(&plan(), &d.state, &o);
    assert_eq!(d3.state.step, 2);
    assert_eq!(writes(&d3), vec![route(60, true)]);
}

#[test]
fn inconclusive_never_advances_and_pass_resets_the_counters() {
    let mut s = at_step(3, 0);
    s.canary_weight = 100;
    let mut o = obs(30, route(100, true));
    o.analysis = Some(analysis(Sample::NoData, 500.0));
    let d = step(&plan(), &s, &o);
    assert_eq!(d.state.phase, Phase::Progressing);
    assert_eq!(d.state.consecutive_inconclusive, 1);
    assert!(writes(&d).is_empty());
    let mut o = obs(60, route(100, true));
    o.analysis = Some(analysis(Sample::value(0.0), 500.0));
    let d = step(&plan(), &d.state, &o);
    assert_eq!(d.state.consecutive_inconclusive, 0);
    assert_eq!(
        writes(&d),
        vec![route(100, false)],
        "the last step passed: promote"
    );
}

#[test]
fn inconclusive_limit_rolls_back_by_default() {
    let s = at_step(1, 0);
    let mut state = s;
    for (i, secs) in [30, 60].into_iter().enumerate() {
        let mut o = obs(secs, route(30, true));
        o.analysis = Some(analysis(Sample::TimedOut, 500.0));
        let d = step(&plan(), &state, &o);
        state = d.state.clone();
        if i == 1 {
            assert_eq!(state.phase, Phase::RollingBack);
            assert_eq!(state.reason.as_deref(), Some(reasons::INCONCLUSIVE_LIMIT));
            assert_eq!(writes(&d), vec![route(0, false)]);
        }
    }
}

#[test]
fn failures_beyond_the_limit_roll_back_in_one_write_and_finish_on_confirmation() {
    let mut state = at_step(1, 0);
    let mut d = None;
    for secs in [30, 60] {
        let mut o = obs(secs, route(30, true));
        o.analysis = Some(analysis(Sample::value(0.05), 500.0));
        let decision = step(&plan(), &state, &o);
        state = decision.state.clone();
        d = Some(decision);
    }
    let d = d.unwrap();
    assert_eq!(writes(&d), vec![route(0, false)]);
    assert_eq!(d.state.phase, Phase::RollingBack);
    assert!(d
        .state
        .message
        .as_deref()
        .unwrap()
        .contains("0.05 > max 0.01"));
    let done = step(&plan(), &d.state, &obs(61, route(0, false)));
    assert_eq!(done.state.phase, Phase::RolledBack);
    assert!(done
        .transitions()
        .any(|t| t.kind == TransitionKind::RolledBack));
}

#[test]
fn hold_on_failure_freezes_the_weight() {
    let spec = spec_with(serde_json::json!({"onFailure": "hold"}));
    let plan = Plan::new(&spec).unwrap();
    let mut state = at_step(1, 0);
    for secs in [30, 60] {
        let mut o = obs(secs, route(30, true));
        o.analysis = Some(analysis(Sample::value(0.05), 500.0));
        state = step(&plan, &state, &o).state;
    }
    assert_eq!(state.phase, Phase::Held);
    assert_eq!(state.target, None);
    assert_eq!(state.canary_weight, 30);
}

#[test]
fn a_manual_gate_waits_for_promote_and_resume_does_not_skip_it() {
    let mut s = at_step(2, 0);
    s.canary_weight = 60;
    let mut o = obs(30, route(60, true));
    o.analysis = Some(analysis(Sample::value(0.001), 500.0));
    let d = step(&plan(), &s, &o);
    assert_eq!(d.state.phase, Phase::Paused);
    assert_eq!(d.state.pause_reason, Some(PauseReason::ManualGate));
    let mut o = obs(40, route(60, true));
    o.commands = cmds(&[Command::Resume]);
    let d2 = step(&plan(), &d.state, &o);
    assert_eq!(d2.state.phase, Phase::Paused);
    let mut o = obs(41, route(60, true));
    o.commands = cmds(&[Command::Promote]);
    let d3 = step(&plan(), &d.state, &o);
    assert_eq!(d3.state.step, 3);
    assert_eq!(writes(&d3), vec![route(100, true)]);
}

#[test]
fn a_regression_at_a_manual_gate_still_rolls_back() {
    let mut s = at_step(2, 0);
    s.phase = Phase::Paused;
    s.pause_reason = Some(PauseReason::ManualGate);
    s.last_evaluation_at = Some(t(30));
    s.consecutive_failures = 1;
    let mut o = obs(60, route(60, true));
    o.analysis = Some(analysis(Sample::value(0.5), 500.0));
    let d = step(&plan(), &s, &o);
    assert_eq!(d.state.phase, Phase::RollingBack);
}

#[test]
fn abort_puts_every_request_back_on_stable() {
    let mut o = obs(10, route(30, true));
    o.commands = cmds(&[Command::Abort]);
    let d = step(&plan(), &at_step(1, 0), &o);
    assert_eq!(d.state.phase, Phase::Aborted);
    assert_eq!(writes(&d), vec![route(0, false)]);
    let done = step(&plan(), &d.state, &obs(11, route(0, false)));
    assert!(done.state.is_settled());
}

#[test]
fn pause_and_resume() {
    let mut o = obs(10, route(30, true));
    o.commands = cmds(&[Command::Pause]);
    let d = step(&plan(), &at_step(1, 0), &o);
    assert_eq!(d.state.phase, Phase::Paused);
    assert_eq!(d.wake_at, None, "paused: only a command changes anything");
    let d2 = step(&plan(), &d.state, &obs(500, route(30, true)));
    assert_eq!(d2.state, d.state, "nothing happens while paused");
    let mut o = obs(501, route(30, true));
    o.commands = cmds(&[Command::Resume]);
    let d3 = step(&plan(), &d.state, &o);
    assert_eq!(d3.state.phase, Phase::Progressing);
    assert_eq!(d3.actions.last(), Some(&Action::QueryMetrics));
}

#[test]
fn promote_full_goes_straight_to_promoted() {
    let mut o = obs(10, route(30, true));
    o.commands = cmds(&[Command::PromoteFull]);
    let d = step(&plan(), &at_step(1, 0), &o);
    assert_eq!(writes(&d), vec![route(100, false)]);
    let done = step(&plan(), &d.state, &obs(11, route(100, false)));
    assert_eq!(done.state.phase, Phase::Promoted);
}

#[test]
fn a_write_that_landed_before_a_crash_is_adopted_not_called_drift() {
    let mut s = at_step(1, 0);
    s.step = 2;
    s.step_started_at = None;
    s.target = Some(RouteTarget {
        canary_weight: 60,
        test_route: true,
        purpose: TargetPurpose::Step,
    });
    let d = step(&plan(), &s, &obs(200, route(60, true)));
    assert!(writes(&d).is_empty());
    assert_eq!(d.state.canary_weight, 60);
    assert_eq!(d.state.step_started_at, Some(t(200)));
    assert_ne!(d.state.phase, Phase::Paused);
}

#[test]
fn drift_pauses_by_default_and_resume_writes_the_weights_back() {
    let d = step(&plan(), &at_step(1, 0), &obs(10, route(80, true)));
    assert_eq!(d.state.phase, Phase::Paused);
    assert_eq!(d.state.pause_reason, Some(PauseReason::Drift));
    assert!(writes(&d).is_empty());
    assert!(d.transitions().any(|t| t.kind == TransitionKind::Drift));
    let again = step(&plan(), &d.state, &obs(20, route(80, true)));
    assert_eq!(again.state, d.state, "drift is reported once");
    let mut o = obs(30, route(80, true));
    o.commands = cmds(&[Command::Resume]);
    let d2 = step(&plan(), &d.state, &o);
    assert_eq!(writes(&d2), vec![route(30, true)]);
}

#[test]
fn drift_with_reassert_writes_back() {
    let spec = spec_with(serde_json::json!({"onDrift": "reassert"}));
    let plan = Plan::new(&spec).unwrap();
    let d = step(&plan, &at_step(1, 0), &obs(10, route(80, true)));
    assert_eq!(writes(&d), vec![route(30, true)]);
    assert_eq!(d.state.phase, Phase::Progressing);
}

#[test]
fn an_unreadable_route_is_never_guessed() {
    let o = Observation::at(t(30), Err("connection refused".into()));
    let d = step(&plan(), &at_step(1, 0), &o);
    assert!(d.actions.is_empty());
    assert!(d.wake_at.is_some());
    assert_eq!(d.state, at_step(1, 0));
}

#[test]
fn a_closed_window_delays_the_start_and_freezes_advancement_but_not_rollback() {
    // Allowed only 09:00-10:00 UTC daily; t(0) is 10:00 UTC: closed.
    let spec = spec_with(serde_json::json!({
        "windows": [ { "kind": "allow", "schedule": "0 9 * * *", "duration": "1h" } ]
    }));
    let plan = Plan::new(&spec).unwrap();
    let d = step(&plan, &RolloutStatus::default(), &obs(0, route(0, false)));
    assert_eq!(d.state.phase, Phase::Waiting);
    assert!(writes(&d).is_empty());
    assert_eq!(d.wake_at, Some(t(23 * 3600)));
    // Progressing outside the window: a Pass does not advance ...
    let mut s = at_step(1, 0);
    s.step_started_at = Some(t(0));
    let mut o = obs(150, route(30, true));
    o.analysis = Some(analysis(Sample::value(0.001), 500.0));
    let d = step(&plan, &s, &o);
    assert_eq!(d.state.step, 1);
    assert!(writes(&d).is_empty());
    // ... but failures still roll back.
    let mut state = s;
    for secs in [30, 60] {
        let mut o = obs(secs, route(30, true));
        o.analysis = Some(analysis(Sample::value(0.5), 500.0));
        state = step(&plan, &state, &o).state;
    }
    assert_eq!(state.phase, Phase::RollingBack);
}

#[test]
fn conditions_move_their_transition_time_only_when_they_flip() {
    let mut state = at_step(1, 0);
    let mut o = obs(30, route(30, true));
    o.analysis = Some(analysis(Sample::value(0.001), 500.0));
    state = step(&plan(), &state, &o).state;
    let healthy = |s: &RolloutStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == reasons::HEALTHY)
            .cloned()
            .unwrap()
    };
    assert_eq!(healthy(&state).last_transition_time, t(30));
    let mut o = obs(60, route(30, true));
    o.analysis = Some(analysis(Sample::value(0.002), 500.0));
    state = step(&plan(), &state, &o).state;
    assert_eq!(healthy(&state).last_transition_time, t(30), "still True");
    let mut o = obs(90, route(30, true));
    o.analysis = Some(analysis(Sample::value(0.5), 500.0));
    state = step(&plan(), &state, &o).state;
    assert_eq!(healthy(&state).status, "False");
    assert_eq!(healthy(&state).last_transition_time, t(90));
}

#[test]
fn stepping_twice_with_the_same_observation_is_idempotent() {
    let s = at_step(1, 0);
    let o = obs(10, route(30, true));
    let d = step(&plan(), &s, &o);
    let d2 = step(&plan(), &d.state, &o);
    assert_eq!(d2.state, d.state);
}

#[test]
fn history_is_bounded_and_keeps_transitions_not_evaluations() {
    let mut state = at_step(1, 0);
    for i in 0..30 {
        let mut o = obs(i, route(30, true));
        o.commands = cmds(&[Command::Pause, Command::Resume]);
        state = step(&plan(), &state, &o).state;
    }
    assert_eq!(state.history.len(), crate::policy::status::HISTORY_LIMIT);
    let before = state.history.clone();
    let mut o = obs(100, route(30, true));
    o.analysis = Some(analysis(Sample::value(0.001), 500.0));
    let d = step(&plan(), &state, &o);
    assert_eq!(
        d.state.last_analysis.as_ref().map(|a| a.verdict),
        Some(crate::policy::status::VerdictKind::Pass)
    );
    assert_eq!(d.state.history, before, "an evaluation is not a transition");
}

#[test]
fn invalid_plans_are_refused() {
    for (patch, fragment) in [
        (serde_json::json!({"steps": []}), "empty"),
        (serde_json::json!({"steps": [0, 50]}), "ends at 100"),
        (serde_json::json!({"steps": [0, 60, 30, 100]}), "increase"),
        (
            serde_json::json!({"steps": [10, 100]}),
            "start the steps at 0",
        ),
    ] {
        let err = Plan::new(&spec_with(patch)).unwrap_err();
        assert!(err.to_string().contains(fragment), "{err}");
    }
}

#[test]
fn commands_parse_from_words() {
    assert_eq!("promote".parse::<Command>(), Ok(Command::Promote));
    assert_eq!("promote-full".parse::<Command>(), Ok(Command::PromoteFull));
    assert_eq!("promoteFull".parse::<Command>(), Ok(Command::PromoteFull));
    assert!("launch".parse::<Command>().is_err());
}

#[test]
fn an_inconclusive_pause_at_a_gate_resumes_to_progressing() {
    let spec = spec_with(serde_json::json!({"analysis": {
        "interval": "30s", "inconclusiveLimit": 0, "onInconclusive": "pause",
        "metrics": [ { "name": "error-rate", "query": "x", "max": 0.01 } ]
    }}));
    let plan = Plan::new(&spec).unwrap();
    let mut s = at_step(2, 0);
    s.phase = Phase::Paused;
    s.pause_reason = Some(PauseReason::ManualGate);
    s.resume_phase = Some(Phase::Progressing);
    let mut o = obs(30, route(60, true));
    o.analysis = Some(analysis(Sample::NoData, 500.0));
    let d = step(&plan, &s, &o);
    assert_eq!(d.state.pause_reason, Some(PauseReason::Inconclusive));
    let mut o = obs(40, route(60, true));
    o.commands = cmds(&[Command::Resume]);
    let d = step(&plan, &d.state, &o);
    assert_eq!(d.state.phase, Phase::Progressing);
    assert_eq!(d.state.pause_reason, None);
}
