//! The Prometheus metric source against a real Prometheus scraping a test exporter:
//! every answer shape maps to its own `Sample` kind, built-ins compute the expected
//! ratios and counts, and hostile label values round-trip without injecting PromQL.

mod support;

use std::time::Duration;

use shiftgate::analysis::sample::{AnalysisInput, Sample};
use shiftgate::metrics::prometheus::PrometheusSource;
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{PrometheusSpec, RolloutSpec, Timestamp};
use support::exporter::Exporter;
use support::prometheus::{Prometheus, ScrapeTarget};

const DATA_TIMEOUT: Duration = Duration::from_secs(45);

/// A label value built to break out of a string literal, a selector and a template.
const HOSTILE: &str = "a\"b\\c} or vector(1) {{ vars.x }} .*|\nnew'`";

/// The test stands in for the runtime's clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    chrono::Utc::now()
}

fn exposition_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Istio- and Envoy-shaped counters growing by a fixed amount per scrape, plus fixed
/// gauges for the result-shape cases.
fn exposition(n: u64) -> String {
    let n = n as f64;
    let canary = r#"reporter="destination",destination_service="checkout.stage.svc.cluster.local",destination_version="v2""#;
    let stable = r#"reporter="destination",destination_service="checkout.prod.svc.cluster.local",destination_version="v1""#;
    // The source-side report of the same traffic must not be counted.
    let source_side = r#"reporter="source",destination_service="checkout.stage.svc.cluster.local",destination_version="v2""#;
    let hostile = exposition_escape(HOSTILE);
    format!(
        r#"# TYPE istio_requests_total counter
istio_requests_total{{{canary},response_code="200"}} {c_ok}
istio_requests_total{{{canary},response_code="503"}} {c_err}
istio_requests_total{{{stable},response_code="200"}} {s_ok}
istio_requests_total{{{stable},response_code="500"}} {s_err}
istio_requests_total{{{source_side},response_code="503"}} {src_err}
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{{envoy_cluster_name="canary"}} {e_total}
envoy_cluster_upstream_rq_total{{envoy_cluster_name="stable"}} {e_total}
# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{{envoy_cluster_name="canary",envoy_response_code_class="2"}} {e_ok}
envoy_cluster_upstream_rq_xx{{envoy_cluster_name="canary",envoy_response_code_class="5"}} {e_err}
envoy_cluster_upstream_rq_xx{{envoy_cluster_name="stable",envoy_response_code_class="2"}} {e_total}
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name="canary",le="25"}} {b25}
envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name="canary",le="50"}} {e_total}
envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name="canary",le="+Inf"}} {e_total}
envoy_cluster_upstream_rq_time_sum{{envoy_cluster_name="canary"}} {e_sum}
envoy_cluster_upstream_rq_time_count{{envoy_cluster_name="canary"}} {e_total}
# TYPE fixed_value gauge
fixed_value 42
# TYPE not_a_number gauge
not_a_number NaN
# TYPE infinite gauge
infinite +Inf
# TYPE per_pod gauge
per_pod{{pod="a"}} 1
per_pod{{pod="b"}} 2
# TYPE hostile gauge
hostile{{label="{hostile}"}} 1
hostile{{label="decoy"}} 2
hostile{{label="a"}} 3
"#,
        c_ok = 95.0 * n,
        c_err = 5.0 * n,
        s_ok = 99.0 * n,
        s_err = 1.0 * n,
        src_err = 50.0 * n,
        e_total = 100.0 * n,
        e_ok = 90.0 * n,
        e_err = 10.0 * n,
        b25 = 90.0 * n,
        e_sum = 1500.0 * n,
    )
}

struct World {
    // Dropped in reverse order: Prometheus stops before the exporter.
    _exporter: Exporter,
    prometheus: Prometheus,
}

async fn world() -> World {
    let exporter = Exporter::start(exposition).await;
    let prometheus = Prometheus::start_scraping(vec![ScrapeTarget::new(
        "exporter",
        &exporter.address(),
        "/metrics",
    )])
    .await;
    World {
        _exporter: exporter,
        prometheus,
    }
}

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    }
}

fn prometheus_spec(address: &str, timeout: &str) -> PrometheusSpec {
    serde_yaml_ng::from_str(&format!("{{address: '{address}', timeout: {timeout}}}"))
        .unwrap_or_else(|e| panic!("bad prometheus spec: {e}"))
}

