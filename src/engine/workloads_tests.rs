//! The workloads' decisions with a fixed clock: no weight before the canary Deployment
//! is available, a missed progress deadline follows `onFailure`, the scale-down never
//! before its delay, and an undo that gets the replicas back before its route write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::TimeZone;

use super::workloads::{
    availability, on_undo, Availability, DeploymentState, WorkloadsObservation,
    CANARY_DEPLOYMENT_FAILED, SCALED_DOWN, WAITING_FOR_CANARY,
};
use super::*;
use crate::policy::status::Phase;
use crate::policy::workloads::{ScaledDown, WorkloadsStatus};
use crate::policy::{RolloutSpec, RolloutStatus, Timestamp};
use crate::router::ManagedRoute;

fn spec() -> RolloutSpec {
    serde_json::from_value(serde_json::json!({
        "revision": "v2",
        "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
        "steps": [0, 50, 100],
        "analysis": { "interval": "30s", "metrics": [ { "name": "e", "query": "x", "max": 0.01 } ] },
        "workloads": { "stable": "web-blue", "canary": "web-green", "scaleDown": { "after": "10m" } }
    }))
    .unwrap()
}

fn plan() -> Plan {
    Plan::new(&spec()).unwrap()
}

pub(super) fn t(secs: i64) -> Timestamp {
    chrono::Utc.timestamp_opt(1_767_607_200 + secs, 0).unwrap()
}

pub(super) fn route(w: u8) -> ManagedRoute {
    ManagedRoute {
        canary_weight: w,
        test_route: false,
    }
}

pub(super) fn deployment(name: &str, replicas: i32, available: i32) -> DeploymentState {
    DeploymentState {
        name: name.into(),
        generation: 2,
        observed_generation: 2,
        replicas,
        status_replicas: available,
        updated_replicas: available,
        available_replicas: available,
        deadline_exceeded: None,
        images: vec!["web:2".into()],
        revision: Some("web:2@0000000000000002".into()),
    }
}

fn observe(secs: i64, live: u8, stable: DeploymentState, canary: DeploymentState) -> Observation {
    Observation {
        workloads: Some(WorkloadsObservation {
            stable: Ok(stable),
            canary: Ok(canary),
        }),
        ..Observation::at(t(secs), Ok(route(live)))
    }
}

pub(super) fn scales(d: &Decision) -> Vec<(String, i32)> {
    d.workload_scales()
}

#[test]
fn availability_is_the_rollout_status_test() {
    assert_eq!(
        availability(&deployment("c", 3, 3)),
        Availability::Available
    );
    let mut d = deployment("c", 3, 3);
    d.observed_generation = 1;
    assert!(matches!(availability(&d), Availability::Waiting(_)));
    let d = deployment("c", 3, 2);
    assert!(matches!(availability(&d), Availability::Waiting(w) if w.contains("2 of 3")));
    let mut d = deployment("c", 3, 3);
    d.status_replicas = 4;
    assert!(matches!(availability(&d), Availability::Waiting(w) if w.contains("old replicas")));
    let d = deployment("c", 0, 0);
    assert!(matches!(availability(&d), Availability::Waiting(w) if w.contains("0 replicas")));
    let mut d = deployment("c", 3, 1);
    d.deadline_exceeded = Some("ReplicaSet \"c-1\" has timed out progressing.".into());
    assert!(
        matches!(availability(&d), Availability::Failed(m) if m.contains("has timed out progressing"))
    );
}

#[test]
fn no_weight_is_written_until_the_canary_deployment_is_available() {
    let p = plan();
    let mut state = RolloutStatus::default();
    for (secs, available) in [(0, 0), (5, 1), (10, 2)] {
        let d = step(
            &p,
            &state,
            &observe(
                secs,
                0,
                deployment("web-blue", 3, 3),
                deployment("web-green", 3, available),
            ),
        );
        assert_eq!(d.route_write(), None, "a write at {available}/3 available");
        assert_eq!(d.state.phase, Phase::Waiting);
        assert_eq!(d.state.reason.as_deref(), Some(WAITING_FOR_CANARY));
        assert!(
            d.state
                .message
                .as_deref()
                .unwrap()
                .contains(&format!("{available} of 3")),
            "{:?}",
            d.state.message
        );
        assert!(d.wake_at.is_some());
        state = d.state;
    }
    let d = step(
        &p,
        &state,
        &observe(
            15,
            0,
            deployment("web-blue", 3, 3),
            deployment("web-green", 3, 3),
        ),
    );
    // Step 0 is already live, so the rollout goes on to the first weight at once.
    assert_eq!(d.route_write(), Some(route(50)));
    assert_eq!(d.state.phase, Phase::Progressing);
    assert_eq!(
        d.state.workloads.as_ref().unwrap().canary_images.as_deref(),
        Some("web:2")
    );
}

