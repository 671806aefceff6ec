//! The names of the built-in metric templates a policy may use in `template:`. The
//! PromQL behind each name lives in `metrics` (a test there asserts every name here has
//! a query); the policy layer only needs the names to validate policies.

/// A built-in metric template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinTemplate {
    pub name: &'static str,
    pub description: &'static str,
    /// Unit of the value the template yields.
    pub unit: &'static str,
}

impl BuiltinTemplate {
    /// Whose telemetry the template reads: `istio`, `envoy`, `nginx` (ingress-nginx) or
    /// `app` (the application's own `http_requests_total`-style counters).
    pub fn family(&self) -> &'static str {
        self.name.split('-').next().unwrap_or(self.name)
    }
}

/// Every built-in template. Error rates are ratios 0..1, latencies milliseconds,
/// request rates requests per second.
pub const BUILTIN_TEMPLATES: &[BuiltinTemplate] = &[
    BuiltinTemplate {
        name: "istio-request-rate",
        description: "Requests per second reaching the destination (istio_requests_total).",
        unit: "requests/second",
    },
    BuiltinTemplate {
        name: "istio-error-rate",
        description: "Share of requests answered with a 5xx status (istio_requests_total).",
        unit: "ratio 0..1",
    },
    BuiltinTemplate {
        name: "istio-latency-p50",
        description: "Median request duration (istio_request_duration_milliseconds).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "istio-latency-p90",
        description: "90th percentile request duration (istio_request_duration_milliseconds).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "istio-latency-p99",
        description: "99th percentile request duration (istio_request_duration_milliseconds).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "envoy-request-rate",
        description: "Requests per second to the cluster (envoy_cluster_upstream_rq_total).",
        unit: "requests/second",
    },
    BuiltinTemplate {
        name: "envoy-error-rate",
        description:
            "Share of upstream requests answered with a 5xx status (envoy_cluster_upstream_rq_xx).",
        unit: "ratio 0..1",
    },
    BuiltinTemplate {
        name: "envoy-latency-p50",
        description: "Median upstream request time (envoy_cluster_upstream_rq_time).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "envoy-latency-p90",
        description: "90th percentile upstream request time (envoy_cluster_upstream_rq_time).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "envoy-latency-p99",
        description: "99th percentile upstream request time (envoy_cluster_upstream_rq_time).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "nginx-request-rate",
        description: "Requests per second (nginx_ingress_controller_requests).",
        unit: "requests/second",
    },
    BuiltinTemplate {
        name: "nginx-error-rate",
        description: "Share of requests answered with a 5xx status (nginx_ingress_controller_requests).",
        unit: "ratio 0..1",
    },
    BuiltinTemplate {
        name: "nginx-latency-p50",
        description: "Median request duration (nginx_ingress_controller_request_duration_seconds, in milliseconds).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "nginx-latency-p90",
        description: "90th percentile request duration (nginx_ingress_controller_request_duration_seconds, in milliseconds).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "nginx-latency-p99",
        description: "99th percentile request duration (nginx_ingress_controller_request_duration_seconds, in milliseconds).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "app-request-rate",
        description: "Requests per second (http_requests_total).",
        unit: "requests/second",
    },
    BuiltinTemplate {
        name: "app-error-rate",
        description: "Share of requests answered with a 5xx status (http_requests_total).",
        unit: "ratio 0..1",
    },
    BuiltinTemplate {
        name: "app-latency-p50",
        description: "Median request duration (http_request_duration_seconds, in milliseconds).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "app-latency-p90",
        description: "90th percentile request duration (http_request_duration_seconds, in milliseconds).",
        unit: "milliseconds",
    },
    BuiltinTemplate {
        name: "app-latency-p99",
        description: "99th percentile request duration (http_request_duration_seconds, in milliseconds).",
        unit: "milliseconds",
    },
];

/// A Prometheus label name a policy may match on: `[a-zA-Z_][a-zA-Z0-9_]*`, not one of
/// Prometheus's reserved `__…` labels.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// The built-in template called `name`, if there is one.
pub fn builtin(name: &str) -> Option<&'static BuiltinTemplate> {
    BUILTIN_TEMPLATES.iter().find(|t| t.name == name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_looked_up() {
        let mut names: Vec<_> = BUILTIN_TEMPLATES.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 20);
        assert_eq!(
            builtin("envoy-latency-p99").map(|t| t.unit),
            Some("milliseconds")
        );
        assert_eq!(
            builtin("istio-error-rate").map(|t| t.family()),
            Some("istio")
        );
        assert_eq!(builtin("app-error-rate").map(|t| t.family()), Some("app"));
        assert!(builtin("istio-error-ratio").is_none());
    }

    #[test]
    fn label_names_are_prometheus_label_names() {
        for good in ["version", "destination_workload", "_x9"] {
            assert!(is_label_name(good), "{good}");
        }
        for bad in ["", "9v", "app.kubernetes.io/version", "__name__", "a-b"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }
}
