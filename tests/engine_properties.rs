//! The must-holds, over thousands of seeded random worlds: random policies, metric
//! behaviours, outages, router and store faults, operator commands and restarts, run
//! through the real engine and reconciler on virtual time.
//!
//! `SHIFTGATE_SIM_CASES` (default 1000) and `SHIFTGATE_SIM_SEED` (default: a fixed
//! seed) choose the sweep; a failure prints the command that replays it alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use shiftgate::engine::{self, Action, Command, Observation, Plan, TransitionKind};
use shiftgate::metrics::scripted::{MetricBehaviour, Outage, OutageKind, Segment, Traffic};
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::status::{PauseReason, Phase, RouteTarget, TargetPurpose, VerdictKind};
use shiftgate::policy::{Duration, OnDrift, RolloutSpec, RolloutStatus};
use shiftgate::router::ManagedRoute;
use shiftgate::sim::scenario::{DriftEvent, Period, RouterFault, RouterFaultKind, TimedCommand};
use shiftgate::sim::{Outcome, Scenario, Simulation};

const DEFAULT_SEED: u64 = 0x5eed_2026;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn policy_ref() -> PolicyRef {
    PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    }
}

/// A random valid policy.
fn random_spec(rng: &mut StdRng) -> RolloutSpec {
    let mut weights = vec![0u8];
    let mut w = 0u8;
    while w < 100 {
        w = (w + rng.random_range(5..=60)).min(100);
        weights.push(w);
    }
    // A gate may be at 0% (a blue/green approval before any user moves).
    let gate = rng
        .random_bool(0.2)
        .then(|| rng.random_range(0..weights.len()));
    let steps: Vec<serde_json::Value> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let hold = rng
                .random_bool(0.3)
                .then(|| format!("{}s", rng.random_range(1..=6) * 30));
            serde_json::json!({ "weight": w, "hold": hold, "pause": gate == Some(i) })
        })
        .map(|mut v| {
            if v["hold"].is_null() {
                v.as_object_mut().map(|o| o.remove("hold"));
            }
            v
        })
        .collect();
    let with_checks = rng.random_bool(0.5);
    let mut metrics = vec![serde_json::json!({ "name": "error-rate", "query": "e", "max": 0.01 })];
    if rng.random_bool(0.5) {
        metrics.push(serde_json::json!({ "name": "latency", "query": "l", "max": 500 }));
    }
    if rng.random_bool(0.5) {
        metrics.push(serde_json::json!({ "name": "vs-stable", "query": "v", "stableQuery": "s", "compare": { "maxIncrease": 0.005 }, "judge": "threshold" }));
    }
    let interval = format!("{}s", [10, 15, 30, 60][rng.random_range(0..4)]);
    let min_requests = [0, 50, 200][rng.random_range(0..3)];
    let spec = serde_json::json!({
        "revision": format!("r{}", rng.random_range(1..1000)),
        "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
        "steps": steps,
        "testRoute": if rng.random_bool(0.5) { serde_json::json!({ "cookie": "test=true" }) } else { serde_json::Value::Null },
        "checks": if with_checks { serde_json::json!([{ "http": { "url": "http://gw/ready" } }]) } else { serde_json::json!([]) },
        "analysis": {
            "interval": interval,
            "minRequests": min_requests,
            "failureLimit": rng.random_range(0..=2),
            "inconclusiveLimit": rng.random_range(0..=3),
            "onInconclusive": if rng.random_bool(0.5) { "rollback" } else { "pause" },
            "metrics": metrics,
        },
        "onFailure": if rng.random_bool(0.8) { "rollback" } else { "hold" },
        "onDrift": if rng.random_bool(0.8) { "pause" } else { "reassert" },
    });
    let mut spec = spec;
    if spec["testRoute"].is_null() {
        spec.as_object_mut().map(|o| o.remove("testRoute"));
    }
    serde_json::from_value(spec).expect("generated spec is valid")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A random world: metric behaviour with regressions, outages, faults, commands.
