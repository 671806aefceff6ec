//! The real engine and reconciler against scripted worlds: each test is one story a
//! user would tell (good release, regression, outage, manual gate, faults, restarts).

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
    - { name: errors-vs-stable, template: istio-error-rate, compare: { maxIncrease: 0.005 } }
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
    let s = scenario(&format!(
        "{HEALTHY}\n  error-rate: {{ canary: [{{ value: 0.002 }}, {{ from: 1m30s, value: 0.05 }}] }}\n"
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

#[test]
#[ignore = "prints a timeline for eyeballing"]
fn show_timeline() {
    let report = run(&spec(""), scenario(HEALTHY), 1);
    println!("{}", shiftgate::sim::render::render_text(&report));
}
