//! Target `prometheus`: the classification of `/api/v1/query` answers (any status, any
//! body: API envelopes with every result type and odd values, HTML, truncated JSON,
//! bytes), then the judge on what it classified. What must hold: nothing panics, and a
//! number only comes out of an answer that holds exactly one finite number.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::metrics::prometheus::interpret;
use shiftgate::policy::parse::parse_str;

use super::mutate;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct PrometheusCase {
    pub status: u16,
    pub body: String,
    pub canary_weight: u8,
}

fn value_text() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0.0f64..1e6).prop_map(|f| json!(f.to_string())),
        1 => prop::sample::select(vec!["NaN", "+Inf", "-Inf", "1e309", "-0", "0x10", "", "abc", "1_000"]).prop_map(|s| json!(s)),
        1 => mutate::any_json(),
    ]
}

fn series() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map("[a-z_]{1,8}", "\\PC{0,8}", 0..4),
        any::<f64>(),
        value_text(),
    )
        .prop_map(|(labels, at, value)| json!({ "metric": labels, "value": [at, value] }))
}

fn envelope() -> impl Strategy<Value = Value> {
    let data = prop_oneof![
        3 => prop::collection::vec(series(), 0..4).prop_map(|s| json!({"resultType": "vector", "result": s})),
        2 => (any::<f64>(), value_text()).prop_map(|(t, v)| json!({"resultType": "scalar", "result": [t, v]})),
        1 => prop::collection::vec(series(), 0..3).prop_map(|s| json!({"resultType": "matrix", "result": s})),
        1 => "\\PC{0,10}".prop_map(|s| json!({"resultType": "string", "result": [1, s]})),
        1 => mutate::any_json(),
    ];
    (
        prop::sample::select(vec!["success", "error", "", "weird"]),
        data,
        prop::option::of(prop::sample::select(vec![
            "timeout",
            "bad_data",
            "execution",
            "unavailable",
            "internal",
            "canceled",
            "x",
        ])),
        prop::collection::vec("\\PC{0,10}", 0..2),
    )
        .prop_map(|(status, data, error_type, warnings)| {
            let mut envelope = json!({ "status": status, "data": data });
            if let Some(error_type) = error_type {
                envelope["errorType"] = json!(error_type);
                envelope["error"] = json!("something");
            }
            if !warnings.is_empty() {
                envelope["warnings"] = json!(warnings);
            }
            envelope
        })
}

pub fn case() -> impl Strategy<Value = PrometheusCase> {
    let body = prop_oneof![
        6 => envelope().prop_map(|e| e.to_string()),
        1 => (envelope(), any::<usize>()).prop_map(|(e, cut)| {
            let text = e.to_string();
            let mut cut = cut % (text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_owned()
        }),
        1 => Just("<html><body>Grafana login</body></html>".to_owned()),
        1 => "\\PC{0,60}",
        1 => ("[ -~]{1,8}", 1usize..20_000).prop_map(|(s, n)| s.repeat(n)),
    ];
    (
        prop_oneof![4 => Just(200u16), 1 => prop::sample::select(vec![204u16, 301, 400, 401, 403, 404, 422, 429, 500, 502, 503]), 1 => any::<u16>()],
        body,
        any::<u8>(),
    )
        .prop_map(|(status, body, canary_weight)| PrometheusCase {
            status,
            body,
            canary_weight,
        })
}

const POLICY: &str = r#"
apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: fuzz }
spec:
  revision: "1"
  router:
    service: { service: app, selectorKey: version, stableValue: v1, canaryValue: v2 }
  steps: [0, 100]
  analysis:
    minRequests: 10
    metrics:
      - { name: errors, query: 'sum(rate(x[1m]))', max: 0.01 }
      - { name: versus, query: 'sum(rate(x[1m]))', stableQuery: 'sum(rate(y[1m]))', compare: { maxRatio: 1.5 }, judge: threshold }
"#;

pub fn run(case: &PrometheusCase) {
    let sample = interpret(
        case.status,
        case.body.as_bytes(),
        "sum(rate(x[1m]))",
        "http://127.0.0.1:9",
    );
    if let Sample::Value(measured) = &sample {
        assert!(
            measured.value.is_finite(),
            "a value that is not finite came out of HTTP {}: {}",
            case.status,
            case.body
        );
    }
    if let Sample::Invalid { message } | Sample::Unreachable { message } = &sample {
        assert!(!message.is_empty());
    }
    let Ok(policies) = parse_str("fuzz.yaml", POLICY) else {
        panic!("the fuzz target's own policy is invalid");
    };
    let spec = &policies[0].policy.spec;
    let input = AnalysisInput {
        at: chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap_or_default(),
        canary_requests: sample.clone(),
        metrics: spec
            .analysis
            .metrics
            .iter()
            .map(|m| MetricObservation {
                name: m.name.clone(),
                canary: sample.clone(),
                stable: Some(sample.clone()),
            })
            .collect(),
    };
    let evaluation = shiftgate::analysis::judge(&spec.analysis, &input, case.canary_weight);
    let _ = evaluation.message.len();
}
