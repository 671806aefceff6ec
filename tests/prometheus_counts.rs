//! The count queries the sequential judges need, against a real Prometheus scraping a
//! test exporter: for every built-in template, the per-target requests and errors (error
//! rates) or histogram buckets (latencies) over exactly the range since the evidence
//! was last counted, and the window's counts for the others.

mod support;

use std::time::Duration;

use shiftgate::analysis::sample::{AnalysisInput, Measured, Sample};
use shiftgate::metrics::builtin::{Measure, BUILTINS};
use shiftgate::metrics::prometheus::PrometheusSource;
use shiftgate::metrics::{MetricSource, PolicyRef};
use shiftgate::policy::{RolloutSpec, Timestamp};
use support::exporter::Exporter;
use support::prometheus::{Prometheus, ScrapeTarget};

const DATA_TIMEOUT: Duration = Duration::from_secs(60);

/// The test stands in for the runtime's clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    chrono::Utc::now()
}

/// Per scrape (every second), on each target: 100 requests; 5 (canary) and 1 (stable)
/// of them 5xx for Istio, 10 and 0 for Envoy; 60 at or below 50 ms, 90 at or below
/// 100 ms.
fn exposition(n: u64) -> String {
    let n = n as f64;
    let istio = |host: &str, version: &str| {
        format!(
            r#"reporter="destination",destination_service="{host}",destination_version="{version}""#
        )
    };
    let canary = istio("checkout.stage.svc.cluster.local", "v2");
    let stable = istio("checkout.prod.svc.cluster.local", "v1");
    let source_side = r#"reporter="source",destination_service="checkout.stage.svc.cluster.local",destination_version="v2""#;
    let mut out = String::from("# TYPE istio_requests_total counter\n");
    for (labels, errors) in [(&canary, 5.0), (&stable, 1.0)] {
        out += &format!(
            "istio_requests_total{{{labels},response_code=\"200\"}} {}\n",
            (100.0 - errors) * n
        );
        out += &format!(
            "istio_requests_total{{{labels},response_code=\"503\"}} {}\n",
            errors * n
        );
    }
    out += &format!(
        "istio_requests_total{{{source_side},response_code=\"503\"}} {}\n",
        50.0 * n
    );
    out += "# TYPE istio_request_duration_milliseconds histogram\n";
    for labels in [&canary, &stable, &source_side.to_owned()] {
        out += &histogram("istio_request_duration_milliseconds", labels, n);
    }
    // The app's own counters and ingress-nginx's, with a label per version; their
    // histograms are in seconds.
    for (total, status, duration, label, canary, stable) in [
        (
            "http_requests_total",
            "code",
            "http_request_duration_seconds",
            "version",
            "v2",
            "v1",
        ),
        (
            "nginx_ingress_controller_requests",
            "status",
            "nginx_ingress_controller_request_duration_seconds",
            "ingress",
            "web-canary",
            "web",
        ),
    ] {
        out += &format!("# TYPE {total} counter\n");
        for (release, errors) in [(canary, 5.0), (stable, 1.0)] {
            out += &format!(
                "{total}{{{label}=\"{release}\",{status}=\"200\"}} {}\n{total}{{{label}=\"{release}\",{status}=\"503\"}} {}\n",
                (100.0 - errors) * n,
                errors * n
            );
        }
        out += &format!("# TYPE {duration} histogram\n");
        for release in [canary, stable] {
            out += &histogram_in_seconds(duration, &format!("{label}=\"{release}\""), n);
        }
    }
    out += "# TYPE envoy_cluster_upstream_rq_total counter\n";
    for cluster in ["canary", "stable"] {
        out += &format!(
            "envoy_cluster_upstream_rq_total{{envoy_cluster_name=\"{cluster}\"}} {}\n",
            100.0 * n
        );
    }
    out += "# TYPE envoy_cluster_upstream_rq_xx counter\n";
    out += &format!(
        "envoy_cluster_upstream_rq_xx{{envoy_cluster_name=\"canary\",envoy_response_code_class=\"2\"}} {}\n",
        90.0 * n
    );
    out += &format!(
        "envoy_cluster_upstream_rq_xx{{envoy_cluster_name=\"canary\",envoy_response_code_class=\"5\"}} {}\n",
        10.0 * n
    );
    out += &format!(
        "envoy_cluster_upstream_rq_xx{{envoy_cluster_name=\"stable\",envoy_response_code_class=\"2\"}} {}\n",
        100.0 * n
    );
    out += "# TYPE envoy_cluster_upstream_rq_time histogram\n";
    for cluster in ["canary", "stable"] {
        let labels = format!("envoy_cluster_name=\"{cluster}\"");
        out += &histogram("envoy_cluster_upstream_rq_time", &labels, n);
    }
    out
}