#[test]
fn an_unread_canary_deployment_is_waited_for_not_guessed() {
    let obs = Observation {
        workloads: Some(WorkloadsObservation {
            stable: Ok(deployment("web-blue", 3, 3)),
            canary: Err("deployments.apps \"web-green\" not found".into()),
        }),
        ..Observation::at(t(0), Ok(route(0)))
    };
    let d = step(&plan(), &RolloutStatus::default(), &obs);
    assert_eq!(d.route_write(), None);
    assert!(d.state.message.unwrap().contains("not found"));
}

#[test]
fn a_missed_progress_deadline_follows_on_failure() {
    let mut canary = deployment("web-green", 3, 1);
    canary.deadline_exceeded = Some("ReplicaSet \"web-green-7\" has timed out progressing.".into());
    let d = step(
        &plan(),
        &RolloutStatus::default(),
        &observe(0, 0, deployment("web-blue", 3, 3), canary),
    );
    assert_eq!(d.state.phase, Phase::RolledBack);
    assert_eq!(
        d.state
            .history
            .iter()
            .filter(|h| h.reason == CANARY_DEPLOYMENT_FAILED)
            .count(),
        1
    );
    assert!(d
        .transitions()
        .any(|t| t.message.contains("has timed out progressing")));
}

fn promoted() -> RolloutStatus {
    RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Promoted,
        step: 2,
        canary_weight: 100,
        ..RolloutStatus::default()
    }
}

#[test]
fn scale_down_never_runs_before_its_delay() {
    let p = plan();
    let obs_at = |secs| {
        observe(
            secs,
            100,
            deployment("web-blue", 4, 4),
            deployment("web-green", 3, 3),
        )
    };
    let first = step(&p, &promoted(), &obs_at(0));
    assert!(scales(&first).is_empty());
    let status = first.state.workloads.clone().unwrap();
    assert_eq!(first.state.promoted_at, Some(t(0)));
    assert_eq!(status.scale_down_at, Some(t(600)));
    assert_eq!(first.wake_at, Some(t(600)));
    let mut state = first.state;
    for secs in [1, 300, 599] {
        let d = step(&p, &state, &obs_at(secs));
        assert!(scales(&d).is_empty(), "scaled down at {secs}s of 600s");
        assert_eq!(d.wake_at, Some(t(600)));
        state = d.state;
    }
    let due = step(&p, &state, &obs_at(600));
    assert_eq!(scales(&due), [("web-blue".to_owned(), 0)]);
    assert_eq!(due.state.reason.as_deref(), Some(SCALED_DOWN));
    let stored = due
        .state
        .workloads
        .as_ref()
        .unwrap()
        .scaled_down
        .clone()
        .unwrap();
    assert_eq!(
        (
            stored.deployment.as_str(),
            stored.replicas,
            stored.confirmed
        ),
        ("web-blue", 4, false)
    );
    // Seen at 0: confirmed, nothing more sent, and a later scale-up is not fought.
    let seen = step(
        &p,
        &due.state,
        &observe(
            605,
            100,
            deployment("web-blue", 0, 0),
            deployment("web-green", 3, 3),
        ),
    );
    assert!(scales(&seen).is_empty());
    assert!(
        seen.state
            .workloads
            .as_ref()
            .unwrap()
            .scaled_down
            .as_ref()
            .unwrap()
            .confirmed
    );
    let later = step(&p, &seen.state, &obs_at(900));
    assert!(scales(&later).is_empty());
}

#[test]
fn scale_down_is_sent_again_until_it_lands() {
    let p = plan();
    let mut state = promoted();
    state.promoted_at = Some(t(0));
    state.workloads = Some(Box::new(WorkloadsStatus {
        scaled_down: Some(ScaledDown {
            deployment: "web-blue".into(),
            replicas: 4,
            at: t(600),
            confirmed: false,
        }),
        ..WorkloadsStatus::default()
    }));
    let d = step(
        &p,
        &state,
        &observe(
            610,
            100,
            deployment("web-blue", 4, 4),
            deployment("web-green", 3, 3),
        ),
    );
    assert_eq!(scales(&d), [("web-blue".to_owned(), 0)]);
}

#[test]
fn scale_down_waits_while_the_live_route_still_sends_users_to_stable() {
    let p = plan();
    let mut state = promoted();
    state.promoted_at = Some(t(0));
    state.workloads = Some(Box::new(WorkloadsStatus {
        ..WorkloadsStatus::default()
    }));
    let d = step(
        &p,
        &state,
        &observe(
            700,
            0,
            deployment("web-blue", 4, 4),
            deployment("web-green", 3, 3),
        ),
    );
    assert!(scales(&d).is_empty());
}