fn random_scenario(rng: &mut StdRng, seed: u64) -> Scenario {
    let mut s = Scenario::healthy(&format!("random-{seed}"));
    s.max_duration = secs(3 * 3600);
    s.traffic = Traffic {
        requests_per_second: [2.0, 20.0, 80.0][rng.random_range(0..3)],
        jitter: 0.1,
        test_route_share: 0.0,
    }
    .into();
    let behaviour = |rng: &mut StdRng, good: f64, bad: f64| {
        let mut canary = vec![Segment {
            from: secs(0),
            value: good,
        }];
        if rng.random_bool(0.4) {
            canary.push(Segment {
                from: secs(rng.random_range(0..900)),
                value: bad,
            });
            if rng.random_bool(0.3) {
                canary.push(Segment {
                    from: secs(rng.random_range(900..1800)),
                    value: good,
                });
            }
        }
        MetricBehaviour {
            canary,
            stable: vec![Segment {
                from: secs(0),
                value: good,
            }],
            jitter: rng.random_range(0.0..0.3),
        }
    };
    s.metrics
        .insert("error-rate".into(), behaviour(rng, 0.002, 0.05));
    s.metrics
        .insert("latency".into(), behaviour(rng, 150.0, 900.0));
    s.metrics
        .insert("vs-stable".into(), behaviour(rng, 0.002, 0.03));
    let window = |rng: &mut StdRng| {
        let from = rng.random_range(0..1200);
        (secs(from), Some(secs(from + rng.random_range(1..400))))
    };
    for _ in 0..rng.random_range(0..3) {
        let (from, until) = window(rng);
        let kinds = [
            OutageKind::Unreachable,
            OutageKind::Timeout,
            OutageKind::NotANumber,
            OutageKind::NoData,
            OutageKind::Invalid,
        ];
        s.outages.push(Outage {
            from,
            until,
            kind: kinds[rng.random_range(0..kinds.len())],
        });
    }
    for _ in 0..rng.random_range(0..3) {
        let (from, until) = window(rng);
        let kinds = [
            RouterFaultKind::Conflict,
            RouterFaultKind::Unavailable,
            RouterFaultKind::LostConfirmation,
            RouterFaultKind::Unreadable,
        ];
        s.router_faults.push(RouterFault {
            from,
            until,
            kind: kinds[rng.random_range(0..kinds.len())],
        });
    }
    if rng.random_bool(0.2) {
        let (from, until) = window(rng);
        s.store_failures.push(Period {
            from,
            until,
            message: None,
        });
    }
    if rng.random_bool(0.2) {
        let (from, until) = window(rng);
        s.check_failures.push(Period {
            from,
            until,
            message: None,
        });
    }
    let mut at = 0;
    for _ in 0..rng.random_range(0..4) {
        at += rng.random_range(1..600);
        let command = Command::ALL[rng.random_range(0..Command::ALL.len())];
        s.commands.push(TimedCommand {
            at: secs(at),
            command,
            revision: None,
        });
    }
    // Nobody is left waiting forever on a gate or a pause.
    s.commands.push(TimedCommand {
        at: secs(at + 3000),
        command: Command::Resume,
        revision: None,
    });
    s.commands.push(TimedCommand {
        at: secs(at + 3001),
        command: Command::Promote,
        revision: None,
    });
    let mut restart = 0;
    for _ in 0..rng.random_range(0..3) {
        restart += rng.random_range(1..900);
        s.restarts.push(secs(restart));
    }
    if rng.random_bool(0.2) {
        live_colour_start(rng, &mut s);
    }
    if rng.random_bool(0.25) {
        drift(rng, &mut s);
    }
    s.restarts.sort();
    s.drift.sort_by_key(|d| d.at);
    s
}

/// The rollout starts with the canary already serving users: the live colour of a
/// blue/green pair (100%), or a weight someone else left behind. Sometimes a person
/// later puts the route back to 0%, after which the rollout may start.
fn live_colour_start(rng: &mut StdRng, s: &mut Scenario) {
    s.initial.canary_weight = if rng.random_bool(0.5) {
        100
    } else {
        rng.random_range(1..100)
    };
    s.initial.test_route = rng.random_bool(0.2);
    if rng.random_bool(0.5) {
        s.drift.push(DriftEvent {
            at: secs(rng.random_range(1..1200)),
            canary_weight: 0,
            test_route: false,
        });
    }
}

