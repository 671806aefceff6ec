//! The wire form of a RolloutPolicy is pinned: a policy with every section of the spec
//! and of the status set reads and writes back unchanged, whatever the in-memory types
//! (boxed sections, interned reasons) look like.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use super::status::{HistoryEntry, RolloutStatus};
use super::RolloutPolicy;

fn secret(name: &str) -> Value {
    json!({ "name": name, "key": "token" })
}

fn spec() -> Value {
    let destination =
        |host: &str, subset: &str| json!({ "host": host, "subset": subset, "port": 8080 });
    json!({
        "revision": "v2",
        "router": {
            "istio": {
                "virtualService": "shop/web",
                "routes": ["primary", "api"],
                "stable": destination("web", "v1"),
                "canary": destination("web", "v2"),
                "colors": { "blue": destination("web", "blue"), "green": { "host": "web-green" } },
                "apiVersion": "v1beta1"
            },
            "service": {
                "service": "web",
                "selectorKey": "version",
                "stableValue": "blue",
                "canaryValue": "green",
                "colors": { "blue": "b", "green": "g" }
            },
            "envoy": {
                "routesFile": "/etc/envoy/routes.yaml",
                "adminAddress": "127.0.0.1:9901",
                "routeConfigName": "local",
                "domains": ["*", "web"],
                "stableCluster": "web-v1",
                "canaryCluster": "web-v2",
                "colors": { "blue": "web-blue", "green": "web-green" }
            }
        },
        "canaryColor": "green",
        // Written in the form the types write (a bare `0` reads as `{weight: 0}`).
        "steps": [{ "weight": 0 }, { "weight": 30, "hold": "5m" }, { "weight": 60, "pause": true }, { "weight": 100 }],
        "testRoute": {
            "cookie": "canary=always",
            "header": { "name": "x-version", "exact": "v2", "regex": "v2.*" }
        },
        "checks": [{
            "name": "ready",
            "http": {
                "url": "http://web-canary/ready",
                "method": "POST",
                "headers": { "cookie": "canary=always" },
                "expectStatus": 204,
                "body": "{}",
                "expectBody": "ok",
                "expectJson": [{ "path": "$.status", "equals": "up" }, { "path": "$.ok" }],
                "timeout": "3s",
                "attempts": 2
            }
        }],
        "analysis": {
            "interval": "1m",
            "window": "2m",
            "prometheus": {
                "address": "http://prometheus:9090",
                "provider": "main",
                "timeout": "10s",
                "auth": {
                    "bearerTokenFile": "/var/run/token",
                    "bearerTokenEnv": "PROM_TOKEN",
                    "bearerTokenSecretRef": secret("prom"),
                    "basic": {
                        "username": "shiftgate",
                        "passwordFile": "/var/run/password",
                        "passwordEnv": "PROM_PASSWORD",
                        "passwordSecretRef": secret("prom-basic")
                    }
                },
                "caFile": "/etc/ca.pem",
                "caSecretRef": secret("prom-ca")
            },
            "minRequests": 100,
            "metrics": [
                {
                    "name": "error-rate",
                    "template": "istio-error-rate",
                    "query": "sum(rate(errors[{{ interval }}]))",
                    "stableQuery": "sum(rate(stable_errors[{{ interval }}]))",
                    "min": 0.0,
                    "max": 0.01,
                    "compare": { "maxIncrease": 0.005, "maxRatio": 1.5 },
                    "judge": { "sequential": { "alpha": 0.05, "tolerance": 0.1 } },
                    "counts": { "requests": "r", "errors": "e", "buckets": "b" }
                },
                {
                    "name": "latency",
                    "query": "q",
                    "compare": { "maxRatio": 1.2 },
                    "judge": { "mannWhitney": {
                        "confidence": 0.9, "tolerance": 0.2, "allowedIncrease": 1.1,
                        "allowedDecrease": 0.9, "direction": "either", "pass": 90.0, "marginal": 70.0
                    } }
                },
                { "name": "p99", "query": "q", "compare": { "maxRatio": 1.2 }, "judge": "threshold" }
            ],
            "failureLimit": 2,
            "inconclusiveLimit": 3,
            "onInconclusive": "pause",
            "advanceEarly": true,
            "vars": { "service": "web" },
            "targetLabels": {
                "stable": { "destination_workload": "web-blue" },
                "canary": { "destination_workload": "web-green" }
            },
            "requests": "sum(increase(requests{ {{ target.labels }} }[{{ interval }}]))",
            "judgeTestRoute": true
        },
        "windows": [{ "kind": "allow", "schedule": "0 9 * * 1-5", "duration": "8h", "timeZone": "Europe/Paris" }],
        "onFailure": "hold",
        "onDrift": "reassert",
        "grafana": {
            "url": "https://grafana.example",
            "dashboard": "web",
            "annotations": { "tokenSecretRef": secret("grafana"), "tokenEnv": "GRAFANA_TOKEN", "timeout": "4s", "retries": 1 }
        },
        "notify": [{ "webhook": {
            "url": "https://hooks.example/notify",
            "urlEnv": "HOOK_URL",
            "urlSecretRef": secret("hook"),
            "format": "slack",
            "on": ["started", "rolledBack"],
            "timeout": "2s",
            "retries": 4,
            "backoff": "3s",
            "headers": [{ "name": "authorization", "value": "v", "valueEnv": "E", "valueSecretRef": secret("h") }]
        } }],
        "hooks": [{
            "name": "gate",
            "on": ["preRollout", "confirmPromotion"],
            "url": "https://hooks.example/gate",
            "timeout": "7s",
            "retries": 3,
            "backoff": "2s",
            "headers": [{ "name": "x-team", "value": "web" }]
        }],
        "workloads": {
            "stable": "web-blue",
            "canary": "web-green",
            "colors": { "blue": "web-blue", "green": "web-green" },
            "revisionFrom": "canaryDeployment",
            "scaleDown": { "after": "10m" }
        }
    })
}

