//! The real engine and reconciler against scripted worlds: each test is one story a
//! user would tell (good release, regression, outage, manual gate, faults, restarts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shiftgate::metrics::PolicyRef;
use shiftgate::policy::RolloutSpec;
use shiftgate::sim::{Outcome, Scenario, SimReport, Simulation};

const POLICY: &str = r#"
revision: v2
router:
  istio:
    virtualService: checkout
    stable: { host: checkout.prod.svc.cluster.local }
    canary: { host: checkout.stage.svc.cluster.local }
steps: [0, 30, 60, 100]
testRoute: { cookie: "test=true" }
checks:
  - http: { url: "http://gateway/ready" }
analysis:
  interval: 30s
  minRequests: 100
  metrics:
    - { name: error-rate, template: istio-error-rate, max: 0.01 }
    - { name: p99-ms, template: istio-latency-p99, max: 500 }
    - { name: errors-vs-stable, template: istio-error-rate, compare: { maxIncrease: 0.005 }, judge: threshold }
  failureLimit: 0
  inconclusiveLimit: 2
  onInconclusive: pause
"#;

fn spec(extra: &str) -> RolloutSpec {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(POLICY).unwrap();
    if !extra.is_empty() {
        let patch: serde_yaml_ng::Value = serde_yaml_ng::from_str(extra).unwrap();
        if let (Some(map), serde_yaml_ng::Value::Mapping(patch)) = (value.as_mapping_mut(), patch) {
            for (k, v) in patch {
                map.insert(k, v);
            }
        }
    }
    serde_yaml_ng::from_value(value).unwrap()
}

fn scenario(yaml: &str) -> Scenario {
    let base = "kind: Scenario\nmetadata: { name: test }\n";
    Scenario::parse(&format!("{base}{yaml}"), "test.yaml").unwrap()
}

const HEALTHY: &str = r#"
traffic: { requestsPerSecond: 50, jitter: 0.05 }
metrics:
  error-rate: { canary: [{ value: 0.002 }], jitter: 0.1 }
  p99-ms: { canary: [{ value: 180 }], jitter: 0.1 }
  errors-vs-stable: { canary: [{ value: 0.002 }], stable: [{ value: 0.002 }] }
"#;

/// HEALTHY with another error-rate script (a key written twice is an error in YAML).
fn healthy_with_error_rate(canary: &str) -> String {
    HEALTHY.replace(
        "error-rate: { canary: [{ value: 0.002 }], jitter: 0.1 }",
        &format!("error-rate: {{ canary: {canary} }}"),
    )
}

fn run(spec: &RolloutSpec, scenario: Scenario, seed: u64) -> SimReport {
    let policy = PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    };
    Simulation::new(policy, spec.clone(), scenario, seed)
        .unwrap()
        .run()
}

fn weights_written(report: &SimReport) -> Vec<u8> {
    report
        .timeline
        .iter()
        .flat_map(|e| e.writes.iter().map(|w| w.canary_weight))
        .collect()
}

#[test]
fn good_release_is_promoted_step_by_step() {
    let report = run(&spec(""), scenario(HEALTHY), 1);
    let text = shiftgate::sim::render::render_text(&report);
    assert_eq!(report.outcome, Outcome::Promoted, "{text}");
    assert_eq!(
        weights_written(&report),
        vec![0, 30, 60, 100, 100],
        "{text}"
    );
    assert!(!report.status.test_route, "test route removed: {text}");
}

#[test]
fn error_regression_is_rolled_back_in_one_write() {
    let s = scenario(&healthy_with_error_rate(
        "[{ value: 0.002 }, { from: 1m30s, value: 0.05 }]",
    ));
    let report = run(&spec(""), s, 1);
    let text = shiftgate::sim::render::render_text(&report);
    assert_eq!(report.outcome, Outcome::RolledBack, "{text}");
    let last = report
        .timeline
        .iter()
        .rev()
        .find(|e| !e.writes.is_empty())
        .unwrap();
    assert_eq!(last.writes.len(), 1, "{text}");
    assert_eq!(last.writes[0].canary_weight, 0);
    assert!(!last.writes[0].test_route);
    assert!(report.status.message.unwrap().contains("0.05"), "{text}");
}

fn text(report: &SimReport) -> String {
    shiftgate::sim::render::render_text(report)
}

#[test]
fn a_manual_gate_waits_for_promote() {
    let gated = spec("steps: [0, 30, { weight: 60, pause: true }, 100]\n");
    let report = run(&gated, scenario(HEALTHY), 1);
    assert_eq!(report.outcome, Outcome::Paused, "{}", text(&report));
    assert_eq!(report.status.canary_weight, 60);
    let s = scenario(&format!(
        "{HEALTHY}commands: [{{ at: 5m, command: promote }}]\n"
    ));
    let report = run(&gated, s, 1);
    assert_eq!(report.outcome, Outcome::Promoted, "{}", text(&report));
    assert!(report.elapsed >= shiftgate::policy::Duration::from_secs(300));
}

