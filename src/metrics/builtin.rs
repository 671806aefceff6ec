//! Built-in query templates on the standard metrics of Istio, Envoy, ingress-nginx and
//! the application's own `http_requests_total`-style counters.
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
    /// ingress-nginx: `nginx_ingress_controller_requests` (label `status`) and
    /// `nginx_ingress_controller_request_duration_seconds_bucket`.
    Nginx,
    /// The application's own counters: `http_requests_total` (label `code`) and
    /// `http_request_duration_seconds_bucket`, with a label per version.
    App,
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
    builtin("nginx-request-rate", Family::Nginx, Measure::RequestRate),
    builtin("nginx-error-rate", Family::Nginx, Measure::ErrorRate),
    builtin("nginx-latency-p50", Family::Nginx, Measure::Latency("0.5")),
    builtin("nginx-latency-p90", Family::Nginx, Measure::Latency("0.9")),
    builtin("nginx-latency-p99", Family::Nginx, Measure::Latency("0.99")),
    builtin("app-request-rate", Family::App, Measure::RequestRate),
    builtin("app-error-rate", Family::App, Measure::ErrorRate),
    builtin("app-latency-p50", Family::App, Measure::Latency("0.5")),
    builtin("app-latency-p90", Family::App, Measure::Latency("0.9")),
    builtin("app-latency-p99", Family::App, Measure::Latency("0.99")),
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
    /// per `le` (`+Inf` is every request), for the sequential judge. The `le` edges are
    /// in the histogram's own unit (seconds for `nginx` and `app`).
    pub buckets: Option<String>,
}

/// One label matcher that tells the targets apart: `label="{{ variable }}"`. The label
/// name is checked by the caller (a Prometheus label name); the value is a template
/// variable, escaped when rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub variable: String,
}

