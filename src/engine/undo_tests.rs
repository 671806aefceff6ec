#![allow(clippy::unwrap_used)]
use crate::engine::commands::tests::plan;
use crate::engine::types::{Observation, OperatorCommand};
use crate::engine::{reasons, step, Command, TransitionKind};
use crate::policy::status::{Phase, RolloutStatus, TargetPurpose};
use crate::router::ManagedRoute;

fn promoted() -> RolloutStatus {
    RolloutStatus {
        revision: Some("v2".into()),
        phase: Phase::Promoted,
        step: 2,
        canary_weight: 100,
        promoted_at: chrono::DateTime::from_timestamp(1_767_607_000, 0),
        ..RolloutStatus::default()
    }
}

fn observe(live: Result<u8, &str>, commands: Vec<OperatorCommand>) -> Observation {
    let mut obs = Observation::at(
        chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
        live.map(|canary_weight| ManagedRoute {
            canary_weight,
            test_route: false,
        })
        .map_err(str::to_owned),
    );
    obs.commands = commands;
    obs
}

fn undo(id: &str) -> Vec<OperatorCommand> {
    vec![OperatorCommand::new(id, Command::Undo, "v2")]
}

fn refusals(d: &crate::engine::Decision) -> Vec<String> {
    d.transitions()
        .filter(|t| t.kind == TransitionKind::CommandRefused)
        .map(|t| t.message.clone())
        .collect()
}

#[test]
fn undo_after_a_promotion_is_one_write_back_to_stable() {
    let d = step(&plan(), &promoted(), &observe(Ok(100), undo("1")));
    let writes: Vec<_> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            crate::engine::Action::ApplyRoute(r) => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(
        writes,
        vec![ManagedRoute {
            canary_weight: 0,
            test_route: false
        }]
    );
    assert_eq!(d.state.phase, Phase::RollingBack);
    assert_eq!(d.state.target.map(|t| t.purpose), Some(TargetPurpose::Undo));
    assert_eq!(d.state.reason.as_deref(), Some(reasons::UNDO_REQUESTED));
    // The write lands: the rollout ends as RolledBack, reason Undone.
    let done = step(&plan(), &d.state, &observe(Ok(0), Vec::new()));
    assert_eq!(done.state.phase, Phase::RolledBack);
    assert_eq!(done.state.reason.as_deref(), Some(reasons::UNDONE));
    assert_eq!(done.state.target, None);
    assert_eq!(done.route_write(), None);
    assert!(done
        .transitions()
        .any(|t| t.kind == TransitionKind::RolledBack && t.reason == reasons::UNDONE));
    // A second undo has nothing left to undo.
    let again = step(&plan(), &done.state, &observe(Ok(0), undo("2")));
    assert_eq!(again.route_write(), None);
    assert!(
        refusals(&again)[0].contains("already undone"),
        "{:?}",
        refusals(&again)
    );
}

#[test]
fn undo_before_a_promotion_is_refused_and_writes_nothing() {
    let at_30 = RolloutStatus {
        phase: Phase::Progressing,
        step: 1,
        canary_weight: 30,
        promoted_at: None,
        ..promoted()
    };
    let d = step(&plan(), &at_30, &observe(Ok(30), undo("1")));
    assert_eq!(d.route_write(), None);
    assert_eq!(d.state.phase, Phase::Progressing);
    let refused = refusals(&d);
    assert!(refused[0].contains("not promoted"), "{refused:?}");
    assert!(refused[0].contains("`abort`"), "{refused:?}");
    assert_eq!(d.state.last_command_id.as_deref(), Some("1"));
}

#[test]
fn undo_is_refused_when_the_previous_release_cannot_be_reached() {
    let d = step(
        &plan(),
        &promoted(),
        &observe(Err("destination s is not in route main"), undo("1")),
    );
    assert_eq!(d.route_write(), None);
    assert_eq!(d.state.phase, Phase::Promoted);
    let refused = refusals(&d);
    assert!(refused[0].contains("cannot be reached"), "{refused:?}");
    assert!(refused[0].contains("destination s is not in route main"));
    assert!(refused[0].contains("Nothing was written"));
}

#[test]
fn undo_is_refused_when_someone_moved_the_route_since_the_promotion() {
    let d = step(&plan(), &promoted(), &observe(Ok(40), undo("1")));
    assert_eq!(d.route_write(), None);
    assert!(refusals(&d)[0].contains("no longer the promotion"));
}

#[test]
fn undo_for_another_revision_is_refused() {
    let stale = vec![OperatorCommand::new("1", Command::Undo, "v1")];
    let d = step(&plan(), &promoted(), &observe(Ok(100), stale));
    assert_eq!(d.route_write(), None);
    assert!(refusals(&d)[0].contains("given for revision v1"));
}