#[test]
fn a_prometheus_outage_is_inconclusive_never_pass_never_fail() {
    let s = scenario(&format!(
        "{HEALTHY}outages: [{{ from: 0s, kind: timeout }}]\n"
    ));
    let report = run(&spec(""), s, 1);
    assert_eq!(report.outcome, Outcome::Paused, "{}", text(&report));
    let verdicts: Vec<_> = report
        .timeline
        .iter()
        .filter_map(|e| e.analysis.as_ref().map(|a| a.verdict))
        .collect();
    assert!(!verdicts.is_empty());
    assert!(verdicts
        .iter()
        .all(|v| *v == shiftgate::policy::status::VerdictKind::Inconclusive));
    assert_eq!(report.status.canary_weight, 30, "no step advanced");
    assert!(report
        .status
        .message
        .as_deref()
        .unwrap()
        .contains("timed out"));
}

#[test]
fn too_little_traffic_is_inconclusive() {
    let s = scenario(&HEALTHY.replace("requestsPerSecond: 50", "requestsPerSecond: 1"));
    let report = run(&spec(""), s, 1);
    assert_eq!(report.outcome, Outcome::Paused, "{}", text(&report));
    assert!(report
        .status
        .message
        .unwrap()
        .contains("too few canary requests"));
}

#[test]
fn a_rollback_completes_through_router_outages() {
    let s = scenario(&format!(
        "{}routerFaults: [{{ from: 30s, until: 3m, kind: unavailable }}]\n",
        healthy_with_error_rate("[{ value: 0.2 }]")
    ));
    let report = run(&spec(""), s, 1);
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", text(&report));
    assert!(
        report.elapsed >= shiftgate::policy::Duration::from_secs(180),
        "{}",
        text(&report)
    );
}

#[test]
fn a_write_whose_confirmation_was_lost_is_adopted_not_rewritten() {
    let s = scenario(&format!(
        "{HEALTHY}routerFaults: [{{ from: 25s, until: 35s, kind: lostConfirmation }}]\n"
    ));
    let policy = PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    };
    let mut sim = Simulation::new(policy, spec(""), s, 1).unwrap();
    while sim.tick() {}
    let report = sim.report();
    assert_eq!(report.outcome, Outcome::Promoted, "{}", text(&report));
    // 0, 30, 60 (landed, unconfirmed, adopted), 100, promote: five writes, no repeat.
    assert_eq!(sim.router().writes(), 5, "{}", text(&report));
    assert!(!report
        .timeline
        .iter()
        .flat_map(|e| &e.transitions)
        .any(|t| t.kind == shiftgate::engine::TransitionKind::Drift));
}

#[test]
fn drift_pauses_and_resume_writes_the_weights_back() {
    let s = scenario(&format!(
        "{HEALTHY}drift: [{{ at: 40s, canaryWeight: 90, testRoute: true }}]\ncommands: [{{ at: 2m, command: resume }}]\n"
    ));
    let report = run(&spec(""), s, 1);
    let reasons: Vec<_> = report
        .timeline
        .iter()
        .flat_map(|e| e.transitions.iter().map(|t| t.reason.clone()))
        .collect();
    assert!(
        reasons.contains(&"DriftDetected".to_owned()),
        "{}",
        text(&report)
    );
    assert!(reasons.contains(&"Resumed".to_owned()), "{}", text(&report));
    assert_eq!(report.outcome, Outcome::Promoted, "{}", text(&report));
}

#[test]
fn abort_puts_every_request_back_on_stable() {
    let s = scenario(&format!(
        "{HEALTHY}commands: [{{ at: 45s, command: abort }}]\n"
    ));
    let report = run(&spec(""), s, 1);
    assert_eq!(report.outcome, Outcome::Aborted, "{}", text(&report));
    assert_eq!(report.status.canary_weight, 0);
    assert!(!report.status.test_route);
}

#[test]
fn hold_on_failure_stays_at_the_weight() {
    let s = scenario(&healthy_with_error_rate(
        "[{ value: 0.002 }, { from: 40s, value: 0.05 }]",
    ));
    let report = run(&spec("onFailure: hold\n"), s, 1);
    assert_eq!(report.outcome, Outcome::Held, "{}", text(&report));
    assert_eq!(report.status.canary_weight, 60);
}

#[test]
fn restarts_at_every_tick_change_nothing() {
    let straight = run(&spec(""), scenario(HEALTHY), 3);
    let policy = PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    };
    let mut sim = Simulation::new(policy, spec(""), scenario(HEALTHY), 3).unwrap();
    while sim.tick() {
        sim.restart();
    }
    assert_eq!(sim.report(), straight);
}
