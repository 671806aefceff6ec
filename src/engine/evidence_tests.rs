//! The sequential judges inside the engine: Fail, Pass, undecided and inconclusive
//! evaluations, restarts between evaluations, and evidence across steps and revisions.
//! Counts are drawn from a seeded RNG (binomial errors), so every run is the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::TimeZone;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::analysis::sample::{AnalysisInput, Measured, MetricObservation, Sample};
use crate::policy::status::{JudgeState, Phase};
use crate::policy::{RolloutSpec, RolloutStatus, Timestamp};
use crate::router::ManagedRoute;

fn spec(analysis_patch: serde_json::Value) -> RolloutSpec {
    let mut value = serde_json::json!({
      "revision": "v2",
      "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
      "steps": [{"weight": 10, "hold": "5m"}, {"weight": 50, "hold": "5m"}, 100],
      "analysis": {
        "interval": "30s", "minRequests": 500, "failureLimit": 3, "inconclusiveLimit": 2,
        "metrics": [ { "name": "errors", "template": "istio-error-rate", "compare": {} } ]
      }
    });
    if let serde_json::Value::Object(patch) = analysis_patch {
        for (k, v) in patch {
            value["analysis"][k] = v;
        }
    }
    serde_json::from_value(value).unwrap()
}

fn t(secs: i64) -> Timestamp {
    chrono::Utc.timestamp_opt(1_767_607_200 + secs, 0).unwrap()
}

/// Step `index` confirmed at time 0.
fn at_step(plan: &Plan, index: u32) -> RolloutStatus {
    RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Progressing,
        step: index,
        canary_weight: plan.step(index).weight,
        started_at: Some(t(0)),
        step_started_at: Some(t(0)),
        ..RolloutStatus::default()
    }
}

fn side(requests: f64, errors: f64) -> Sample {
    Sample::Value(Measured {
        value: errors / requests,
        requests: Some(requests),
        errors: Some(errors),
        ..Measured::default()
    })
}

/// One interval's counts: binomial errors at the given rates.
fn drawn(rng: &mut StdRng, at: i64, canary: (f64, f64), stable: (f64, f64)) -> AnalysisInput {
    let mut errors = |(n, p): (f64, f64)| (0..n as u64).filter(|_| rng.random_bool(p)).count();
    let (c, s) = (errors(canary) as f64, errors(stable) as f64);
    input(at, side(canary.0, c), side(stable.0, s))
}

fn input(at: i64, canary: Sample, stable: Sample) -> AnalysisInput {
    AnalysisInput {
        at: t(at),
        canary_requests: Sample::value(0.0),
        metrics: vec![MetricObservation {
            name: "errors".into(),
            canary,
            stable: Some(stable),
        }],
    }
}

/// Steps at `at` with `input` when the engine asks for metrics.
fn evaluate(plan: &Plan, state: &RolloutStatus, at: i64, input: AnalysisInput) -> Decision {
    let live = Ok(ManagedRoute {
        canary_weight: state.canary_weight,
        test_route: false,
    });
    let mut obs = Observation::at(t(at), live);
    let first = step(plan, state, &obs);
    assert!(first.actions.contains(&Action::QueryMetrics), "{first:?}");
    obs.analysis = Some(input);
    step(plan, state, &obs)
}

fn canary_trials(state: &RolloutStatus) -> f64 {
    match &state.evidence.as_ref().unwrap().metrics[0].state {
        JudgeState::ErrorRate(e) => e.canary_trials,
        other => panic!("an error metric: {other:?}"),
    }
}

#[test]
fn a_sequential_fail_rolls_back_at_once_whatever_the_failure_limit() {
    let plan = Plan::new(&spec(serde_json::json!({}))).unwrap();
    let mut state = at_step(&plan, 0);
    let mut rng = StdRng::seed_from_u64(1);
    for i in 1..=20 {
        let d = evaluate(
            &plan,
            &state,
            30 * i,
            drawn(&mut rng, 30 * i, (300.0, 0.02), (2700.0, 0.005)),
        );
        state = d.state;
        if state.phase == Phase::RollingBack {
            let message = state.message.clone().unwrap_or_default();
            assert!(message.contains("needed to roll back"), "{message}");
            assert_eq!(state.consecutive_failures, 1, "failureLimit 3 did not wait");
            let metric = &state.last_analysis.as_ref().unwrap().metrics[0];
            assert_eq!(metric.evidence, Some(1.0), "{metric:?}");
            return;
        }
    }
    panic!(
        "a 4× error rate was never rolled back: {:?}",
        state.last_analysis
    );
}

