//! Target `policy`: parse → validate → plan → engine → simulate. Inputs are the example
//! policies and scenarios of the repository, mutated field by field (see `mutate`), a
//! stored status with extreme timestamps and counters, and instants far in the past
//! and future. What must hold: nothing panics, and a policy that `check` accepts,
//! printed back, is accepted again.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use shiftgate::analysis::sample::{AnalysisInput, Measured, MetricObservation, Sample};
use shiftgate::engine::types::{Action, ChecksOutcome, Observation};
use shiftgate::engine::Plan;
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::parse::check_str;
use shiftgate::policy::schema::{document_schema, property_names};
use shiftgate::policy::status::CheckResult;
use shiftgate::policy::{RolloutPolicy, RolloutStatus};
use shiftgate::router::ManagedRoute;
use shiftgate::sim::{Scenario, Simulation};

use super::mutate::{self, Mutation, TextMutation};

/// Ticks a simulation may run (a valid 30-day scenario at a 1 s interval would take
/// millions; the ticks that matter come early).
const MAX_TICKS: usize = 400;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct PolicyCase {
    pub policy: String,
    pub scenario: String,
    /// A stored status (what a restart reads back from a file or a custom resource).
    pub status: Value,
    /// Unix seconds of the engine's `now`, one step each.
    pub now: Vec<i64>,
    pub live_weight: u8,
    /// Metric values as text (`NaN` and `inf` have no JSON number).
    pub samples: Vec<String>,
    pub seed: u64,
}

struct Seeds {
    policies: Vec<Value>,
    scenarios: Vec<Value>,
    policy_fields: Vec<String>,
}

const SCENARIO_FIELDS: &[&str] = &[
    "maxDuration",
    "start",
    "initial",
    "canaryWeight",
    "testRoute",
    "traffic",
    "requestsPerSecond",
    "jitter",
    "metrics",
    "canary",
    "stable",
    "from",
    "value",
    "outages",
    "until",
    "kind",
    "routerFaults",
    "checkFailures",
    "storeFailures",
    "drift",
    "at",
    "commands",
    "command",
    "restarts",
    "expect",
    "outcome",
    "within",
    "reason",
];

const STATUS_FIELDS: &[&str] = &[
    "revision",
    "phase",
    "step",
    "canaryWeight",
    "testRoute",
    "target",
    "pauseReason",
    "resumePhase",
    "startedAt",
    "stepStartedAt",
    "lastEvaluationAt",
    "checksPassed",
    "consecutiveFailures",
    "consecutiveInconclusive",
];

fn documents(dir: &str) -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    let mut documents = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            if let Ok(value) = Value::deserialize(document) {
                if !value.is_null() {
                    documents.push(value);
                }
            }
        }
    }
    assert!(
        !documents.is_empty(),
        "no seed documents in {}",
        dir.display()
    );
    documents
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| Seeds {
        policies: documents("policies"),
        scenarios: documents("scenarios"),
        policy_fields: property_names(&document_schema()).into_iter().collect(),
    })
}

fn seed_status() -> Value {
    json!({
        "revision": "2.4.0",
        "phase": "Progressing",
        "step": 1,
        "canaryWeight": 30,
        "startedAt": "2026-01-05T10:00:00Z",
        "stepStartedAt": "2026-01-05T10:01:00Z",
        "lastEvaluationAt": "2026-01-05T10:01:30Z",
        "checksPassed": true,
        "consecutiveFailures": 0,
        "consecutiveInconclusive": 0
    })
}

fn instant() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 1_767_607_200i64..1_767_607_200 + 40 * 86_400,
        1 => Just(253_402_300_799i64),          // 9999-12-31T23:59:59Z
        1 => Just(8_210_266_876_799i64),        // near chrono's largest date
        1 => Just(-8_334_601_228_800i64),       // near chrono's smallest date
        1 => Just(0i64),
    ]
}

fn timestamp_text() -> impl Strategy<Value = Value> {
    instant().prop_map(|secs| {
        chrono::DateTime::from_timestamp(secs, 0)
            .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
    })
}

fn sample_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0f64..1000.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-1.0),
        1 => any::<f64>(),
    ]
}

pub fn case() -> impl Strategy<Value = PolicyCase> {
    let seeds = seeds();
    (
        (
            prop::sample::select(seeds.policies.clone()),
            mutate::mutations(4),
            mutate::text_mutation(),
        ),
        (
            prop::sample::select(seeds.scenarios.clone()),
            mutate::mutations(3),
            mutate::text_mutation(),
        ),
        (
            mutate::mutations(3),
            prop::collection::vec((0usize..STATUS_FIELDS.len(), timestamp_text()), 0..3),
        ),
        prop::collection::vec(instant(), 1..4),
        any::<u8>(),
        prop::collection::vec(sample_value().prop_map(|v| v.to_string()), 0..6),
        any::<u64>(),
    )
        .prop_map(
            |(policy, scenario, status, now, live_weight, samples, seed)| PolicyCase {
                policy: mutated(policy, &seeds.policy_fields),
                scenario: mutated(scenario, &vocabulary(SCENARIO_FIELDS)),
                status: mutated_status(status),
                now,
                live_weight,
                samples,
                seed,
            },
        )
}

