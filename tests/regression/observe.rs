//! Issue "operate" §5–6: metrics a Prometheus alert can be written on, and clean logs.

use std::process::{Command, Stdio};
use std::sync::Arc;

use shiftgate::metrics::PolicyRef;
use shiftgate::observe::http::{router, Health};
use shiftgate::observe::metrics::{Metrics, RolloutResult};
use shiftgate::policy::Phase;

use super::support;

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    }
}

fn exposition(metrics: &Metrics) -> String {
    metrics.encode().unwrap()
}

/// A counter created by its first event reads 1 at its first scrape, so `increase()`
/// sees no change and the first rollback after a start never alerted.
#[test]
fn counters_born_at_one_hide_the_first_rollback_from_increase() {
    let metrics = Metrics::new();
    let text = exposition(&metrics);
    for result in ["promoted", "rolled_back", "aborted", "held"] {
        let series = format!("shiftgate_rollouts_total{{result=\"{result}\"}} 0");
        assert!(text.contains(&series), "missing at start: {series}\n{text}");
    }
    assert!(
        text.contains(r#"shiftgate_analysis_evaluations_total{verdict="inconclusive"} 0"#),
        "{text}"
    );
    // A policy's own result series exist at 0 once the daemon has seen it.
    metrics.set_rollout(&policy(), Phase::Progressing, 1, 10);
    let text = exposition(&metrics);
    assert!(
        text.contains(
            r#"shiftgate_policy_rollouts_total{namespace="shop",name="checkout",result="rolled_back"} 0"#
        ),
        "{text}"
    );
}

/// `/metrics` always answered OpenMetrics, whose counter families are named without
/// `_total`: `promtool check metrics` (a text-format linter) exited 3 on them.
#[tokio::test]
async fn metrics_endpoint_always_answered_openmetrics_so_promtool_check_metrics_failed() {
    let metrics = Arc::new(Metrics::new());
    metrics.set_rollout(&policy(), Phase::Progressing, 1, 10);
    metrics.observe_reconcile(0.01);
    metrics.set_leader(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(metrics, Health::default());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let url = format!("http://{address}/metrics");
    for accept in [None, Some("text/plain;version=0.0.4;q=1,*/*;q=0.1")] {
        let mut request = client.get(&url);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        support::process::promtool_check_metrics(&body, &format!("Accept {accept:?}"));
    }
    // Prometheus asks for OpenMetrics first, and gets it.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let response = client
        .get(&url)
        .header("accept", prometheus_accept)
        .send()
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(response.text().await.unwrap().ends_with("# EOF\n"));
    server.abort();
}

/// No alert rules shipped. The plain rules file fires on the first rollback after a
/// daemon start, under `promtool test rules`, on series from a real registry.
#[test]
fn no_alert_rules_shipped_and_the_first_rollback_did_not_fire() {
    use support::scrapes::{promtool_test_rules, Scrapes};
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/prometheus/shiftgate-rules.yaml");
    assert!(rules.exists(), "{} does not exist", rules.display());
    let daemon = Metrics::new();
    daemon.set_leader(true);
    daemon.set_rollout(&policy(), Phase::Progressing, 1, 10);
    let mut scrapes = Scrapes::default();
    scrapes.scrape_times(2, &[("pod-a", &daemon)]);
    daemon.rollout_finished(&policy(), RolloutResult::RolledBack, None);
    scrapes.scrape_times(5, &[("pod-a", &daemon)]);
    let test = "      - eval_time: 4m\n        alertname: ShiftgateRolloutRolledBack\n        exp_alerts:\n          - exp_labels: { namespace: shop, name: checkout, severity: warning }\n            exp_annotations:\n              summary: Rollout shop/checkout was rolled back\n              description: \"shiftgate put every request of shop/checkout back on stable after a failed analysis. `kubectl shiftgate status checkout -n shop` says which metric failed.\"\n";
    let result = promtool_test_rules(&rules, &scrapes, test);
    assert!(result.passed, "{}", result.output);
}

/// No `shiftgate_build_info` and no process metrics (CPU, memory, fds, start time).
#[test]
fn no_build_info_or_process_metrics_were_exported() {
    let text = exposition(&Metrics::new());
    let build = format!(
        "shiftgate_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        shiftgate::build_info::VERSION,
        shiftgate::build_info::COMMIT
    );
    assert!(text.contains(&build), "{build} missing:\n{text}");
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
}

/// `shiftgate_rollouts_total{result}` said that a rollout rolled back, not which.
#[test]
fn rollout_results_carried_no_policy_name() {
    let metrics = Metrics::new();
    metrics.rollout_finished(&policy(), RolloutResult::RolledBack, Some(300.0));
    let text = exposition(&metrics);
    assert!(
        text.contains(
            r#"shiftgate_policy_rollouts_total{namespace="shop",name="checkout",result="rolled_back"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"shiftgate_rollout_duration_seconds_count{result="rolled_back"} 1"#),
        "{text}"
    );
}

/// A JSON value in which no object has the same key twice (jq and most log pipelines
/// keep only the last one, so a second `message` silently replaced the event name).
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

/// The JSON log of a transition held `message` twice (the event name, then the detail).
/// Scans every stderr line of a real `shiftgate run` (real Envoy and Prometheus) with
/// `--log-format json`: each is one JSON object with unique keys, the transitions keep
/// their event name, and the progress lines are JSON records too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_of_transitions_held_two_message_keys() {
    let stack = support::rollout::Stack::start().await;
    let policy = stack.write_policy(&support::rollout::PolicyOptions::default());
    let child = stack
        .command(&["--log-format", "json", "run", policy.to_str().unwrap()])
        .env("SHIFTGATE_LOG", "info")
        .spawn()
        .unwrap();
    let output = support::rollout::ChildGuard(Some(child)).finish().await;
    let stderr = support::rollout::stderr(&output);
    let mut transitions = 0;
    for line in stderr.lines() {
        if let Err(e) = serde_json::from_str::<UniqueKeys>(line) {
            panic!("not one JSON object with unique keys ({e}): {line}\n---\n{stderr}");
        }
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        if record["fields"]["message"] == "rollout transition" {
            assert!(record["fields"]["detail"].is_string(), "{line}");
            transitions += 1;
        }
    }
    assert!(transitions >= 2, "no transitions logged:\n{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// Text logs carried ANSI colour codes into pipes (and `kubectl logs`).
#[test]
fn text_logs_carried_ansi_codes_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("daemon")
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .env("SHIFTGATE_LOG", "trace")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TRACE"), "no log line to check:\n{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a pipe:\n{stderr:?}"
    );
}
