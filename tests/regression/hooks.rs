//! Issue "lifecycle" §6: HTTP checks could not send a request body, and could only
//! look for a substring in the answer; a policy's hooks are validated with their
//! location.

use axum::http::StatusCode;
use axum::routing::post;
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::parse::parse_str;
use shiftgate::policy::RolloutSpec;
use shiftgate::runtime::checks::CheckRunner;
use shiftgate::runtime::checks_http::HttpChecks;

/// `/echo-status` answers `{"status": <the request body's "want">, "note": "ok"}`, and
/// 400 without a JSON body.
async fn server() -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/echo-status",
        post(|body: String| async move {
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(v) => (
                    StatusCode::OK,
                    serde_json::json!({"status": v["want"], "note": "ok"}).to_string(),
                ),
                Err(_) => (StatusCode::BAD_REQUEST, "a JSON body is needed".to_owned()),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn spec(check: &str) -> RolloutSpec {
    let text = format!(
        r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: {{ name: checkout, namespace: shop }}
spec:
  revision: v2
  router:
    istio: {{ virtualService: checkout, stable: {{ host: a }}, canary: {{ host: b }} }}
  steps: [0, 100]
  checks:
    - name: smoke
      http: {check}
  analysis:
    prometheus: {{ address: "http://127.0.0.1:9090" }}
    metrics: [{{ name: error-rate, template: istio-error-rate, max: 0.01 }}]
"#
    );
    match parse_str("policy.yaml", &text) {
        Ok(mut loaded) => loaded.remove(0).policy.spec,
        Err(diagnostics) => panic!("{diagnostics:#?}"),
    }
}

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".into(),
        name: "checkout".into(),
    }
}

#[tokio::test]
async fn http_check_could_not_send_a_body() {
    let addr = server().await;
    let spec = spec(&format!(
        r#"{{ url: "http://{addr}/echo-status", method: POST, headers: {{ content-type: application/json }}, body: '{{"want": "ok"}}', expectBody: '"status":"ok"', attempts: 1 }}"#
    ));
    let outcome = HttpChecks::new().unwrap().run(&policy(), &spec).await;
    assert!(outcome.passed(), "{:?}", outcome.results);
}

#[tokio::test]
async fn http_check_body_matching_was_only_a_substring() {
    let addr = server().await;
    // The answer contains "ok" (in `note`), but `status` is "degraded": a substring
    // match passed it; the JSONPath expectation does not.
    let spec = spec(&format!(
        r#"{{ url: "http://{addr}/echo-status", method: POST, body: '{{"want": "degraded"}}', expectJson: [{{ path: "$.status", equals: ok }}], attempts: 1 }}"#
    ));
    let outcome = HttpChecks::new().unwrap().run(&policy(), &spec).await;
    let result = &outcome.results[0];
    assert!(!result.passed, "{result:?}");
    assert!(
        result
            .message
            .contains("expectJson[0]: `$.status` is \"degraded\", expected \"ok\""),
        "{}",
        result.message
    );
}