fn vocabulary(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| (*f).to_owned()).collect()
}

fn mutated(
    (mut document, mutations, text): (Value, Vec<Mutation>, TextMutation),
    fields: &[String],
) -> String {
    mutate::apply(&mut document, &mutations, fields);
    mutate::render(&document, &text)
}

fn mutated_status((mutations, stamps): (Vec<Mutation>, Vec<(usize, Value)>)) -> Value {
    let mut status = seed_status();
    mutate::apply(&mut status, &mutations, &vocabulary(STATUS_FIELDS));
    for (field, stamp) in stamps {
        if let Value::Object(map) = &mut status {
            map.insert(STATUS_FIELDS[field].to_owned(), stamp);
        }
    }
    status
}

pub fn run(case: &PolicyCase) {
    let check = check_str("fuzz.yaml", &case.policy);
    for diagnostic in &check.diagnostics {
        let _ = diagnostic.to_string();
    }
    let scenario = Scenario::parse(&case.scenario, "fuzz-scenario.yaml");
    if let Err(e) = &scenario {
        let _ = e.to_string();
    }
    for checked in &check.policies {
        let policy = &checked.loaded.policy;
        printed_back_checks_clean(policy);
        let Ok(plan) = Plan::new(&policy.spec) else {
            continue;
        };
        engine_steps(&plan, policy, case);
        if let Ok(scenario) = &scenario {
            simulate(policy, scenario, case.seed);
        }
    }
}

fn printed_back_checks_clean(policy: &RolloutPolicy) {
    let printed = serde_yaml_ng::to_string(policy).unwrap_or_default();
    let again = check_str("printed.yaml", &printed);
    let errors: Vec<String> = again
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "a policy that checks clean, printed back, has errors: {errors:?}\n{printed}"
    );
}

fn engine_steps(plan: &Plan, policy: &RolloutPolicy, case: &PolicyCase) {
    let mut state: RolloutStatus = serde_json::from_value(case.status.clone()).unwrap_or_default();
    let mut samples = case.samples.iter().cycle();
    let mut next_sample = || match samples.next().and_then(|v| v.parse::<f64>().ok()) {
        Some(v) => Sample::value(v),
        None => Sample::NoData,
    };
    for &secs in &case.now {
        let Some(now) = chrono::DateTime::from_timestamp(secs, 0) else {
            continue;
        };
        let live = ManagedRoute {
            canary_weight: case.live_weight,
            test_route: case.live_weight % 2 == 1,
        };
        let mut observation = Observation::at(now, Ok(live));
        let mut decision = shiftgate::engine::step(plan, &state, &observation);
        if decision.actions.contains(&Action::QueryMetrics) {
            observation.analysis = Some(AnalysisInput {
                at: now,
                canary_requests: next_sample(),
                metrics: policy
                    .spec
                    .analysis
                    .metrics
                    .iter()
                    .map(|m| MetricObservation {
                        name: m.name.clone(),
                        canary: match next_sample() {
                            Sample::Value(v) => Sample::Value(Measured {
                                requests: Some(v.value),
                                ..v
                            }),
                            other => other,
                        },
                        stable: Some(next_sample()),
                    })
                    .collect(),
            });
        }
        if decision.actions.contains(&Action::RunChecks) {
            observation.checks = Some(ChecksOutcome {
                results: vec![CheckResult {
                    name: "fuzz".to_owned(),
                    passed: !case.seed.is_multiple_of(3),
                    message: "scripted".to_owned(),
                }],
            });
        }
        if decision.needs_input() {
            decision = shiftgate::engine::step(plan, &state, &observation);
        }
        state = decision.state;
    }
}

fn simulate(policy: &RolloutPolicy, scenario: &Scenario, seed: u64) {
    let reference = PolicyRef {
        namespace: policy
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        name: policy.metadata.name.clone().unwrap_or_default(),
    };
    let Ok(mut simulation) =
        Simulation::new(reference, policy.spec.clone(), scenario.clone(), seed)
    else {
        return;
    };
    for _ in 0..MAX_TICKS {
        if !simulation.tick() {
            break;
        }
    }
    let report = simulation.report();
    let _ = shiftgate::sim::render::render_text(&report);
}
