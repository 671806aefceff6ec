//! The hook gates and the informational hooks in the pure engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::TimeZone;

use super::*;
use crate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use crate::engine::{step, Command, Observation, OperatorCommand, Plan};
use crate::policy::status::Phase;
use crate::policy::{RolloutSpec, RolloutStatus};
use crate::router::ManagedRoute;

fn spec(on_failure: &str) -> RolloutSpec {
    serde_json::from_value(serde_json::json!({
      "revision": "v2",
      "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
      "steps": [0, 50, 100],
      "onFailure": on_failure,
      "analysis": { "interval": "30s", "minRequests": 10,
        "metrics": [ { "name": "error-rate", "query": "x", "max": 0.01 } ] },
      "hooks": [ { "name": "gate", "url": "http://h/",
        "on": ["preRollout", "step", "confirmPromotion", "postRollout", "rollback"] } ]
    }))
    .unwrap()
}

fn t(secs: i64) -> Timestamp {
    chrono::Utc.timestamp_opt(1_767_607_200 + secs, 0).unwrap()
}

fn route(w: u8) -> ManagedRoute {
    ManagedRoute {
        canary_weight: w,
        test_route: false,
    }
}

fn answer(phase: HookPhase, passed: bool) -> HookOutcome {
    HookOutcome {
        phase,
        results: vec![HookResult {
            hook: "gate".into(),
            phase,
            passed,
            status: Some(if passed { 200 } else { 503 }),
            attempts: 1,
            message: if passed { "200" } else { "503" }.into(),
            step: 0,
            at: t(0),
        }],
    }
}

fn asked(d: &crate::engine::Decision) -> Vec<HookPhase> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::CallHooks(call) => Some(call.phase),
            _ => None,
        })
        .collect()
}

fn passing_analysis() -> AnalysisInput {
    AnalysisInput {
        at: t(0),
        canary_requests: Sample::value(1000.0),
        metrics: vec![MetricObservation {
            name: "error-rate".into(),
            canary: Sample::value(0.0),
            stable: None,
        }],
    }
}

/// At the last step (100%), judged and passed: the next move is the promotion.
fn at_last_step() -> RolloutStatus {
    RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Progressing,
        step: 2,
        canary_weight: 100,
        started_at: Some(t(0)),
        step_started_at: Some(t(0)),
        ..RolloutStatus::default()
    }
}

#[test]
fn pre_rollout_is_asked_before_the_first_write_and_its_failure_follows_on_failure() {
    let plan = Plan::new(&spec("rollback")).unwrap();
    let mut obs = Observation::at(t(0), Ok(route(0)));
    let d = step(&plan, &RolloutStatus::default(), &obs);
    assert_eq!(asked(&d), [HookPhase::PreRollout]);
    assert!(d.needs_input());
    assert!(
        d.route_write().is_none(),
        "nothing is written before the gate"
    );

    obs.hooks = vec![answer(HookPhase::PreRollout, false)];
    let d = step(&plan, &RolloutStatus::default(), &obs);
    // Nothing had moved: the rollback is confirmed at once, then its hook is asked.
    assert_eq!(d.state.phase, Phase::RolledBack);
    assert!(d
        .transitions()
        .any(|t| t.reason == HOOK_FAILED && t.message.contains("preRollout hook failed")));
    assert_eq!(asked(&d), [HookPhase::Rollback]);
    assert_eq!(d.state.last_hooks.len(), 1);

    let held = Plan::new(&spec("hold")).unwrap();
    let d = step(&held, &RolloutStatus::default(), &obs);
    assert_eq!(d.state.phase, Phase::Held);
    assert!(d.route_write().is_none());
}