fn history_entry(at: &str, reason: &str, message: &str) -> Value {
    json!({ "at": at, "phase": "Progressing", "step": 1, "canaryWeight": 30, "reason": reason, "message": message })
}

fn status() -> Value {
    let at = "2026-01-05T10:00:00Z";
    let error_rate =
        super::status::JudgeState::ErrorRate(crate::analysis::sequential::RatioEvidence::new(1.0));
    json!({
        "observedGeneration": 3,
        "revision": "v2",
        "phase": "Paused",
        "step": 1,
        "currentStep": "2/4",
        "canaryWeight": 30,
        "testRoute": true,
        "reason": "PausedByOperator",
        "message": "paused by an operator",
        "conditions": [{
            "type": "Progressing", "status": "Unknown", "reason": "PausedByOperator",
            "message": "paused by an operator", "observedGeneration": 3, "lastTransitionTime": at
        }],
        "target": { "canaryWeight": 60, "testRoute": true, "purpose": "Step" },
        "unconfirmedWrite": { "previousCanaryWeight": 0, "previousTestRoute": false },
        "pauseReason": "Operator",
        "resumePhase": "Progressing",
        "startedAt": at,
        "stableColor": "blue",
        "canaryColor": "green",
        "liveColor": "blue",
        "promotedAt": at,
        "stepStartedAt": "2026-01-05T10:00:10.037123457Z",
        "lastEvaluationAt": at,
        "checksPassed": true,
        "consecutiveFailures": 1,
        "consecutiveInconclusive": 2,
        "lastAnalysis": {
            "at": at, "verdict": "Pass", "reason": "AnalysisPassed", "message": "all passed",
            "canaryRequests": 1234.0,
            "metrics": [{
                "name": "error-rate", "canary": 0.001, "stable": 0.002, "verdict": "Pass",
                "reason": "AnalysisPassed", "message": "0.001 ≤ max 0.01", "evidence": 0.25
            }]
        },
        "evidence": {
            "countedUntil": at,
            "metrics": [
                { "name": "error-rate", "state": serde_json::to_value(error_rate).unwrap() },
                { "name": "latency", "state": { "mannWhitney": { "canary": [1.5, 2.0], "stable": [1.0, 1.25] } } }
            ]
        },
        "lastChecks": [{ "name": "ready", "passed": true, "message": "POST http://web-canary/ready: 204" }],
        "lastHooks": [{
            "hook": "gate", "phase": "preRollout", "passed": false, "status": 503, "attempts": 3,
            "message": "POST https://hooks.example/gate: 503 (after 3 attempts)", "step": 0, "at": at
        }],
        "pendingHooks": ["postRollout", "rollback"],
        "history": [
            history_entry(at, "StepAdvanced", "step 2/4 (30%) from 0%: analysis passed"),
            history_entry("2026-01-05T10:00:10.037123457Z", "AReasonWrittenBySomeoneElse", ""),
            history_entry(at, "", "an empty reason stays empty"),
        ],
        "lastCommandId": "7",
        "workloads": {
            "canaryImages": "web:1.4.2",
            "scaleDownAt": at,
            "scaledDown": { "deployment": "web-blue", "replicas": 3, "at": at, "confirmed": true },
            "idleBaseline": { "color": "green", "revision": "web:1.4.1@abc" }
        }
    })
}

fn policy() -> Value {
    json!({
        "apiVersion": "shiftgate.dev/v1alpha1",
        "kind": "RolloutPolicy",
        "metadata": { "name": "web", "namespace": "shop" },
        "spec": spec(),
        "status": status()
    })
}

#[test]
fn a_policy_with_every_section_set_reads_and_writes_back_unchanged() {
    let written = policy();
    let read: RolloutPolicy = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(serde_json::to_value(&read).unwrap(), written);
    // The same from text, where serde_json hands strings over borrowed.
    let from_text: RolloutPolicy = serde_json::from_str(&written.to_string()).unwrap();
    assert_eq!(from_text.spec, read.spec);
    assert_eq!(from_text.status, read.status);
    // Every optional section was read (nothing fell back to a default).
    let status = read.status.as_ref().unwrap();
    assert!(read.spec.router.istio.is_some() && read.spec.router.service.is_some());
    assert!(read.spec.router.envoy.is_some() && read.spec.test_route.is_some());
    assert!(read.spec.grafana.is_some() && read.spec.workloads.is_some());
    assert!(read.spec.analysis.prometheus.is_some() && read.spec.analysis.target_labels.is_some());
    assert!(
        read.spec.analysis.metrics[0].judge.is_some()
            && read.spec.analysis.metrics[0].counts.is_some()
    );
    assert!(status.workloads.is_some() && status.evidence.is_some());
    assert_eq!(status.history[1].reason, "AReasonWrittenBySomeoneElse");
}

/// What the memory of the daemon's store is made of (docs/benchmarks.md, "Memory per
/// rollout"): the spec's rarely set sections are boxed, so an unset one costs 8 bytes.
#[test]
fn the_typed_policy_stays_small_inline() {
    assert!(std::mem::size_of::<super::RolloutSpec>() <= 400);
    assert!(std::mem::size_of::<RolloutStatus>() <= 560);
    assert!(std::mem::size_of::<HistoryEntry>() <= 56);
}