#[test]
fn undecided_evidence_gathers_then_lets_the_step_pass_with_enough_requests() {
    let plan = Plan::new(&spec(serde_json::json!({}))).unwrap();
    let mut state = at_step(&plan, 0);
    let mut rng = StdRng::seed_from_u64(2);
    // 100 canary requests per interval: 5 intervals to reach minRequests 500.
    for i in 1..=4 {
        let d = evaluate(
            &plan,
            &state,
            30 * i,
            drawn(&mut rng, 30 * i, (100.0, 0.005), (900.0, 0.005)),
        );
        state = d.state;
        let a = state.last_analysis.as_ref().unwrap();
        assert_eq!(
            a.verdict,
            crate::policy::status::VerdictKind::Inconclusive,
            "{a:?}"
        );
        assert_eq!(
            state.consecutive_inconclusive, 0,
            "gathering is not an outage"
        );
        let share = a.metrics[0].evidence.unwrap();
        assert!((0.0..1.0).contains(&share), "{share}");
        assert_eq!(state.phase, Phase::Progressing);
    }
    let d = evaluate(
        &plan,
        &state,
        150,
        drawn(&mut rng, 150, (100.0, 0.005), (900.0, 0.005)),
    );
    state = d.state;
    let a = state.last_analysis.as_ref().unwrap();
    assert_eq!(a.verdict, crate::policy::status::VerdictKind::Pass, "{a:?}");
    assert!(
        a.message.starts_with("no regression shown so far"),
        "{}",
        a.message
    );
    assert_eq!(canary_trials(&state), 500.0);
}

#[test]
fn outages_and_nan_are_inconclusive_and_leave_the_evidence_and_its_instant() {
    let plan = Plan::new(&spec(serde_json::json!({}))).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let state = evaluate(
        &plan,
        &at_step(&plan, 0),
        30,
        drawn(&mut rng, 30, (100.0, 0.005), (900.0, 0.005)),
    )
    .state;
    let before = state.evidence.clone().unwrap();
    assert_eq!(before.counted_until, t(30));
    for outage in [
        Sample::Unreachable {
            message: "refused".into(),
        },
        Sample::TimedOut,
        Sample::NotANumber,
        Sample::NoData,
    ] {
        let d = evaluate(
            &plan,
            &state,
            60,
            input(60, outage.clone(), side(900.0, 4.0)),
        );
        assert_eq!(d.state.evidence.as_ref(), Some(&before), "{outage:?}");
        assert_eq!(d.state.consecutive_inconclusive, 1, "{outage:?}");
        // The next evaluation counts from the last instant that was counted.
        assert_eq!(counts_since(&plan, &d.state), Some(t(30)));
    }
}

#[test]
fn a_restart_between_evaluations_neither_loses_nor_repeats_evidence() {
    let plan = Plan::new(&spec(serde_json::json!({}))).unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    let inputs: Vec<AnalysisInput> = (1..=6)
        .map(|i| drawn(&mut rng, 30 * i, (100.0, 0.01), (900.0, 0.005)))
        .collect();
    let run = |restart_after: Option<usize>| {
        let mut state = at_step(&plan, 0);
        for (i, input) in inputs.iter().enumerate() {
            assert_eq!(
                counts_since(&plan, &state),
                Some(if i == 0 { t(0) } else { inputs[i - 1].at })
            );
            state = evaluate(&plan, &state, 30 * (i as i64 + 1), input.clone()).state;
            if restart_after == Some(i) {
                // kill -9: only what was stored survives, and is read back.
                let stored = serde_json::to_string(&state).unwrap();
                state = serde_json::from_str(&stored).unwrap();
            }
        }
        state
    };
    let straight = run(None);
    let restarted = run(Some(2));
    assert_eq!(canary_trials(&straight), 600.0);
    assert_eq!(canary_trials(&restarted), 600.0);
    let ln = |s: &RolloutStatus| match &s.evidence.as_ref().unwrap().metrics[0].state {
        JudgeState::ErrorRate(e) => e.log_evidence_worse(),
        _ => f64::NAN,
    };
    assert!((ln(&straight) - ln(&restarted)).abs() < 1e-9);
}