/// Someone else edits the managed weights, often to a high canary weight, while the
/// canary may be failing. A restart 20 minutes later makes sure the world is looked at
/// while it is drifted, whatever the engine asked for.
fn drift(rng: &mut StdRng, s: &mut Scenario) {
    for _ in 0..rng.random_range(1..=2) {
        let at = rng.random_range(0..1200);
        s.drift.push(DriftEvent {
            at: secs(at),
            canary_weight: if rng.random_bool(0.5) {
                rng.random_range(80..=100)
            } else {
                rng.random_range(0..=100)
            },
            test_route: rng.random_bool(0.5),
        });
        s.restarts.push(secs(at + 1200));
    }
}

/// Virtual time since the scenario's start.
fn sim_offset(sim: &Simulation, scenario: &Scenario) -> Duration {
    Duration::from((sim.now() - scenario.start).to_std().unwrap_or_default())
}

fn replay_hint(seed: u64) -> String {
    format!("replay: SHIFTGATE_SIM_SEED={seed} SHIFTGATE_SIM_CASES=1 cargo test --test engine_properties sweep")
}

/// Runs one world tick by tick and checks the invariants after every tick.
fn check_world(seed: u64) -> Result<Outcome, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let spec = random_spec(&mut rng);
    let scenario = random_scenario(&mut rng, seed);
    let plan = Plan::new(&spec).map_err(|e| e.to_string())?;
    let limits = spec.analysis.clone();
    let mut sim = Simulation::new(policy_ref(), spec.clone(), scenario.clone(), seed)
        .map_err(|e| e.to_string())?;
    let mut operator_promoted = false;
    let mut rollback_started = false;
    let mut previous_step = 0;
    let mut last_retry = None;
    let mut fails_in_a_row = 0u32;
    let mut seen_entries = 0;
    // The canary serves users before anything was judged: the live colour.
    let live_start = scenario.initial.canary_weight > plan.step(0).weight;
    let mut write_back_asked = false;
    // The weight an operator's `promote` asked for, until it is written.
    let mut promoted_to: Option<u8> = None;
    loop {
        // The instant the tick runs at (a tick ends by moving the clock on).
        let offset = sim_offset(&sim, &scenario);
        let tick_now = sim.now();
        let more = sim.tick();
        let stored = sim.stored_status().unwrap_or_default();
        let live = sim.router().route();
        // 1. The weight never exceeds the current step's weight (unless someone else
        // set it: drift), and no write of shiftgate's ever does.
        let ceiling = plan.step(stored.step).weight;
        if scenario.drift.is_empty() && !live_start && live.canary_weight > ceiling {
            return Err(format!(
                "live weight {} above step {} weight {ceiling}",
                live.canary_weight, stored.step
            ));
        }
        // 5. The status stays coherent: a pause says why, and resumes somewhere else.
        if stored.phase == Phase::Paused && stored.pause_reason.is_none() {
            return Err("paused without a reason".into());
        }
        if stored.resume_phase == Some(Phase::Paused) {
            return Err("a pause would resume into a pause".into());
        }
        // 7. Drift keeps judging: a canary that someone else moved to a weight with users
        // on it is evaluated every interval while the rollout is paused for the drift.
        let quiet = !scenario
            .router_faults
            .iter()
            .any(|f| f.from <= offset && f.until.is_none_or(|u| offset < u))
            && !scenario.store_failures.iter().any(|p| p.covers(offset));
        if quiet
            && stored.phase == Phase::Paused
            && stored.pause_reason == Some(PauseReason::Drift)
            && live.canary_weight > 0
            && stored
                .last_evaluation_at
                .is_none_or(|t| tick_now - t > plan.interval())
        {
            return Err(format!(
                "a drifted canary at {}% went unjudged at {offset} (last evaluation {:?})",
                live.canary_weight, stored.last_evaluation_at
            ));
        }
        for entry in &sim.timeline()[seen_entries..] {
            // A write-back of drifted weights, asked for by `resume` or by the policy's
            // `onDrift: reassert`, stays asked for until a write lands.
            if entry.transitions.iter().any(|t| {
                t.kind == TransitionKind::Resumed
                    || (t.kind == TransitionKind::Drift && spec.on_drift == OnDrift::Reassert)
            }) {
                write_back_asked = true;
            }
            // 6. No write moves users off a canary that serves them (the live colour, a
            // drifted weight) without a judgement or an operator's command: only a
            // rollback (Fail, inconclusive limit, failed checks), an abort, or writing
            // drifted weights back (`resume`, or the policy's `onDrift: reassert`).
            if let Some(t) = entry
                .transitions
                .iter()
                .rfind(|t| t.reason == engine::reasons::PROMOTED_BY_OPERATOR)
            {
                promoted_to = Some(t.canary_weight);
            }
            let mut before = entry.live_before.canary_weight;
            for w in &entry.writes {
                if w.canary_weight < before {
                    let rolled_back = w.canary_weight == 0
                        && matches!(
                            entry.phase,
                            Phase::RollingBack | Phase::RolledBack | Phase::Aborted
                        );
                    let written_back = write_back_asked && !scenario.drift.is_empty();
                    // An operator's `promote` (even of a rollout refused for its live
                    // canary) is an explicit command, until its write lands.
                    let promoted = promoted_to == Some(w.canary_weight);
                    if !rolled_back && !written_back && !promoted {
                        return Err(format!(
                            "moved users off the canary ({before}% → {}%) at {} without a \
                             judgement or a command (phase {})",
                            w.canary_weight, entry.at, entry.phase
                        ));
                    }
                }
                if promoted_to == Some(w.canary_weight) {
                    promoted_to = None;
                }
                before = w.canary_weight;
                write_back_asked = false;
            }
            // 8. Where no user reaches the canary there is nothing to judge: no
            // evaluation (and so nothing inconclusive) at a live weight of 0.
            if entry.analysis.is_some()
                && entry.live_before.canary_weight == 0
                && entry.writes.iter().all(|w| w.canary_weight == 0)
            {
                return Err(format!(
                    "judged a canary that serves no user at {} (phase {})",
                    entry.at, entry.phase
                ));
            }
            if let Some(w) = entry.writes.iter().find(|w| w.canary_weight > ceiling) {
                return Err(format!(
                    "wrote {}% at {}, above step {} weight {ceiling}",
                    w.canary_weight, entry.at, stored.step
                ));
            }
            // An operator's resume or promote starts the count afresh.
            if entry.transitions.iter().any(|t| {
                t.kind == TransitionKind::Resumed
                    || t.reason == engine::reasons::PROMOTED_BY_OPERATOR
            }) {
                fails_in_a_row = 0;
            }
            for t in &entry.transitions {
                if t.reason == engine::reasons::PROMOTED_BY_OPERATOR {
                    operator_promoted = true;
                }
                if t.kind == TransitionKind::RollingBack {
                    rollback_started = true;
                }
                // An operator's `retry` starts the rollout again: what it ends in is
                // judged afresh.
                if t.kind == TransitionKind::Started {
                    rollback_started = false;
                    fails_in_a_row = 0;
                }
                // 2. No step advances without a Pass (or an explicit promote).
                if t.kind == TransitionKind::StepAdvanced
                    && t.reason == engine::reasons::STEP_ADVANCED
                {
                    let from = plan.step(t.step - 1).weight;
                    let passed = entry
                        .analysis
                        .as_ref()
                        .or(sim.status().last_analysis.as_ref())
                        .is_some_and(|a| a.verdict == VerdictKind::Pass);
                    if from > 0 && !passed {
                        return Err(format!(
                            "step {} advanced at {} without a Pass",
                            t.step, entry.at
                        ));
                    }
                }
                if t.kind == TransitionKind::Promoted && !operator_promoted {
                    let passed = sim
                        .status()
                        .last_analysis
                        .as_ref()
                        .is_some_and(|a| a.verdict == VerdictKind::Pass);
                    if !passed {
                        return Err(format!("promoted at {} without a Pass", entry.at));
                    }
                }
            }
            // 3. A Fail leads to weight 0 (or hold) within the configured limit.
            if let Some(a) = &entry.analysis {
                if a.verdict == VerdictKind::Fail {
                    fails_in_a_row += 1;
                    if fails_in_a_row > limits.failure_limit + 1 {
                        return Err(format!(
                            "{fails_in_a_row} failed evaluations in a row, limit {}",
                            limits.failure_limit
                        ));
                    }
                    if fails_in_a_row > limits.failure_limit
                        && !matches!(
                            entry.phase,
                            Phase::RollingBack | Phase::RolledBack | Phase::Held
                        )
                    {
                        return Err(format!(
                            "failure limit reached at {} but phase is {}",
                            entry.at, entry.phase
                        ));
                    }
                } else if a.verdict == VerdictKind::Pass {
                    fails_in_a_row = 0;
                }
            }
            // 4. Inconclusive never advances.
            if entry
                .analysis
                .as_ref()
                .is_some_and(|a| a.verdict == VerdictKind::Inconclusive)
                && entry.transitions.iter().any(|t| {
                    t.kind == TransitionKind::StepAdvanced
                        && t.reason == engine::reasons::STEP_ADVANCED
                })
            {
                return Err(format!(
                    "an inconclusive evaluation advanced at {}",
                    entry.at
                ));
            }
        }
        seen_entries = sim.timeline().len();
        // The one way back to the first step: an operator's `retry` of a rolled-back
        // rollout, which the history records.
        let retried_at = stored
            .history
            .iter()
            .filter(|h| h.reason == engine::reasons::RETRIED)
            .map(|h| h.at)
            .max();
        let retried = retried_at != last_retry;
        last_retry = retried_at;
        if retried {
            // Judged afresh, even when the new start is refused (the canary still live).
            rollback_started = false;
        }
        if stored.step < previous_step && stored.revision.is_some() && !retried {
            return Err(format!(
                "step went back from {previous_step} to {}",
                stored.step
            ));
        }
        previous_step = stored.step;
        if !more {
            break;
        }
    }
    let report = sim.report();
    if rollback_started && !matches!(report.outcome, Outcome::RolledBack | Outcome::Aborted) {
        return Err(format!(
            "a rollback started but the outcome is {:?}",
            report.outcome
        ));
    }
    if report.outcome == Outcome::RolledBack
        && sim.router().route()
            != (ManagedRoute {
                canary_weight: 0,
                test_route: false,
            })
    {
        return Err("rolled back but the canary still gets traffic".into());
    }
    Ok(report.outcome)
}

