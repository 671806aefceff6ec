//! Built-in query templates on the standard metrics of Istio and Envoy.
//!
//! Each built-in is written as a query template on `{{ target.* }}`, so the same text
//! queries the canary and the stable release. Beside its value, each knows how to count
//! the target's requests and failed (5xx) requests over the same window, which fill
//! `Measured.requests`/`errors` and the canary request count for `minRequests`.
//!
//! Error rates are ratios 0..1 (5xx / all; no requests gives 0/0 = NaN, which the
//! analysis calls inconclusive), latencies milliseconds, request rates requests/second.

/// Whose standard metrics a built-in reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `istio_requests_total` and `istio_request_duration_milliseconds_bucket` as reported
    /// by the destination sidecar.
    Istio,
    /// Envoy's `/stats/prometheus` cluster statistics.
    Envoy,
}

/// What a built-in measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    RequestRate,
    ErrorRate,
    /// A latency quantile in milliseconds; the number is the quantile as PromQL writes it.
    Latency(&'static str),
}

/// One built-in template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub family: Family,
    pub measure: Measure,
}

/// Every built-in, by name.
pub const BUILTINS: &[Builtin] = &[
    builtin("istio-request-rate", Family::Istio, Measure::RequestRate),
    builtin("istio-error-rate", Family::Istio, Measure::ErrorRate),
    builtin("istio-latency-p50", Family::Istio, Measure::Latency("0.5")),
    builtin("istio-latency-p90", Family::Istio, Measure::Latency("0.9")),
    builtin("istio-latency-p99", Family::Istio, Measure::Latency("0.99")),
    builtin("envoy-request-rate", Family::Envoy, Measure::RequestRate),
    builtin("envoy-error-rate", Family::Envoy, Measure::ErrorRate),
    builtin("envoy-latency-p50", Family::Envoy, Measure::Latency("0.5")),
    builtin("envoy-latency-p90", Family::Envoy, Measure::Latency("0.9")),
    builtin("envoy-latency-p99", Family::Envoy, Measure::Latency("0.99")),
];

const fn builtin(name: &'static str, family: Family, measure: Measure) -> Builtin {
    Builtin {
        name,
        family,
        measure,
    }
}

/// The built-in called `name`, if any.
pub fn lookup(name: &str) -> Option<Builtin> {
    BUILTINS.iter().copied().find(|b| b.name == name)
}

/// The query templates of one built-in for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinQueries {
    /// The metric's value.
    pub value: String,
    /// Requests the target served in the window.
    pub requests: String,
    /// Failed (5xx) requests the target served in the window; 0 when it served requests
    /// and none failed, no data when it served none.
    pub errors: String,
    /// Latency only: the histogram's cumulative bucket counts in the window, one series
    /// per `le` (`+Inf` is every request), for the sequential judge.
    pub buckets: Option<String>,
}

impl Family {
    /// The label matchers that select one target. Istio: host-level by
    /// `destination_service`; subset-level (`subset` true) also by `destination_version`,
    /// which Istio takes from the pod's `version` label.
    fn selector(self, subset: bool) -> &'static str {
        match (self, subset) {
            (Family::Istio, false) => {
                r#"reporter="destination",destination_service="{{ target.host }}""#
            }
            (Family::Istio, true) => {
                r#"reporter="destination",destination_service="{{ target.host }}",destination_version="{{ target.subset }}""#
            }
            (Family::Envoy, _) => r#"envoy_cluster_name="{{ target.cluster }}""#,
        }
    }

    fn total(self, selector: &str) -> String {
        match self {
            Family::Istio => format!("istio_requests_total{{{selector}}}"),
            Family::Envoy => format!("envoy_cluster_upstream_rq_total{{{selector}}}"),
        }
    }

    fn failed(self, selector: &str) -> String {
        match self {
            Family::Istio => format!(r#"istio_requests_total{{{selector},response_code=~"5.."}}"#),
            Family::Envoy => format!(
                r#"envoy_cluster_upstream_rq_xx{{{selector},envoy_response_code_class="5"}}"#
            ),
        }
    }

    fn duration_buckets(self, selector: &str) -> String {
        match self {
            Family::Istio => format!("istio_request_duration_milliseconds_bucket{{{selector}}}"),
            Family::Envoy => format!("envoy_cluster_upstream_rq_time_bucket{{{selector}}}"),
        }
    }
}