#[test]
fn evidence_carries_across_steps_and_a_new_revision_starts_afresh() {
    let plan = Plan::new(&spec(serde_json::json!({ "minRequests": 100 }))).unwrap();
    let mut state = at_step(&plan, 0);
    let mut rng = StdRng::seed_from_u64(5);
    let mut at = 0;
    while state.step == 0 {
        at += 30;
        state = evaluate(
            &plan,
            &state,
            at,
            drawn(&mut rng, at, (100.0, 0.005), (900.0, 0.005)),
        )
        .state;
        if let Some(target) = state.target {
            // The router confirms the next step's weight at once.
            let live = Ok(ManagedRoute {
                canary_weight: target.canary_weight,
                test_route: target.test_route,
            });
            state = step(&plan, &state, &Observation::at(t(at), live)).state;
        }
        assert!(at < 3600, "step 1 never passed: {:?}", state.last_analysis);
    }
    let counted = canary_trials(&state);
    assert!(counted >= 1000.0, "the hold is 5m: {counted}");
    let d = evaluate(
        &plan,
        &state,
        at + 30,
        drawn(&mut rng, at + 30, (500.0, 0.005), (500.0, 0.005)),
    );
    assert_eq!(canary_trials(&d.state), counted + 500.0);

    let next = Plan::new(&RolloutSpec {
        revision: "v3".into(),
        ..spec(serde_json::json!({}))
    })
    .unwrap();
    let live = Ok(ManagedRoute {
        canary_weight: d.state.canary_weight,
        test_route: false,
    });
    let fresh = step(&next, &d.state, &Observation::at(t(at + 60), live)).state;
    assert_eq!(fresh.evidence, None);
}

#[test]
fn shown_no_worse_advances_before_the_hold_only_when_allowed() {
    for advance_early in [false, true] {
        let patch = serde_json::json!({
            "advanceEarly": advance_early,
            "metrics": [ { "name": "errors", "template": "istio-error-rate", "compare": {},
                           "judge": { "sequential": { "tolerance": 1.0 } } } ]
        });
        let plan = Plan::new(&spec(patch)).unwrap();
        let mut state = at_step(&plan, 0);
        let mut rng = StdRng::seed_from_u64(6);
        // Up to 4.5 minutes into a 5-minute hold.
        for i in 1..=9 {
            state = evaluate(
                &plan,
                &state,
                30 * i,
                drawn(&mut rng, 30 * i, (2000.0, 0.01), (2000.0, 0.01)),
            )
            .state;
            if state.step == 1 {
                break;
            }
        }
        let a = state.last_analysis.as_ref().unwrap();
        assert!(a.message.contains("no worse than 2.0×"), "{}", a.message);
        assert_eq!(
            state.step == 1,
            advance_early,
            "advanceEarly {advance_early}"
        );
    }
}

#[test]
fn mann_whitney_series_alone_keep_the_sequential_range_start() {
    use crate::analysis::mann_whitney_run::MannWhitneySeries;
    use crate::policy::status::{EvidenceStatus, MetricEvidence};
    let only_series = EvidenceStatus {
        counted_until: t(90),
        metrics: vec![MetricEvidence {
            name: "p50".into(),
            state: JudgeState::MannWhitney(MannWhitneySeries::default().pushed(1.0, 1.0)),
        }],
    };
    let kept = evidence::kept(Some(only_series.clone()), Some(t(0))).unwrap();
    assert_eq!(
        kept.counted_until,
        t(0),
        "the error counts still start at 0"
    );
    assert_eq!(kept.metrics, only_series.metrics);
    // Without sequential metrics there is no range: the instant stays.
    assert_eq!(
        evidence::kept(Some(only_series.clone()), None),
        Some(only_series)
    );
}