fn histogram(name: &str, labels: &str, n: f64) -> String {
    format!(
        "{name}_bucket{{{labels},le=\"50\"}} {}\n{name}_bucket{{{labels},le=\"100\"}} {}\n{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}\n",
        60.0 * n,
        90.0 * n,
        100.0 * n,
        6000.0 * n,
        100.0 * n
    )
}

/// [`histogram`] with the edges in seconds (0.05 s, 0.1 s), as client libraries write them.
fn histogram_in_seconds(name: &str, labels: &str, n: f64) -> String {
    format!(
        "{name}_bucket{{{labels},le=\"0.05\"}} {}\n{name}_bucket{{{labels},le=\"0.1\"}} {}\n{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}\n",
        60.0 * n,
        90.0 * n,
        100.0 * n,
        6.0 * n,
        100.0 * n
    )
}

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    }
}

const ISTIO: &str = r#"{ istio: { virtualService: checkout, stable: { host: checkout.prod.svc.cluster.local, subset: v1 }, canary: { host: checkout.stage.svc.cluster.local, subset: v2 } } }"#;
const ENVOY: &str = r#"{ envoy: { routesFile: /tmp/routes.yaml, adminAddress: "127.0.0.1:9901", stableCluster: stable, canaryCluster: canary } }"#;

/// Every built-in of one family: error rates and latencies compared sequentially, the
/// request rate with a threshold (it has no counts a sequential judge can use).
fn family_spec(address: &str, family: &str) -> RolloutSpec {
    let router = if family == "envoy" { ENVOY } else { ISTIO };
    // The app's and ingress-nginx's series tell the releases apart by a label.
    let labels = match family {
        "app" => "  targetLabels: { stable: { version: v1 }, canary: { version: v2 } }\n",
        "nginx" => {
            "  targetLabels: { stable: { ingress: web }, canary: { ingress: web-canary } }\n"
        }
        _ => "",
    };
    let metrics: Vec<String> = BUILTINS
        .iter()
        .filter(|b| b.name.starts_with(family))
        .map(|b| match b.measure {
            Measure::RequestRate => format!("{{ name: {0}, template: {0}, min: 1 }}", b.name),
            _ => format!("{{ name: {0}, template: {0}, compare: {{}} }}", b.name),
        })
        .collect();
    let yaml = format!(
        "revision: v2\nrouter: {router}\nsteps: [0, 100]\nanalysis:\n  interval: 5s\n  prometheus: {{ address: \"{address}\", timeout: 5s }}\n{labels}  metrics: [{}]\n",
        metrics.join(", ")
    );
    serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("bad policy: {e}\n{yaml}"))
}

fn measured<'a>(input: &'a AnalysisInput, name: &str, canary: bool) -> &'a Measured {
    let m = input
        .metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no {name}"));
    let sample = if canary {
        Some(&m.canary)
    } else {
        m.stable.as_ref()
    };
    sample.and_then(Sample::measured).unwrap_or_else(|| {
        panic!(
            "{name} ({}): {sample:?}",
            if canary { "canary" } else { "stable" }
        )
    })
}