impl Family {
    /// The family's name as templates start with it.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Istio => "istio",
            Family::Envoy => "envoy",
            Family::Nginx => "nginx",
            Family::App => "app",
        }
    }

    /// The label matchers that select one target: the family's own (Istio: the
    /// destination sidecar's reports for `destination_service`; Envoy: the cluster),
    /// then `matchers`.
    pub fn selector(self, matchers: &[Matcher]) -> String {
        self.selector_with(matchers, |_, m| {
            format!(r#"{}="{{{{ {} }}}}""#, m.label, m.variable)
        })
    }

    /// The family's fixed matchers, then each target matcher `i` as `write(i, matcher)`.
    fn selector_with(
        self,
        matchers: &[Matcher],
        write: impl Fn(usize, &Matcher) -> String,
    ) -> String {
        let fixed = match self {
            Family::Istio => Some(r#"reporter="destination""#.to_owned()),
            Family::Envoy | Family::Nginx | Family::App => None,
        };
        fixed
            .into_iter()
            .chain(
                self.target_matchers(matchers)
                    .iter()
                    .enumerate()
                    .map(|(i, m)| write(i, m)),
            )
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every matcher that tells one target from another, in selector order: the
    /// family's own (Istio: `destination_service`, Envoy: the cluster), then `matchers`.
    pub fn target_matchers(self, matchers: &[Matcher]) -> Vec<Matcher> {
        let own = match self {
            Family::Istio => Some(("destination_service", "target.host")),
            Family::Envoy => Some(("envoy_cluster_name", "target.cluster")),
            Family::Nginx | Family::App => None,
        };
        own.map(|(label, variable)| Matcher {
            label: label.to_owned(),
            variable: variable.to_owned(),
        })
        .into_iter()
        .chain(matchers.iter().cloned())
        .collect()
    }

    /// The selector of a group of targets: [`Family::selector`] with each target
    /// matcher `i` written `label=~"<group_marker(i)>"`, the marker to be replaced by the
    /// group's values (`metrics::grouping`).
    pub fn group_selector(self, matchers: &[Matcher]) -> String {
        self.selector_with(matchers, |i, m| {
            format!(r#"{}=~"{}""#, m.label, group_marker(i))
        })
    }

    pub(crate) fn total(self, selector: &str) -> String {
        match self {
            Family::Istio => format!("istio_requests_total{{{selector}}}"),
            Family::Envoy => format!("envoy_cluster_upstream_rq_total{{{selector}}}"),
            Family::Nginx => format!("nginx_ingress_controller_requests{{{selector}}}"),
            Family::App => format!("http_requests_total{{{selector}}}"),
        }
    }

    fn failed(self, selector: &str) -> String {
        let with = |extra: &str| {
            if selector.is_empty() {
                extra.to_owned()
            } else {
                format!("{selector},{extra}")
            }
        };
        match self {
            Family::Istio => format!(
                "istio_requests_total{{{}}}",
                with(r#"response_code=~"5..""#)
            ),
            Family::Envoy => format!(
                "envoy_cluster_upstream_rq_xx{{{}}}",
                with(r#"envoy_response_code_class="5""#)
            ),
            Family::Nginx => format!(
                "nginx_ingress_controller_requests{{{}}}",
                with(r#"status=~"5..""#)
            ),
            Family::App => format!("http_requests_total{{{}}}", with(r#"code=~"5..""#)),
        }
    }

    fn duration_buckets(self, selector: &str) -> String {
        match self {
            Family::Istio => format!("istio_request_duration_milliseconds_bucket{{{selector}}}"),
            Family::Envoy => format!("envoy_cluster_upstream_rq_time_bucket{{{selector}}}"),
            Family::Nginx => {
                format!("nginx_ingress_controller_request_duration_seconds_bucket{{{selector}}}")
            }
            Family::App => format!("http_request_duration_seconds_bucket{{{selector}}}"),
        }
    }

    /// What turns the histogram's unit into milliseconds, as a PromQL prefix.
    fn to_milliseconds(self) -> &'static str {
        match self {
            Family::Istio | Family::Envoy => "",
            Family::Nginx | Family::App => "1000 * ",
        }
    }
}

impl Builtin {
    /// The query templates for a target selected by `matchers` beside the family's own.
    pub fn queries(&self, matchers: &[Matcher]) -> BuiltinQueries {
        self.queries_with_selector(&self.family.selector(matchers))
    }

    /// The query templates with `selector` inside the braces of every series.
    pub fn queries_with_selector(&self, selector: &str) -> BuiltinQueries {
        let family = self.family;
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
                "{}histogram_quantile({quantile}, sum by (le) (rate({}{W})))",
                family.to_milliseconds(),
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

    /// The queries of [`Builtin::queries_with_selector`] for a group of targets at once
    /// (`metrics::grouping`): `selector` selects them all ([`Family::group_selector`]),
    /// every `sum` keeps the labels `by` (the target matchers' labels, comma-separated),
    /// so each target's numbers are the series with its values; `or vector(0)`, which
    /// would give the whole group one 0, becomes `or 0 * <the target's request total>`,
    /// which gives a 0 to each target that served requests, as the query alone does.
    pub fn grouped_queries(&self, by: &str, selector: &str) -> BuiltinQueries {
        let family = self.family;
        let total = family.total(selector);
        let failed = family.failed(selector);
        const W: &str = "[{{ interval }}]";
        let sum = |f: &str, series: &str| format!("sum by ({by}) ({f}({series}{W}))");
        let zero_where_served = |f: &str| format!("0 * {}", sum(f, &total));
        let value = match self.measure {
            Measure::RequestRate => sum("rate", &total),
            Measure::ErrorRate => format!(
                "({} or {}) / {}",
                sum("rate", &failed),
                zero_where_served("rate"),
                sum("rate", &total)
            ),
            Measure::Latency(quantile) => format!(
                "{}histogram_quantile({quantile}, sum by (le, {by}) (rate({}{W})))",
                family.to_milliseconds(),
                family.duration_buckets(selector)
            ),
        };
        let buckets = match self.measure {
            Measure::Latency(_) => Some(format!(
                "sum by (le, {by}) (increase({}{W}))",
                family.duration_buckets(selector)
            )),
            Measure::RequestRate | Measure::ErrorRate => None,
        };
        BuiltinQueries {
            buckets,
            value,
            requests: sum("increase", &total),
            errors: format!(
                "({} or {}) and {}",
                sum("increase", &failed),
                zero_where_served("increase"),
                sum("increase", &total)
            ),
        }
    }
}

/// Where a group's values for its target matcher `i` go in a grouped query.
pub fn group_marker(i: usize) -> String {
    format!("<<shiftgate group {i}>>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::template::Template;

    fn version_matcher() -> Vec<Matcher> {
        vec![Matcher {
            label: "destination_version".to_owned(),
            variable: "target.subset".to_owned(),
        }]
    }

    #[test]
    fn every_policy_template_name_has_queries_that_parse() {
        for template in crate::policy::templates::BUILTIN_TEMPLATES {
            let name = template.name;
            let builtin = lookup(name).unwrap_or_else(|| panic!("no built-in `{name}`"));
            for matchers in [vec![], version_matcher()] {
                let q = builtin.queries(&matchers);
                for text in [&q.value, &q.requests, &q.errors]
                    .into_iter()
                    .chain(&q.buckets)
                {
                    let template =
                        Template::parse(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
                    // Nginx and app series have no target of their own: their matchers
                    // are what tells the targets apart.
                    let own = matches!(builtin.family, Family::Istio | Family::Envoy);
                    if own || !matchers.is_empty() {
                        assert!(template.uses_target(), "{name}: {text}");
                    }
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
                labels: Default::default(),
            },
            stable: Target::default(),
            side: Side::Canary,
            vars: Default::default(),
            router: "istio",
            selector_key: None,
        };
        for builtin in BUILTINS {
            let q = builtin.queries(&version_matcher());
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
            let q = builtin.queries_with_selector("<selector>");
            for text in [&q.value, &q.requests, &q.errors]
                .into_iter()
                .chain(&q.buckets)
            {
                let shown = format!("`{text}`");
                assert!(docs.contains(&shown), "docs/metrics.md lacks {shown}");
            }
        }
    }

    #[test]
    fn istio_error_rate_is_5xx_over_all() {
        let q = lookup("istio-error-rate").map(|b| b.queries(&version_matcher()));
        assert_eq!(
            q.map(|q| q.value),
            Some(
                r#"(sum(rate(istio_requests_total{reporter="destination",destination_service="{{ target.host }}",destination_version="{{ target.subset }}",response_code=~"5.."}[{{ interval }}])) or vector(0)) / sum(rate(istio_requests_total{reporter="destination",destination_service="{{ target.host }}",destination_version="{{ target.subset }}"}[{{ interval }}]))"#
                    .to_owned()
            )
        );
    }
}