/// A policy on `router` (YAML) judging `metrics` (YAML list) with a 5s window.
fn policy_spec(address: &str, router: &str, metrics: &str, vars: &str) -> RolloutSpec {
    let yaml = format!(
        r#"
revision: v2
router: {router}
steps: [0, 100]
analysis:
  interval: 5s
  prometheus: {{ address: "{address}", timeout: 5s }}
  vars: {vars}
  metrics: {metrics}
"#
    );
    serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("bad policy: {e}\n{yaml}"))
}

const ISTIO_SUBSETS: &str = r#"{ istio: { virtualService: checkout, stable: { host: checkout.prod.svc.cluster.local, subset: v1 }, canary: { host: checkout.stage.svc.cluster.local, subset: v2 } } }"#;
const ENVOY: &str = r#"{ envoy: { routesFile: /tmp/routes.yaml, adminAddress: "127.0.0.1:9901", stableCluster: stable, canaryCluster: canary } }"#;

/// Observes until the canary sample of the first metric (and the request count) hold a
/// value, i.e. until Prometheus has scraped enough for the window.
async fn observe_until_measured(source: &PrometheusSource, spec: &RolloutSpec) -> AnalysisInput {
    let deadline = tokio::time::Instant::now() + DATA_TIMEOUT;
    loop {
        let input = source.observe(&policy(), spec, now(), None).await;
        let measured = input.metrics.iter().all(|m| {
            matches!(m.canary, Sample::Value(_))
                && m.stable
                    .as_ref()
                    .is_none_or(|s| matches!(s, Sample::Value(_)))
        }) && matches!(input.canary_requests, Sample::Value(_));
        if measured {
            return input;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("no values within {DATA_TIMEOUT:?}: {input:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn value(sample: &Sample) -> f64 {
    sample
        .measured()
        .map(|m| m.value)
        .unwrap_or_else(|| panic!("not a value: {sample:?}"))
}

/// Waits until the exporter's series are in Prometheus.
async fn scraped(prometheus: &Prometheus) {
    prometheus
        .wait_for("fixed_value", DATA_TIMEOUT, |r| {
            r.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
}

/// Waits until the series have existed for longer than the 5s analysis window, so
/// `increase()` and `rate()` see a full window (a series starting inside the window is
/// extrapolated less, which would make the counts depend on timing).
async fn window_full(prometheus: &Prometheus) {
    prometheus
        .wait_for("count_over_time(fixed_value[10s])", DATA_TIMEOUT, |r| {
            r[0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|samples| samples >= 8.0)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_shapes_map_to_their_own_sample_kinds() {
    let world = world().await;
    scraped(&world.prometheus).await;
    let source = PrometheusSource::new(None);
    let connection = source
        .connect(Some(&prometheus_spec(&world.prometheus.url(), "5s")))
        .unwrap_or_else(|e| panic!("{e}"));
    let at = now();

    assert_eq!(value(&connection.query("fixed_value", at).await), 42.0);
    assert_eq!(
        value(&connection.query("scalar(fixed_value) * 2", at).await),
        84.0
    );
    assert_eq!(connection.query("no_such_metric", at).await, Sample::NoData);
    assert_eq!(
        connection.query("not_a_number", at).await,
        Sample::NotANumber
    );
    assert_eq!(connection.query("infinite", at).await, Sample::NotANumber);
    assert_eq!(connection.query("-infinite", at).await, Sample::NotANumber);

    match connection.query("per_pod", at).await {
        Sample::Invalid { message } => {
            assert!(message.contains(r#"pod="a""#), "{message}");
            assert!(message.contains(r#"pod="b""#), "{message}");
            assert!(message.contains("sum()"), "{message}");
            assert!(message.contains("`per_pod`"), "{message}");
        }
        other => panic!("several series gave {other:?}"),
    }

    let broken = "sum(rate(fixed_value[5m])";
    match connection.query(broken, at).await {
        Sample::Invalid { message } => {
            assert!(message.contains(broken), "{message}");
            assert!(message.contains("bad_data"), "{message}");
        }
        other => panic!("a syntax error gave {other:?}"),
    }

    match connection.query("fixed_value[1m]", at).await {
        Sample::Invalid { message } => assert!(message.contains("range vector"), "{message}"),
        other => panic!("a range vector gave {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_error_rate_compares_canary_and_stable_with_counts() {
    let world = world().await;
    let metrics = r#"
    - { name: error-rate, template: istio-error-rate, max: 0.01, compare: { maxIncrease: 0.01 }, judge: threshold }
    - { name: rate, template: istio-request-rate, min: 1 }"#;
    let spec = policy_spec(&world.prometheus.url(), ISTIO_SUBSETS, metrics, "{}");
    let source = PrometheusSource::new(None);
    window_full(&world.prometheus).await;
    let input = observe_until_measured(&source, &spec).await;

    let error_rate = &input.metrics[0];
    assert_eq!(error_rate.name, "error-rate");
    let canary = error_rate
        .canary
        .measured()
        .unwrap_or_else(|| panic!("no canary value"));
    // 5 of every 100 canary requests fail; the source-side report (50 more 503s) is not counted.
    assert!(
        (canary.value - 0.05).abs() < 1e-9,
        "canary error rate {}",
        canary.value
    );
    let requests = canary
        .requests
        .unwrap_or_else(|| panic!("no request count: {canary:?}"));
    let errors = canary
        .errors
        .unwrap_or_else(|| panic!("no error count: {canary:?}"));
    // 100 requests per 1s scrape over a 5s window, give or take extrapolation at the edges.
    assert!(
        (350.0..=650.0).contains(&requests),
        "canary requests {requests}"
    );
    assert!(
        (errors / requests - 0.05).abs() < 1e-9,
        "errors {errors} of {requests}"
    );

    let stable = error_rate
        .stable
        .as_ref()
        .and_then(Sample::measured)
        .unwrap_or_else(|| panic!("no stable value: {error_rate:?}"));
    assert!(
        (stable.value - 0.01).abs() < 1e-9,
        "stable error rate {}",
        stable.value
    );

    let canary_requests = value(&input.canary_requests);
    assert!(
        (350.0..=650.0).contains(&canary_requests),
        "{canary_requests}"
    );
    assert_eq!(
        canary_requests, requests,
        "the same query gives the same count"
    );
    // 100 requests per second (one scrape per second).
    let rate = value(&input.metrics[1].canary);
    assert!((80.0..=120.0).contains(&rate), "request rate {rate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_builtins_read_cluster_stats() {
    let world = world().await;
    let metrics = r#"
    - { name: errors, template: envoy-error-rate, max: 0.2, compare: { maxIncrease: 0.1 }, judge: threshold }
    - { name: p50, template: envoy-latency-p50, max: 100 }
    - { name: p99, template: envoy-latency-p99, max: 100 }"#;
    let spec = policy_spec(&world.prometheus.url(), ENVOY, metrics, "{}");
    let source = PrometheusSource::new(None);
    window_full(&world.prometheus).await;
    let input = observe_until_measured(&source, &spec).await;

    let errors = input.metrics[0]
        .canary
        .measured()
        .unwrap_or_else(|| panic!("no value"));
    assert!(
        (errors.value - 0.1).abs() < 1e-9,
        "envoy error rate {}",
        errors.value
    );
    let (requests, failed) = (
        errors.requests.unwrap_or(-1.0),
        errors.errors.unwrap_or(-1.0),
    );
    assert!(
        (failed / requests - 0.1).abs() < 1e-9,
        "{failed} of {requests}"
    );
    // Stable never fails: no 5xx series at all, which is 0 and not "no data".
    let stable = input.metrics[0].stable.as_ref().and_then(Sample::measured);
    assert_eq!(stable.map(|m| (m.value, m.errors)), Some((0.0, Some(0.0))));

    // 90% of requests under 25 ms, all under 50 ms: linear interpolation in the buckets.
    let p50 = value(&input.metrics[1].canary);
    assert!((p50 - 25.0 * 50.0 / 90.0).abs() < 1e-6, "p50 {p50}");
    let p99 = value(&input.metrics[2].canary);
    assert!((p99 - 47.5).abs() < 1e-6, "p99 {p99}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_label_values_round_trip_without_injection() {
    let world = world().await;
    scraped(&world.prometheus).await;
    let metrics = r#"
    - { name: exact, query: 'hostile{label="{{ vars.v }}"}', max: 10 }
    - { name: single-quoted, query: "hostile{label='{{ vars.v }}'}", max: 10 }
    - { name: regex, query: 'hostile{label=~"{{ vars.v }}"}', max: 10 }
    - { name: plain, query: 'hostile{label="{{ vars.plain }}"}', max: 10 }"#;
    let vars = serde_json::json!({ "v": HOSTILE, "plain": "a" }).to_string();
    let spec = policy_spec(&world.prometheus.url(), ISTIO_SUBSETS, metrics, &vars);
    let source = PrometheusSource::new(None);
    let deadline = tokio::time::Instant::now() + DATA_TIMEOUT;
    let input = loop {
        let input = source.observe(&policy(), &spec, now(), None).await;
        if input
            .metrics
            .iter()
            .all(|m| matches!(m.canary, Sample::Value(_)))
        {
            break input;
        }
        assert!(tokio::time::Instant::now() < deadline, "{input:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Exactly the one series whose label is the hostile value (value 1): not the decoy (2),
    // not `a` (3), and no `vector(1)` or second series slipped in.
    for m in &input.metrics[..3] {
        assert_eq!(value(&m.canary), 1.0, "{}", m.name);
    }
    assert_eq!(value(&input.metrics[3].canary), 3.0);

    // A hostile value outside a string literal is refused before anything is sent.
    let bare = policy_spec(
        &world.prometheus.url(),
        ISTIO_SUBSETS,
        "[ { name: bare, query: 'rate(hostile[{{ vars.v }}])', max: 1 } ]",
        &vars,
    );
    let input = source.observe(&policy(), &bare, now(), None).await;
    match &input.metrics[0].canary {
        Sample::Invalid { message } => {
            assert!(message.contains("metric `bare`"), "{message}");
            assert!(message.contains("vars.v"), "{message}");
        }
        other => panic!("a bare hostile value gave {other:?}"),
    }
}

#[tokio::test]
async fn an_address_nobody_listens_on_is_unreachable() {
    let port = support::ports::free_port();
    let address = format!("http://127.0.0.1:{port}");
    let spec = policy_spec(
        &address,
        ISTIO_SUBSETS,
        "[ { name: error-rate, template: istio-error-rate, max: 0.01 } ]",
        "{}",
    );
    let input = PrometheusSource::new(None)
        .observe(&policy(), &spec, now(), None)
        .await;
    for sample in [&input.metrics[0].canary, &input.canary_requests] {
        match sample {
            Sample::Unreachable { message } => {
                assert!(message.contains(&address), "{message}");
                assert!(message.contains("istio_requests_total"), "{message}");
            }
            other => panic!("a closed port gave {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_prometheus_that_never_answers_times_out() {
    // Accepts connections and holds them open without ever answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let source = PrometheusSource::new(None);
    let connection = source
        .connect(Some(&prometheus_spec(
            &format!("http://{address}"),
            "300ms",
        )))
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        connection.query("fixed_value", now()),
    )
    .await;
    silent.abort();
    assert_eq!(outcome, Ok(Sample::TimedOut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_prometheus_is_unreachable_then_answers_again() {
    let mut world = world().await;
    scraped(&world.prometheus).await;
    let source = PrometheusSource::new(None);
    let connection = source
        .connect(Some(&prometheus_spec(&world.prometheus.url(), "2s")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&connection.query("fixed_value", now()).await), 42.0);

    world.prometheus.stop();
    let down = connection.query("fixed_value", now()).await;
    assert!(matches!(down, Sample::Unreachable { .. }), "{down:?}");

    world.prometheus.start().await;
    scraped(&world.prometheus).await;
    assert_eq!(value(&connection.query("fixed_value", now()).await), 42.0);
}

/// A stand-in for an authenticating proxy in front of Prometheus: answers the query API
/// with one value only when the expected `Authorization` header is sent, else 401.
async fn auth_proxy(expected: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::post(move |headers: axum::http::HeaderMap| async move {
            let sent = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if sent == Some(expected) {
                (
                    axum::http::StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}"#,
                )
            } else {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [(axum::http::header::CONTENT_TYPE, "text/plain")],
                    "Unauthorized",
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), task)
}

#[tokio::test]
async fn credentials_from_a_file_or_the_environment_are_sent() {
    let (address, server) = auth_proxy("Bearer s3cret-token").await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap_or_else(|e| panic!("{e}"));
    let with_file: PrometheusSpec = serde_yaml_ng::from_str(&format!(
        "{{address: '{address}', timeout: 5s, auth: {{bearerTokenFile: '{}'}}}}",
        token_file.display()
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let with_env: PrometheusSpec = serde_yaml_ng::from_str(&format!(
        "{{address: '{address}', timeout: 5s, auth: {{bearerTokenEnv: PROM_TOKEN}}}}"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let source = PrometheusSource::new(None)
        .with_env(|var| (var == "PROM_TOKEN").then(|| "s3cret-token".to_owned()));

    for spec in [&with_file, &with_env] {
        let connection = source.connect(Some(spec)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value(&connection.query("up", now()).await), 7.0);
        assert!(!format!("{connection:?}").contains("s3cret"));
    }

    let without = prometheus_spec(&address, "5s");
    let connection = source
        .connect(Some(&without))
        .unwrap_or_else(|e| panic!("{e}"));
    match connection.query("up", now()).await {
        Sample::Invalid { message } => assert!(message.contains("auth"), "{message}"),
        other => panic!("a 401 gave {other:?}"),
    }
    server.abort();
}
