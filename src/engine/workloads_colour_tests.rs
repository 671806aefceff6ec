//! `spec.workloads.colors` across two blue/green releases: the Deployments are oriented
//! with the same colour decision as the router, so the second release waits for the
//! Deployment of the colour the first one left idle and scales down the colour the
//! first one promoted away from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::colours::resolve;
use super::workloads::{DeploymentState, WorkloadsObservation, SCALED_DOWN, WAITING_FOR_CANARY};
use super::workloads_tests::{deployment, route, scales, t};
use super::*;
use crate::policy::colours::orient;
use crate::policy::status::Phase;
use crate::policy::{RolloutSpec, RolloutStatus};

fn spec(revision: &str) -> RolloutSpec {
    serde_json::from_value(serde_json::json!({
        "revision": revision,
        "router": { "service": { "service": "web", "selectorKey": "color",
                                 "colors": { "blue": "blue", "green": "green" } } },
        "steps": [0, 100],
        "analysis": { "interval": "30s", "metrics": [ { "name": "e", "query": "x", "max": 0.01 } ] },
        "workloads": { "colors": { "blue": "web-blue", "green": "web-green" },
                       "scaleDown": { "after": "10m" } }
    }))
    .unwrap()
}

/// The world: the share of users on green, and each colour's Deployment.
struct World {
    green: u8,
    blue_deployment: DeploymentState,
    green_deployment: DeploymentState,
}

impl World {
    /// The spec for `revision` oriented as the daemon orients it (the route read with
    /// the first colour, blue, as stable), and its plan.
    fn orient(&self, revision: &str, stored: Option<&RolloutStatus>) -> (RolloutSpec, Plan) {
        let spec = spec(revision);
        let choice = resolve(&spec, stored, Some(route(self.green))).unwrap();
        let oriented = orient(&spec, &choice.stable).unwrap();
        let plan = Plan::new(&oriented).unwrap();
        (oriented, plan)
    }

    /// What the engine observes through the oriented spec's Deployments and route.
    fn observe(&self, secs: i64, oriented: &RolloutSpec) -> Observation {
        let w = oriented.workloads.as_ref().unwrap();
        let of = |name: &str| {
            if name == self.blue_deployment.name {
                self.blue_deployment.clone()
            } else {
                self.green_deployment.clone()
            }
        };
        let canary_is_green = w.canary == self.green_deployment.name;
        let canary_weight = if canary_is_green {
            self.green
        } else {
            100 - self.green
        };
        Observation {
            workloads: Some(WorkloadsObservation {
                stable: Ok(of(&w.stable)),
                canary: Ok(of(&w.canary)),
            }),
            ..Observation::at(t(secs), Ok(route(canary_weight)))
        }
    }
}

/// The state of a promotion of `revision` into `canary` at `secs`, as the engine
/// leaves it.
fn promoted(revision: &str, stable: &str, canary: &str, secs: i64) -> RolloutStatus {
    RolloutStatus {
        revision: Some(revision.into()),
        phase: Phase::Promoted,
        step: 1,
        canary_weight: 100,
        stable_color: Some(stable.into()),
        canary_color: Some(canary.into()),
        live_color: Some(canary.into()),
        promoted_at: Some(t(secs)),
        ..RolloutStatus::default()
    }
}

#[test]
fn the_deployments_follow_the_live_colour_across_two_releases() {
    let mut world = World {
        green: 0,
        blue_deployment: deployment("web-blue", 3, 3),
        green_deployment: deployment("web-green", 2, 1),
    };

    // Release v2: blue is live, so green's Deployment is the canary and is waited for.
    let (oriented, plan) = world.orient("v2", None);
    let w = oriented.workloads.as_ref().unwrap();
    assert_eq!(
        (w.stable.as_str(), w.canary.as_str()),
        ("web-blue", "web-green")
    );
    let waiting = step(
        &plan,
        &RolloutStatus::default(),
        &world.observe(0, &oriented),
    );
    assert_eq!(waiting.state.phase, Phase::Waiting);
    assert_eq!(waiting.state.reason.as_deref(), Some(WAITING_FOR_CANARY));
    assert!(
        waiting
            .state
            .message
            .as_deref()
            .unwrap()
            .contains("web-green"),
        "{:?}",
        waiting.state.message
    );
    assert_eq!(waiting.route_write(), None);
    world.green_deployment = deployment("web-green", 2, 2);
    let moving = step(&plan, &waiting.state, &world.observe(5, &oriented));
    assert_ne!(moving.state.phase, Phase::Waiting);

    // v2 promoted into green; 10 minutes later blue, the colour it left, is scaled down.
    world.green = 100;
    let state = promoted("v2", "blue", "green", 10);
    let (oriented, plan) = world.orient("v2", Some(&state));
    let w = oriented.workloads.as_ref().unwrap();
    assert_eq!(w.stable, "web-blue", "a promoted release keeps its colours");
    let due = step(&plan, &state, &world.observe(610, &oriented));
    assert_eq!(scales(&due), [("web-blue".to_owned(), 0)]);
    assert_eq!(due.state.reason.as_deref(), Some(SCALED_DOWN));
    world.blue_deployment = deployment("web-blue", 0, 0);
    let left = step(&plan, &due.state, &world.observe(615, &oriented)).state;

    // Release v3 goes to blue, the idle colour: its Deployment is now the canary one
    // (at 0 replicas: waited for), green's the stable one.
    let (oriented, plan) = world.orient("v3", Some(&left));
    let w = oriented.workloads.as_ref().unwrap();
    assert_eq!(
        (w.stable.as_str(), w.canary.as_str()),
        ("web-green", "web-blue")
    );
    let waiting = step(&plan, &left, &world.observe(700, &oriented));
    assert_eq!(waiting.state.phase, Phase::Waiting);
    let message = waiting.state.message.clone().unwrap();
    assert!(
        message.contains("web-blue") && message.contains("0 replicas"),
        "{message}"
    );
    assert_eq!(
        waiting.route_write(),
        None,
        "no user moved to a colour at 0 replicas"
    );
    assert_eq!(
        waiting
            .state
            .workloads
            .as_ref()
            .and_then(|w| w.scaled_down.clone()),
        None,
        "the previous release's scale-down is not this one's"
    );
    world.blue_deployment = deployment("web-blue", 3, 3);
    let moving = step(&plan, &waiting.state, &world.observe(705, &oriented));
    assert_ne!(moving.state.phase, Phase::Waiting);

    // v3 promoted into blue: now green, the colour v3 left, is the one scaled down.
    world.green = 0;
    let state = promoted("v3", "green", "blue", 800);
    let (oriented, plan) = world.orient("v3", Some(&state));
    let before = step(&plan, &state, &world.observe(1399, &oriented));
    assert!(scales(&before).is_empty(), "scaled down before its delay");
    let due = step(&plan, &before.state, &world.observe(1400, &oriented));
    assert_eq!(scales(&due), [("web-green".to_owned(), 0)]);
    let stored = due.state.workloads.unwrap().scaled_down.unwrap();
    assert_eq!(
        (stored.deployment.as_str(), stored.replicas),
        ("web-green", 2)
    );
}