/// A straight run and a run restarted from the stored state at tick `at` give the same
/// timeline; and the same seed gives the same timeline twice.
fn check_restart_and_determinism(seed: u64, restart_at: u64) -> Result<(), String> {
    let build = || {
        let mut rng = StdRng::seed_from_u64(seed);
        let spec = random_spec(&mut rng);
        let scenario = random_scenario(&mut rng, seed);
        Simulation::new(policy_ref(), spec, scenario, seed).map_err(|e| e.to_string())
    };
    let straight = serde_json::to_string(&build()?.run()).map_err(|e| e.to_string())?;
    let again = serde_json::to_string(&build()?.run()).map_err(|e| e.to_string())?;
    if straight != again {
        return Err("the same seed gave two different timelines".into());
    }
    let mut sim = build()?;
    let mut tick = 0;
    while sim.tick() {
        tick += 1;
        if tick == restart_at {
            sim.restart();
        }
    }
    let restarted = serde_json::to_string(&sim.report()).map_err(|e| e.to_string())?;
    if restarted != straight {
        return Err(format!(
            "restarting after tick {restart_at} changed the timeline"
        ));
    }
    Ok(())
}

#[test]
fn sweep() {
    let cases = env_u64("SHIFTGATE_SIM_CASES", 1000);
    let first = env_u64("SHIFTGATE_SIM_SEED", DEFAULT_SEED);
    let mut outcomes = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    for seed in first..first + cases {
        match check_world(seed) {
            Ok(outcome) => *outcomes.entry(format!("{outcome:?}")).or_insert(0) += 1,
            Err(e) => failures.push(format!("seed {seed}: {e}\n  {}", replay_hint(seed))),
        }
        if seed % 10 == 0 {
            if let Err(e) = check_restart_and_determinism(seed, 1 + seed % 7) {
                failures.push(format!("seed {seed}: {e}\n  {}", replay_hint(seed)));
            }
        }
    }
    eprintln!("{cases} worlds from seed {first}: {outcomes:?}");
    assert!(
        failures.is_empty(),
        "{} of {cases} worlds broke a must-hold:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The sweep must exercise every ending, or it proves little.
    if cases >= 200 {
        for outcome in ["Promoted", "RolledBack", "Paused", "Refused"] {
            assert!(
                outcomes.contains_key(outcome),
                "no world ended {outcome}: {outcomes:?}"
            );
        }
    }
}

fn arb_state(last: u32) -> impl Strategy<Value = RolloutStatus> {
    let phases = prop::sample::select(vec![
        Phase::Pending,
        Phase::Waiting,
        Phase::Checking,
        Phase::Progressing,
        Phase::Paused,
        Phase::Promoted,
        Phase::RollingBack,
        Phase::RolledBack,
        Phase::Held,
        Phase::Aborted,
    ]);
    let purposes = prop::sample::select(vec![
        TargetPurpose::Step,
        TargetPurpose::Reassert,
        TargetPurpose::Rollback,
        TargetPurpose::Abort,
        TargetPurpose::Promote,
    ]);
    (
        phases,
        0..=last,
        0u8..=100,
        any::<bool>(),
        prop::option::of((0u8..=100, any::<bool>(), purposes)),
        prop::option::of(0i64..600),
        0u32..4,
        0u32..4,
    )
        .prop_map(
            |(phase, step, weight, test_route, target, started, fails, inconclusive)| {
                RolloutStatus {
                    revision: Some("v2".into()),
                    phase,
                    step,
                    canary_weight: weight,
                    test_route,
                    target: target.map(|(w, t, purpose)| {
                        let w = match purpose {
                            TargetPurpose::Rollback | TargetPurpose::Abort => 0,
                            TargetPurpose::Promote => 100,
                            _ => w,
                        };
                        RouteTarget {
                            canary_weight: w,
                            test_route: t,
                            purpose,
                        }
                    }),
                    step_started_at: started.map(|s| {
                        chrono::DateTime::from_timestamp(1_767_607_200 + s, 0).unwrap_or_default()
                    }),
                    consecutive_failures: fails,
                    consecutive_inconclusive: inconclusive,
                    ..RolloutStatus::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the stored state and the observation, no write exceeds the weight of the
    /// step the decision is at, a rollback is one write of weight 0 without the test
    /// route, and a decision without pending input is a fixed point.
    #[test]
    fn no_write_exceeds_the_step_weight(
        seed in any::<u64>(),
        state in arb_state(6),
        live_weight in 0u8..=100,
        live_test in any::<bool>(),
        at in 0i64..1200,
        commands in prop::collection::vec(prop::sample::select(Command::ALL.to_vec()), 0..3),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let spec = random_spec(&mut rng);
        let plan = Plan::new(&spec).unwrap();
        let mut state = state;
        state.step = state.step.min(plan.last_index());
        let mut obs = Observation::at(
            chrono::DateTime::from_timestamp(1_767_607_200 + at, 0).unwrap_or_default(),
            Ok(ManagedRoute { canary_weight: live_weight, test_route: live_test }),
        );
        obs.commands = commands
            .into_iter()
            .enumerate()
            .map(|(id, c)| engine::OperatorCommand::new(id.to_string(), c, plan.revision()))
            .collect();
        let d = engine::step(&plan, &state, &obs);
        let writes: Vec<ManagedRoute> = d.actions.iter().filter_map(|a| match a { Action::ApplyRoute(r) => Some(*r), _ => None }).collect();
        prop_assert!(writes.len() <= 1, "one write per decision: {:?}", writes);
        for w in &writes {
            prop_assert!(w.canary_weight <= plan.step(d.state.step).weight, "write {:?} above step {}", w, d.state.step);
            if matches!(d.state.phase, Phase::RollingBack | Phase::Aborted) {
                prop_assert_eq!(*w, ManagedRoute { canary_weight: 0, test_route: false });
            }
        }
        if !d.needs_input() {
            obs.commands.clear();
            let again = engine::step(&plan, &d.state, &obs);
            prop_assert_eq!(&again.state, &d.state);
        }
    }
}
