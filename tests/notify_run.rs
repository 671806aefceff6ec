//! `spec.notify` and `spec.grafana.annotations` in `shiftgate run` against a real Envoy,
//! a real Prometheus and the demo apps, with a receiver on 127.0.0.1 that records
//! every request: the documented notifications arrive in order with the documented
//! body, Grafana's annotation API contract holds, secrets come from the environment and
//! appear nowhere else, and a receiver that hangs does not delay a rollback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::receiver::{now, Receiver};
use support::rollout::{stderr, PolicyOptions, Stack};

const SLACK_PATH: &str = "/slack/T000-secret-path";
const TOKEN: &str = "notify-token-never-printed";
const GRAFANA_TOKEN: &str = "glsa_grafana-token-never-printed";
const FAILING_SECRET: &str = "failing-secret-path";

/// The top-level fields docs/notifications.md documents.
const FIELDS: [&str; 15] = [
    "apiVersion",
    "kind",
    "event",
    "namespace",
    "name",
    "revision",
    "phase",
    "step",
    "stepCount",
    "canaryWeight",
    "at",
    "reason",
    "message",
    "analysis",
    "grafana",
];

fn policy(
    stack: &Stack,
    receiver: std::net::SocketAddr,
    options: &PolicyOptions,
    notify: &str,
) -> std::path::PathBuf {
    let text = format!(
        "{}  grafana:\n    url: \"http://{receiver}/grafana\"\n    dashboard: shiftgate-rollout\n    annotations: {{ tokenEnv: GRAFANA_TOKEN, timeout: 2s, retries: 0 }}\n  notify:\n{notify}",
        stack.policy_text(options)
    );
    let path = stack.state_dir.path().join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_every_notification_in_order_with_the_documented_body() {
    let stack = Stack::start().await;
    stack.wait_until_scraped().await;
    let (addr, receiver) = Receiver::start().await;
    let path = policy(
        &stack,
        addr,
        &PolicyOptions::default(),
        &format!(
            "    - webhook: {{ url: \"http://{addr}/json\", timeout: 2s, headers: [{{ name: x-token, valueEnv: NOTIFY_TOKEN }}] }}\n    - webhook: {{ urlEnv: SLACK_URL, format: slack, on: [rolledBack, promoted] }}\n    - webhook: {{ url: \"http://{addr}/teams\", format: teams, on: [promoted] }}\n    - webhook: {{ urlEnv: FAILING_URL, on: [promoted], retries: 0 }}\n"
        ),
    );
    let output = stack
        .command(&["run", path.to_str().unwrap()])
        .env("NOTIFY_TOKEN", TOKEN)
        .env("SLACK_URL", format!("http://{addr}{SLACK_PATH}"))
        .env("GRAFANA_TOKEN", GRAFANA_TOKEN)
        .env(
            "FAILING_URL",
            format!("http://{addr}/fail/{FAILING_SECRET}"),
        )
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");

    // Every transition, in order, as JSON; `run` returned after they went out.
    let events = receiver.events("/json");
    assert_eq!(
        events,
        ["started", "stepAdvanced", "stepAdvanced", "promoted"],
        "{:#?}",
        receiver.calls()
    );
    for call in receiver.under("/json") {
        let body = call.body.as_object().unwrap();
        for key in body.keys() {
            assert!(FIELDS.contains(&key.as_str()), "undocumented field {key}");
        }
        assert_eq!(call.method, "POST");
        assert_eq!(body["apiVersion"], "shiftgate.dev/v1");
        assert_eq!(body["kind"], "RolloutNotification");
        assert_eq!(body["namespace"], "e2e");
        assert_eq!(body["name"], "checkout");
        assert_eq!(body["revision"], "v2");
        assert_eq!(body["stepCount"], 3);
        assert!(
            body["grafana"]
                .as_str()
                .unwrap()
                .contains("/grafana/d/shiftgate-rollout?var-namespace=e2e&var-name=checkout"),
            "{body:?}"
        );
        assert_eq!(call.token.as_deref(), Some(TOKEN));
    }
    let json = receiver.under("/json");
    assert_eq!(json[1].body["canaryWeight"], 50);
    // The step at 50% passed its analysis: the advance to 100% carries its numbers.
    assert_eq!(json[2].body["canaryWeight"], 100);
    assert_eq!(json[2].body["analysis"]["verdict"], "Pass");
    assert_eq!(
        json[2].body["analysis"]["metrics"][0]["limits"]["max"],
        0.05
    );
    assert_eq!(json[3].body["phase"], "Promoted");
    assert_eq!(json[3].body["canaryWeight"], 100);

    // Slack only hears of the promotion, through the URL from the environment.
    let slack = receiver.under("/slack");
    assert_eq!(slack.len(), 1, "{slack:#?}");
    assert_eq!(slack[0].path, SLACK_PATH);
    assert!(slack[0].body["text"]
        .as_str()
        .unwrap()
        .contains("e2e/checkout v2: promoted"));
    assert_eq!(slack[0].body["blocks"][0]["type"], "section");
    let teams = receiver.under("/teams");
    assert_eq!(teams.len(), 1);
    assert_eq!(teams[0].body["@type"], "MessageCard");

    // Grafana: a region per step (created, then ended with PATCH), the promotion a
    // point; Grafana's contract: path, bearer token, body fields.
    let grafana = receiver.under("/grafana");
    let requests: Vec<String> = grafana
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(
        requests,
        [
            "POST /grafana/api/annotations",
            "PATCH /grafana/api/annotations/1",
            "POST /grafana/api/annotations",
            "PATCH /grafana/api/annotations/2",
            "POST /grafana/api/annotations",
            "PATCH /grafana/api/annotations/3",
            "POST /grafana/api/annotations",
        ],
        "{grafana:#?}"
    );
    for call in &grafana {
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("Bearer {GRAFANA_TOKEN}").as_str())
        );
        let body = call.body.as_object().unwrap();
        if call.method == "PATCH" {
            assert_eq!(body.keys().collect::<Vec<_>>(), ["timeEnd"]);
            continue;
        }
        assert_eq!(body["dashboardUID"], "shiftgate-rollout");
        assert!(body["time"].as_i64().unwrap() > 1_600_000_000_000);
        assert_eq!(body["timeEnd"], body["time"]);
        assert_eq!(
            body["tags"],
            serde_json::json!(["shiftgate", "namespace:e2e", "name:checkout", "revision:v2"])
        );
        assert!(body["text"].as_str().unwrap().starts_with("v2 "));
    }
    // A region ends where the next one starts.
    assert_eq!(grafana[1].body["timeEnd"], grafana[2].body["time"]);
    assert!(grafana[6].body["text"]
        .as_str()
        .unwrap()
        .contains("promoted"));

    // A failed delivery is in the log, naming the target by its place, not its URL.
    assert_eq!(receiver.under("/fail").len(), 1);
    assert!(
        log.contains("spec.notify[3].webhook (URL kept secret): 500"),
        "{log}"
    );

    // Secrets: nowhere in the log or the state.
    let state = std::fs::read_to_string(stack.state_file()).unwrap();
    for secret in [TOKEN, GRAFANA_TOKEN, "T000-secret-path", FAILING_SECRET] {
        assert!(
            !log.contains(secret) && !state.contains(secret),
            "{secret} leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_delay_the_rollback() {
    let stack = Stack::start().await;
    stack.wait_until_scraped().await;
    stack.set_canary_faults(Some(0.5), None).await;
    let (addr, receiver) = Receiver::start().await;
    // Every request to it hangs for its whole 30 s timeout: had a tick waited for one,
    // the rollback would come 30 s late.
    let path = policy(
        &stack,
        addr,
        &PolicyOptions {
            steps: "[50, 100]".to_owned(),
            ..PolicyOptions::default()
        },
        &format!(
            "    - webhook: {{ url: \"http://{addr}/hang\", timeout: 30s, retries: 0 }}\n    - webhook: {{ url: \"http://{addr}/ok\" }}\n"
        ),
    );
    let started = now();
    let _run = stack.spawn_run(&path);
    let state = stack
        .wait_for_state("a rollback", |s| s["status"]["phase"] == "RolledBack")
        .await;
    let took = now().duration_since(started);
    assert!(took < Duration::from_secs(25), "rolled back after {took:?}");
    assert_eq!(stack.served().await.canary_weight, 0, "{state}");
    // The other target heard of the rollback, with its cause, while the hanging one
    // still holds its first notification.
    receiver
        .wait_for(
            "the rollback at the other target",
            Duration::from_secs(10),
            |r| r.events("/ok").last().is_some_and(|e| e == "rolledBack"),
        )
        .await;
    let rollback = receiver.under("/ok").last().unwrap().body.clone();
    assert_eq!(rollback["canaryWeight"], 0);
    assert_eq!(rollback["analysis"]["metrics"][0]["name"], "error-rate");
    assert!(
        rollback["analysis"]["metrics"][0]["canary"]
            .as_f64()
            .unwrap()
            > 0.05,
        "{rollback}"
    );
    let hang = receiver.under("/hang");
    assert_eq!(hang.len(), 1, "{hang:#?}");
    assert_eq!(hang[0].body["event"], "started");
}