#[test]
fn a_failing_step_hook_rolls_back_instead_of_moving() {
    let plan = Plan::new(&spec("rollback")).unwrap();
    let state = RolloutStatus {
        step: 1,
        canary_weight: 50,
        ..at_last_step()
    };
    let mut obs = Observation::at(t(30), Ok(route(50)));
    obs.analysis = Some(passing_analysis());
    let d = step(&plan, &state, &obs);
    assert_eq!(asked(&d), [HookPhase::Step]);
    let call = match &d.actions.last().unwrap() {
        Action::CallHooks(call) => call.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(call.next_weights.map(|w| w.canary), Some(100));
    assert_eq!(call.step, 2);

    obs.hooks = vec![answer(HookPhase::Step, false)];
    let d = step(&plan, &state, &obs);
    assert_eq!(d.state.phase, Phase::RollingBack);
    assert_eq!(d.route_write(), Some(route(0)));
}

#[test]
fn a_refused_confirm_promotion_holds_at_the_last_step_and_promote_skips_it() {
    let plan = Plan::new(&spec("rollback")).unwrap();
    let mut obs = Observation::at(t(30), Ok(route(100)));
    obs.analysis = Some(passing_analysis());
    let mut step_passed = answer(HookPhase::Step, true);
    step_passed.results[0].step = 2;
    obs.hooks = vec![step_passed, answer(HookPhase::ConfirmPromotion, false)];
    let d = step(&plan, &at_last_step(), &obs);
    assert_eq!(d.state.phase, Phase::Progressing);
    assert_eq!(d.state.reason.as_deref(), Some(PROMOTION_NOT_CONFIRMED));
    assert!(d.route_write().is_none(), "{:?}", d.actions);
    assert_eq!(d.wake_at, Some(t(60)), "asked again at the next evaluation");

    // Asked again later: the step it follows is not asked twice.
    let mut later = Observation::at(t(60), Ok(route(100)));
    later.analysis = Some(passing_analysis());
    let again = step(&plan, &d.state, &later);
    assert_eq!(asked(&again), [HookPhase::ConfirmPromotion]);

    let mut promote = Observation::at(t(40), Ok(route(100)));
    promote.commands = vec![OperatorCommand::new("1", Command::Promote, "v2")];
    let d = step(&plan, &d.state, &promote);
    // No confirmPromotion asked: the promotion is written (and, the route being at
    // 100% already, confirmed), then only postRollout is asked.
    assert_eq!(asked(&d), [HookPhase::PostRollout], "{:?}", d.actions);
    assert_eq!(d.state.phase, Phase::Promoted);
}

#[test]
fn the_rollback_hook_is_asked_only_once_the_rollback_write_is_confirmed() {
    let plan = Plan::new(&spec("rollback")).unwrap();
    let state = RolloutStatus {
        step: 1,
        canary_weight: 50,
        ..at_last_step()
    };
    let mut obs = Observation::at(t(30), Ok(route(50)));
    obs.analysis = Some(AnalysisInput {
        metrics: vec![MetricObservation {
            name: "error-rate".into(),
            canary: Sample::value(0.5),
            stable: None,
        }],
        ..passing_analysis()
    });
    let d = step(&plan, &state, &obs);
    assert_eq!(d.route_write(), Some(route(0)));
    assert!(
        asked(&d).is_empty(),
        "not before the write: {:?}",
        d.actions
    );

    let confirmed = step(&plan, &d.state, &Observation::at(t(31), Ok(route(0))));
    assert_eq!(confirmed.state.phase, Phase::RolledBack);
    assert_eq!(asked(&confirmed), [HookPhase::Rollback]);
    assert!(!confirmed.needs_input(), "nothing waits for it");

    // Its answer, reported by the shell at a later tick, lands in the status.
    let mut report = Observation::at(t(40), Ok(route(0)));
    report.hooks = vec![answer(HookPhase::Rollback, false)];
    let recorded = step(&plan, &confirmed.state, &report);
    assert_eq!(recorded.state.last_hooks.len(), 1);
    assert!(asked(&recorded).is_empty());
}

#[test]
fn the_body_documented_in_docs_hooks_md_is_what_is_sent() {
    let docs = include_str!("../../docs/hooks.md");
    let start = docs.find("```json\n").expect("a json example") + "```json\n".len();
    let end = start + docs[start..].find("```").expect("its end");
    let example: serde_json::Value = serde_json::from_str(&docs[start..end]).unwrap();
    let body: HookBody = serde_json::from_value(example.clone()).unwrap();
    // Every documented field is read, and what is sent has exactly those fields.
    assert_eq!(serde_json::to_value(&body).unwrap(), example);
    for field in example.as_object().unwrap().keys() {
        assert!(
            docs.contains(&format!("`{field}`")),
            "{field} is not in the field table"
        );
    }
}
