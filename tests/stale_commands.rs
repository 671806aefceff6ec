//! Stale operator commands (given for an older revision) over seeded random worlds, run
//! through the real engine and reconciler on virtual time: each is refused exactly once
//! and changes nothing that users see. Its twin world, where the same instants bring a
//! restart instead of a stale command, must write the same weights at the same times
//! and end the same way.
//!
//! `SHIFTGATE_SIM_CASES` (default 1000) and `SHIFTGATE_SIM_SEED` choose the sweep; a
//! failure prints the command that replays it alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use shiftgate::engine::{reasons, Command, TransitionKind};
use shiftgate::metrics::scripted::{MetricBehaviour, Outage, OutageKind, Segment, Traffic};
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::{Duration, RolloutSpec};
use shiftgate::sim::scenario::{DriftEvent, RouterFault, RouterFaultKind, TimedCommand};
use shiftgate::sim::{Scenario, SimReport, Simulation};

const DEFAULT_SEED: u64 = 0x57a1_e000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn random_spec(rng: &mut StdRng) -> RolloutSpec {
    let mut weights = vec![0u8];
    while weights.last().is_some_and(|w| *w < 100) {
        let next = weights.last().copied().unwrap_or(0) + rng.random_range(10..=60);
        weights.push(next.min(100));
    }
    let gate = rng
        .random_bool(0.2)
        .then(|| rng.random_range(1..weights.len()));
    let steps: Vec<serde_json::Value> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| serde_json::json!({ "weight": w, "hold": format!("{}s", rng.random_range(1..=4) * 30), "pause": gate == Some(i) }))
        .collect();
    let interval = format!("{}s", [10, 30][rng.random_range(0..2)]);
    let min_requests = [0, 50][rng.random_range(0..2)];
    let mut spec = serde_json::json!({
        "revision": "r-new",
        "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
        "steps": steps,
        "checks": if rng.random_bool(0.5) { serde_json::json!([{ "http": { "url": "http://gw/ready" } }]) } else { serde_json::json!([]) },
        "analysis": {
            "interval": interval,
            "minRequests": min_requests,
            "failureLimit": rng.random_range(0..=1),
            "inconclusiveLimit": rng.random_range(0..=3),
            "onInconclusive": if rng.random_bool(0.5) { "rollback" } else { "pause" },
            "metrics": [{ "name": "error-rate", "query": "e", "max": 0.01 }],
        },
        "onFailure": if rng.random_bool(0.8) { "rollback" } else { "hold" },
    });
    if rng.random_bool(0.5) {
        spec["testRoute"] = serde_json::json!({ "cookie": "test=true" });
    }
    serde_json::from_value(spec).unwrap()
}

/// A world and its twin: stale commands in one, restarts at the same instants in the
/// other.
fn random_worlds(rng: &mut StdRng, seed: u64) -> (Scenario, Scenario) {
    let mut s = Scenario::healthy(&format!("stale-{seed}"));
    s.max_duration = secs(2 * 3600);
    s.traffic = Traffic {
        requests_per_second: [2.0, 50.0][rng.random_range(0..2)],
        jitter: 0.1,
        test_route_share: 0.0,
    }
    .into();
    let mut canary = vec![Segment {
        from: secs(0),
        value: 0.002,
    }];
    if rng.random_bool(0.4) {
        canary.push(Segment {
            from: secs(rng.random_range(0..900)),
            value: 0.2,
        });
    }
    s.metrics.insert(
        "error-rate".into(),
        MetricBehaviour {
            canary,
            jitter: 0.1,
            ..MetricBehaviour::default()
        },
    );
    if rng.random_bool(0.3) {
        let from = rng.random_range(0..900);
        s.outages.push(Outage {
            from: secs(from),
            until: Some(secs(from + rng.random_range(10..300))),
            kind: [OutageKind::Unreachable, OutageKind::NoData][rng.random_range(0..2)],
        });
    }
    if rng.random_bool(0.3) {
        let from = rng.random_range(0..900);
        s.router_faults.push(RouterFault {
            from: secs(from),
            until: Some(secs(from + rng.random_range(5..120))),
            kind: [
                RouterFaultKind::Conflict,
                RouterFaultKind::Unavailable,
                RouterFaultKind::LostConfirmation,
            ][rng.random_range(0..3)],
        });
    }
    if rng.random_bool(0.1) {
        s.drift.push(DriftEvent {
            at: secs(rng.random_range(0..900)),
            canary_weight: rng.random_range(0..=100),
            test_route: false,
        });
    }
    for _ in 0..rng.random_range(0..2) {
        s.restarts.push(secs(rng.random_range(1..900)));
    }
    let mut twin = s.clone();
    let mut at = 0;
    for _ in 0..rng.random_range(1..=4) {
        at += rng.random_range(1..400);
        s.commands.push(TimedCommand {
            at: secs(at),
            command: Command::ALL[rng.random_range(0..Command::ALL.len())],
            revision: Some(
                if rng.random_bool(0.5) {
                    "r-old"
                } else {
                    "r-older"
                }
                .to_owned(),
            ),
        });
        twin.restarts.push(secs(at));
    }
    s.restarts.sort();
    twin.restarts.sort();
    (s, twin)
}

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    }
}