impl Builtin {
    /// The query templates for a target; `subset_level` when the target has a subset
    /// (Istio only: Envoy clusters already name one release).
    pub fn queries(&self, subset_level: bool) -> BuiltinQueries {
        let family = self.family;
        let selector = family.selector(subset_level && family == Family::Istio);
        let total = family.total(selector);
        let failed = family.failed(selector);
        const W: &str = "[{{ interval }}]";
        // A release that served no 5xx has no 5xx series at all: `or vector(0)` makes
        // that a 0, and the division (or the `and`) keeps "no requests" as no data.
        let failed_rate = format!("(sum(rate({failed}{W})) or vector(0))");
        let value = match self.measure {
            Measure::RequestRate => format!("sum(rate({total}{W}))"),
            Measure::ErrorRate => format!("{failed_rate} / sum(rate({total}{W}))"),
            Measure::Latency(quantile) => format!(
                "histogram_quantile({quantile}, sum by (le) (rate({}{W})))",
                family.duration_buckets(selector)
            ),
        };
        let buckets = match self.measure {
            Measure::Latency(_) => Some(format!(
                "sum by (le) (increase({}{W}))",
                family.duration_buckets(selector)
            )),
            Measure::RequestRate | Measure::ErrorRate => None,
        };
        BuiltinQueries {
            buckets,
            value,
            requests: format!("sum(increase({total}{W}))"),
            errors: format!(
                "(sum(increase({failed}{W})) or vector(0)) and sum(increase({total}{W}))"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::template::Template;

    #[test]
    fn every_policy_template_name_has_queries_that_parse() {
        for template in crate::policy::templates::BUILTIN_TEMPLATES {
            let name = template.name;
            let builtin = lookup(name).unwrap_or_else(|| panic!("no built-in `{name}`"));
            for subset in [false, true] {
                let q = builtin.queries(subset);
                for text in [&q.value, &q.requests, &q.errors]
                    .into_iter()
                    .chain(&q.buckets)
                {
                    let template =
                        Template::parse(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(template.uses_target(), "{name}: {text}");
                }
            }
        }
        assert_eq!(
            BUILTINS.len(),
            crate::policy::templates::BUILTIN_TEMPLATES.len()
        );
    }

    #[test]
    fn rendered_builtins_are_valid_promql() {
        use crate::metrics::variables::{Side, Target, Variables};
        let vars = Variables {
            namespace: "shop".to_owned(),
            name: "checkout".to_owned(),
            interval: "30s".to_owned(),
            canary: Target {
                host: Some("checkout.stage.svc.cluster.local".to_owned()),
                subset: Some("v2".to_owned()),
                port: None,
                cluster: Some("canary".to_owned()),
            },
            stable: Target::default(),
            side: Side::Canary,
            vars: Default::default(),
            router: "istio",
        };
        for builtin in BUILTINS {
            let q = builtin.queries(true);
            for text in [&q.value, &q.requests, &q.errors]
                .into_iter()
                .chain(&q.buckets)
            {
                let query = Template::parse(builtin.name, text)
                    .and_then(|t| t.render(&vars))
                    .unwrap_or_else(|e| panic!("{e}"));
                if let Err(e) = promql_parser::parser::parse(&query) {
                    panic!("{}: {query}: {e}", builtin.name);
                }
            }
        }
    }

    #[test]
    fn docs_show_every_builtin_query() {
        let docs = include_str!("../../docs/metrics.md");
        for builtin in BUILTINS {
            let selector = builtin.family.selector(false);
            let q = builtin.queries(false);
            for text in [&q.value, &q.requests, &q.errors]
                .into_iter()
                .chain(&q.buckets)
            {
                let shown = format!("`{}`", text.replace(selector, "<selector>"));
                assert!(docs.contains(&shown), "docs/metrics.md lacks {shown}");
            }
        }
    }

    #[test]
    fn istio_error_rate_is_5xx_over_all() {
        let q = lookup("istio-error-rate").map(|b| b.queries(true));
        assert_eq!(
            q.map(|q| q.value),
            Some(
                r#"(sum(rate(istio_requests_total{reporter="destination",destination_service="{{ target.host }}",destination_version="{{ target.subset }}",response_code=~"5.."}[{{ interval }}])) or vector(0)) / sum(rate(istio_requests_total{reporter="destination",destination_service="{{ target.host }}",destination_version="{{ target.subset }}"}[{{ interval }}]))"#
                    .to_owned()
            )
        );
    }
}