fn requests(m: &Measured) -> f64 {
    m.requests.unwrap_or_else(|| panic!("no requests: {m:?}"))
}

/// Share of requests at or below `le` in a counted histogram.
fn share_at_or_below(m: &Measured, le: f64) -> f64 {
    let bucket = m
        .buckets
        .iter()
        .find(|b| b.le == le)
        .unwrap_or_else(|| panic!("no le={le}: {m:?}"));
    bucket.count / requests(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_builtin_counts_exactly_the_range_since_the_evidence() {
    let exporter = Exporter::start(exposition).await;
    let prometheus = Prometheus::start_scraping(vec![ScrapeTarget::new(
        "exporter",
        &exporter.address(),
        "/metrics",
    )])
    .await;
    // 25 s of scrapes, so a 20 s range ending a second ago is fully covered.
    prometheus
        .wait_for(
            "count_over_time(envoy_cluster_upstream_rq_total{envoy_cluster_name=\"canary\"}[1m])",
            DATA_TIMEOUT,
            |r| {
                r[0]["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    >= Some(25.0)
            },
        )
        .await;
    let source = PrometheusSource::new(None);
    let at = now() - chrono::Duration::seconds(1);
    let ten = Some(at - chrono::Duration::seconds(10));
    let twenty = Some(at - chrono::Duration::seconds(20));
    for (family, canary_errors, stable_errors) in [
        ("istio", 0.05, 0.01),
        ("envoy", 0.1, 0.0),
        ("app", 0.05, 0.01),
        ("nginx", 0.05, 0.01),
    ] {
        // Histogram edges in the family's unit: milliseconds, or seconds.
        let (fast, slow) = match family {
            "app" | "nginx" => (0.05, 0.1),
            _ => (50.0, 100.0),
        };
        let spec = family_spec(&prometheus.url(), family);
        let short = source.observe(&policy(), &spec, at, ten).await;
        let long = source.observe(&policy(), &spec, at, twenty).await;
        for builtin in BUILTINS
            .iter()
            .filter(|b| b.name.starts_with(&format!("{family}-")))
        {
            let name = builtin.name;
            match builtin.measure {
                Measure::ErrorRate | Measure::Latency(_) => {
                    for canary in [true, false] {
                        let (s, l) = (
                            measured(&short, name, canary),
                            measured(&long, name, canary),
                        );
                        // 100 requests per second, give or take extrapolation at the edges.
                        assert!((800.0..=1200.0).contains(&requests(s)), "{name}: {s:?}");
                        let ratio = requests(l) / requests(s);
                        assert!(
                            (1.7..=2.3).contains(&ratio),
                            "{name}: 20 s / 10 s = {ratio}"
                        );
                        if builtin.measure == Measure::ErrorRate {
                            let expected = if canary { canary_errors } else { stable_errors };
                            let errors = s.errors.unwrap_or_else(|| panic!("{name}: no errors"));
                            assert!(
                                (errors / requests(s) - expected).abs() < 1e-9,
                                "{name}: {s:?}"
                            );
                            assert!(s.buckets.is_empty(), "{name}: {s:?}");
                        } else {
                            assert!(
                                (share_at_or_below(s, fast) - 0.6).abs() < 1e-9,
                                "{name}: {s:?}"
                            );
                            assert!(
                                (share_at_or_below(s, slow) - 0.9).abs() < 1e-9,
                                "{name}: {s:?}"
                            );
                            assert_eq!(s.buckets.len(), 2, "finite edges only: {s:?}");
                            // Milliseconds whatever the histogram's unit: at most the
                            // 100 ms edge, never 0.1 (seconds).
                            assert!((1.0..=100.0).contains(&s.value), "{name}: {s:?}");
                        }
                    }
                }
                Measure::RequestRate => {
                    // Not judged sequentially: its counts stay those of the 5 s window.
                    let s = measured(&short, name, true);
                    assert!((350.0..=650.0).contains(&requests(s)), "{name}: {s:?}");
                }
            }
        }
    }
}