fn replay_hint(seed: u64) -> String {
    format!(
        "replay: SHIFTGATE_SIM_SEED={seed} SHIFTGATE_SIM_CASES=1 cargo test --test stale_commands"
    )
}

/// The writes users see: (offset, weight, test route), in order.
fn writes(report: &SimReport) -> Vec<String> {
    report
        .timeline
        .iter()
        .flat_map(|e| e.writes.iter().map(move |w| format!("{} {w:?}", e.at)))
        .collect()
}

fn check_world(seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let spec = random_spec(&mut rng);
    let (stale, twin) = random_worlds(&mut rng, seed);
    let run = |scenario: &Scenario| {
        Simulation::new(policy(), spec.clone(), scenario.clone(), seed)
            .map(Simulation::run)
            .map_err(|e| e.to_string())
    };
    let with_stale = run(&stale)?;
    let without = run(&twin)?;
    let mut refused = Vec::new();
    for entry in &with_stale.timeline {
        for t in &entry.transitions {
            let by_operator = [
                reasons::PAUSED_BY_OPERATOR,
                reasons::RESUMED,
                reasons::PROMOTED_BY_OPERATOR,
            ]
            .contains(&t.reason.as_str())
                || (t.reason == reasons::ABORTED && t.message.contains("by an operator"));
            if by_operator {
                return Err(format!(
                    "a stale command acted at {}: {}",
                    entry.at, t.message
                ));
            }
            if t.kind == TransitionKind::CommandRefused {
                let id = t
                    .message
                    .strip_prefix("command ")
                    .and_then(|m| m.split_once(' '))
                    .map(|(id, _)| id.to_owned())
                    .ok_or_else(|| format!("refusal without an id: {}", t.message))?;
                refused.push(id);
            }
        }
    }
    // Ids are given in order from 1; every stale command delivered is refused once.
    let delivered: Vec<String> = stale
        .commands
        .iter()
        .enumerate()
        .filter(|(_, c)| c.at <= with_stale.elapsed)
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    if refused != delivered {
        return Err(format!(
            "refused {refused:?}, delivered {delivered:?} (lost or doubled)"
        ));
    }
    if writes(&with_stale) != writes(&without) {
        return Err(format!(
            "stale commands changed the writes:\n  with    {:?}\n  without {:?}",
            writes(&with_stale),
            writes(&without)
        ));
    }
    if with_stale.outcome != without.outcome {
        return Err(format!(
            "stale commands changed the outcome: {:?} vs {:?}",
            with_stale.outcome, without.outcome
        ));
    }
    Ok(())
}

#[test]
fn stale_commands_are_refused_once_and_change_nothing() {
    let cases = env_u64("SHIFTGATE_SIM_CASES", 1000);
    let first = env_u64("SHIFTGATE_SIM_SEED", DEFAULT_SEED);
    let failures: Vec<String> = (first..first + cases)
        .filter_map(|seed| {
            check_world(seed)
                .err()
                .map(|e| format!("seed {seed}: {e}\n  {}", replay_hint(seed)))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {cases} worlds broke a must-hold:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
