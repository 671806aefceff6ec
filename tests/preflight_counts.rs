//! `run`'s preflight asks the count queries of the built-in templates too, against a
//! real Prometheus: a histogram that is not exported (the latency templates' buckets)
//! is a warning naming the query and the target before any traffic moves, while count
//! queries that answer give none.

mod support;

use std::time::Duration;

use shiftgate::metrics::prometheus::PrometheusSource;
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::{RolloutSpec, Timestamp};
use shiftgate::runtime::preflight::probe_queries;
use support::exporter::Exporter;
use support::prometheus::{Prometheus, ScrapeTarget};

/// The test stands in for the runtime's clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    chrono::Utc::now()
}

/// Requests on both targets, 1 % 5xx; no latency histogram at all.
fn exposition(n: u64) -> String {
    let n = n as f64;
    let mut out = String::from("# TYPE istio_requests_total counter\n");
    for (host, version) in [
        ("checkout.stage.svc.cluster.local", "v2"),
        ("checkout.prod.svc.cluster.local", "v1"),
    ] {
        let labels = format!(
            r#"reporter="destination",destination_service="{host}",destination_version="{version}""#
        );
        out += &format!(
            "istio_requests_total{{{labels},response_code=\"200\"}} {}\n",
            99.0 * n
        );
        out += &format!(
            "istio_requests_total{{{labels},response_code=\"503\"}} {}\n",
            n
        );
    }
    out
}

fn spec(address: &str) -> RolloutSpec {
    let yaml = format!(
        r#"revision: v2
router: {{ istio: {{ virtualService: checkout, stable: {{ host: checkout.prod.svc.cluster.local, subset: v1 }}, canary: {{ host: checkout.stage.svc.cluster.local, subset: v2 }} }} }}
steps: [0, 100]
analysis:
  interval: 10s
  prometheus: {{ address: "{address}", timeout: 5s }}
  metrics:
    - {{ name: errors, template: istio-error-rate, compare: {{}} }}
    - {{ name: p99, template: istio-latency-p99, compare: {{}} }}
"#
    );
    serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("bad policy: {e}\n{yaml}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_queries_without_series_are_warned_about_with_query_and_target() {
    let exporter = Exporter::start(exposition).await;
    let prometheus = Prometheus::start_scraping(vec![ScrapeTarget::new(
        "exporter",
        &exporter.address(),
        "/metrics",
    )])
    .await;
    prometheus
        .wait_for(
            "count_over_time(istio_requests_total{destination_version=\"v1\",response_code=\"200\"}[1m])",
            Duration::from_secs(60),
            |r| {
                r[0]["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    >= Some(12.0)
            },
        )
        .await;
    let policy = PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    };
    let warnings = probe_queries(
        &PrometheusSource::new(None),
        &policy,
        &spec(&prometheus.url()),
        now() - chrono::Duration::seconds(1),
    )
    .await
    .unwrap_or_else(|e| panic!("preflight refused: {e}"));
    let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    // The error rate's counts answer on both targets: no warning.
    assert!(
        warnings.iter().all(|w| w.metric == "p99"),
        "{}",
        shown.join("\n")
    );
    // Stable serves, so its missing buckets are named with the query.
    let buckets = warnings
        .iter()
        .find(|w| w.side == "stable" && w.counts == "buckets")
        .unwrap_or_else(|| panic!("no stable buckets warning in:\n{}", shown.join("\n")));
    assert!(
        buckets
            .query
            .contains("istio_request_duration_milliseconds_bucket"),
        "{buckets:?}"
    );
    let text = buckets.to_string();
    assert!(
        text.starts_with("shop/checkout: spec.analysis.metrics[1] `p99` (stable): the buckets count query returned no series: `"),
        "{text}"
    );
    assert!(text.contains("stays Inconclusive"), "{text}");
    // The canary's latency value has no data either (no histogram): like a canary
    // before its first request, nothing to warn about on its side.
    assert!(
        warnings.iter().all(|w| w.side == "stable"),
        "{}",
        shown.join("\n")
    );
}