#[test]
fn undo_restores_the_replicas_and_waits_until_they_are_available() {
    let p = plan();
    let mut state = promoted();
    state.promoted_at = Some(t(0));
    state.workloads = Some(Box::new(WorkloadsStatus {
        scaled_down: Some(ScaledDown {
            deployment: "web-blue".into(),
            replicas: 4,
            at: t(600),
            confirmed: true,
        }),
        ..WorkloadsStatus::default()
    }));
    let green = || deployment("web-green", 3, 3);
    let (next, actions, ready) = on_undo(
        &p,
        &state,
        &observe(900, 100, deployment("web-blue", 0, 0), green()),
    );
    assert!(!ready);
    assert_eq!(
        actions,
        [Action::ScaleWorkload {
            deployment: "web-blue".into(),
            replicas: 4
        }]
    );
    let (next, actions, ready) = on_undo(
        &p,
        &next,
        &observe(905, 100, deployment("web-blue", 4, 2), green()),
    );
    assert!(!ready);
    assert!(actions
        .iter()
        .all(|a| !matches!(a, Action::ScaleWorkload { .. })));
    assert!(next.message.as_deref().unwrap().contains("2 of 4"));
    let (next, _, ready) = on_undo(
        &p,
        &next,
        &observe(910, 100, deployment("web-blue", 4, 4), green()),
    );
    assert!(ready);
    assert_eq!(next.workloads.unwrap().scaled_down, None);
}

#[test]
fn undo_without_a_scale_down_is_ready_at_once() {
    let (_, actions, ready) = on_undo(
        &plan(),
        &promoted(),
        &observe(
            10,
            100,
            deployment("web-blue", 4, 4),
            deployment("web-green", 3, 3),
        ),
    );
    assert!(ready);
    assert!(actions.is_empty());
}

#[test]
fn an_undo_after_the_scale_down_writes_the_route_only_once_the_stable_is_back() {
    let p = plan();
    let mut state = promoted();
    state.promoted_at = Some(t(0));
    state.workloads = Some(Box::new(WorkloadsStatus {
        scaled_down: Some(ScaledDown {
            deployment: "web-blue".into(),
            replicas: 4,
            at: t(600),
            confirmed: true,
        }),
        ..WorkloadsStatus::default()
    }));
    let green = || deployment("web-green", 3, 3);
    let undo = Observation {
        commands: vec![OperatorCommand::new("1", Command::Undo, "v2")],
        ..observe(900, 100, deployment("web-blue", 0, 0), green())
    };
    let asked = step(&p, &state, &undo);
    assert_eq!(
        asked.route_write(),
        None,
        "the route moved before the stable was back"
    );
    assert_eq!(scales(&asked), [("web-blue".to_owned(), 4)]);
    assert_eq!(asked.state.phase, Phase::RollingBack);

    let scaling = step(
        &p,
        &asked.state,
        &observe(905, 100, deployment("web-blue", 4, 1), green()),
    );
    assert_eq!(scaling.route_write(), None);
    assert!(
        scales(&scaling).is_empty(),
        "the scale-up is sent once it shows"
    );
    assert!(scaling.state.message.as_deref().unwrap().contains("1 of 4"));

    let back = step(
        &p,
        &scaling.state,
        &observe(910, 100, deployment("web-blue", 4, 4), green()),
    );
    assert_eq!(back.route_write(), Some(route(0)));
    assert_eq!(back.state.workloads.as_ref().unwrap().scaled_down, None);

    let done = step(
        &p,
        &back.state,
        &observe(911, 0, deployment("web-blue", 4, 4), green()),
    );
    assert_eq!(done.state.phase, Phase::RolledBack);
    assert!(scales(&done).is_empty());
}

#[test]
fn an_undo_within_the_delay_is_one_route_write_and_cancels_the_scale_down() {
    let p = plan();
    let blue = || deployment("web-blue", 4, 4);
    let green = || deployment("web-green", 3, 3);
    let promoted = step(&p, &promoted(), &observe(0, 100, blue(), green())).state;
    let undo = Observation {
        commands: vec![OperatorCommand::new("1", Command::Undo, "v2")],
        ..observe(60, 100, blue(), green())
    };
    let asked = step(&p, &promoted, &undo);
    assert_eq!(asked.route_write(), Some(route(0)));
    assert!(scales(&asked).is_empty());
    let done = step(&p, &asked.state, &observe(61, 0, blue(), green()));
    assert_eq!(done.state.phase, Phase::RolledBack);
    // Past the delay: an undone promotion never scales the stable down.
    let later = step(&p, &done.state, &observe(700, 0, blue(), green()));
    assert!(scales(&later).is_empty());
}
