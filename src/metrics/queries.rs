//! Which PromQL queries a policy needs for one evaluation: per metric, the canary's (and,
//! when the metric compares, stable's) value query, plus request and error counts where
//! a built-in can tell, plus the canary's request count for `minRequests`. Pure.

use std::collections::HashMap;

use super::builtin::{self, Family};
use super::template::Template;
use super::variables::{Side, Variables};
use super::PolicyRef;
use crate::analysis::sample::{Measured, Sample};
use crate::policy::{MetricSpec, RolloutSpec};

/// The queries of one metric for one side, or why there are none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideQueries {
    Ready {
        value: String,
        requests: Option<String>,
        errors: Option<String>,
    },
    /// The query could not be built (unknown template or variable, unsafe value); the
    /// message names the metric.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricQueries {
    pub name: String,
    pub canary: SideQueries,
    pub stable: Option<SideQueries>,
}

/// Everything one evaluation of a policy asks Prometheus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyQueries {
    pub metrics: Vec<MetricQueries>,
    pub canary_requests: SideQueries,
}

impl PolicyQueries {
    /// Builds the queries of `spec`.
    pub fn plan(policy: &PolicyRef, spec: &RolloutSpec) -> PolicyQueries {
        let variables = Variables::new(policy, spec);
        let metrics = spec
            .analysis
            .metrics
            .iter()
            .map(|metric| MetricQueries {
                name: metric.name.clone(),
                canary: metric_queries(metric, &variables, Side::Canary),
                stable: metric
                    .compare
                    .as_ref()
                    .map(|_| metric_queries(metric, &variables, Side::Stable)),
            })
            .collect();
        PolicyQueries {
            metrics,
            canary_requests: request_count(spec, &variables),
        }
    }

    /// Every distinct query, each once.
    pub fn distinct(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let sides = self
            .metrics
            .iter()
            .flat_map(|m| std::iter::once(&m.canary).chain(m.stable.as_ref()))
            .chain(std::iter::once(&self.canary_requests));
        let mut out = Vec::new();
        for side in sides {
            if let SideQueries::Ready {
                value,
                requests,
                errors,
            } = side
            {
                for q in std::iter::once(value).chain(requests).chain(errors) {
                    if seen.insert(q.as_str()) {
                        out.push(q.clone());
                    }
                }
            }
        }
        out
    }
}

/// The sample of one side from the answers to its queries.
pub fn assemble(side: &SideQueries, answers: &HashMap<String, Sample>) -> Sample {
    let answer = |q: &String| {
        answers.get(q).cloned().unwrap_or_else(|| Sample::Invalid {
            message: format!("query `{q}` was not run"),
        })
    };
    let count = |q: &Option<String>| match q.as_ref().map(answer) {
        Some(Sample::Value(m)) => Some(m.value),
        _ => None,
    };
    match side {
        SideQueries::Failed(message) => Sample::Invalid {
            message: message.clone(),
        },
        SideQueries::Ready {
            value,
            requests,
            errors,
        } => match answer(value) {
            Sample::Value(measured) => Sample::Value(Measured {
                requests: count(requests),
                errors: count(errors),
                ..measured
            }),
            other => other,
        },
    }
}

fn render(metric: &str, text: &str, variables: &Variables) -> Result<String, String> {
    Template::parse(metric, text)
        .and_then(|t| t.render(variables))
        .map_err(|e| e.to_string())
}

fn metric_queries(metric: &MetricSpec, variables: &Variables, side: Side) -> SideQueries {
    let variables = variables.with_side(side);
    let name = &metric.name;
    let result = match (&metric.template, &metric.query) {
        (Some(template), None) => builtin_queries(name, template, &variables),
        (None, Some(query)) => raw_queries(metric, query, &variables),
        (Some(_), Some(_)) => Err(format!(
            "metric `{name}` has both `template` and `query`; keep one"
        )),
        (None, None) => Err(format!(
            "metric `{name}` has neither `template` nor `query`; add one"
        )),
    };
    result.unwrap_or_else(SideQueries::Failed)
}

fn builtin_queries(
    metric: &str,
    template: &str,
    variables: &Variables,
) -> Result<SideQueries, String> {
    let builtin = builtin::lookup(template).ok_or_else(|| {
        let known: Vec<&str> = builtin::BUILTINS.iter().map(|b| b.name).collect();
        format!(
            "metric `{metric}`: unknown template `{template}`; built-in templates: {}",
            known.join(", ")
        )
    })?;
    let queries = builtin.queries(variables.target().subset.is_some());
    Ok(SideQueries::Ready {
        value: render(metric, &queries.value, variables)?,
        requests: Some(render(metric, &queries.requests, variables)?),
        errors: Some(render(metric, &queries.errors, variables)?),
    })
}

fn raw_queries(
    metric: &MetricSpec,
    query: &str,
    variables: &Variables,
) -> Result<SideQueries, String> {
    let name = &metric.name;
    let text = match (variables.side, &metric.stable_query) {
        (Side::Canary, _) => query,
        (Side::Stable, Some(stable)) => stable.as_str(),
        (Side::Stable, None) => {
            let reusable = Template::parse(name, query)
                .map(|t| t.uses_target())
                .map_err(|e| e.to_string())?;
            if !reusable {
                return Err(format!(
                    "metric `{name}` compares against stable, but its query does not depend on the side; add `stableQuery` or write the query with `{{{{ target.* }}}}`"
                ));
            }
            query
        }
    };
    Ok(SideQueries::Ready {
        value: render(name, text, variables)?,
        requests: None,
        errors: None,
    })
}

/// The canary's request count, from the family of the first built-in the policy uses,
/// else the router's own metrics (Envoy for the Envoy router, Istio otherwise).
fn request_count(spec: &RolloutSpec, variables: &Variables) -> SideQueries {
    let family = spec
        .analysis
        .metrics
        .iter()
        .filter_map(|m| m.template.as_deref().and_then(builtin::lookup))
        .map(|b| b.family)
        .next()
        .unwrap_or(if spec.router.envoy.is_some() {
            Family::Envoy
        } else {
            Family::Istio
        });
    let request_rate = builtin::BUILTINS
        .iter()
        .find(|b| b.family == family && b.measure == builtin::Measure::RequestRate);
    let Some(request_rate) = request_rate else {
        return SideQueries::Failed("no request-count query for the router".to_owned());
    };
    let variables = variables.with_side(Side::Canary);
    let queries = request_rate.queries(variables.canary.subset.is_some());
    match render("canary requests", &queries.requests, &variables) {
        Ok(value) => SideQueries::Ready {
            value,
            requests: None,
            errors: None,
        },
        Err(message) => SideQueries::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PolicyRef {
        PolicyRef {
            namespace: "shop".to_owned(),
            name: "checkout".to_owned(),
        }
    }

    fn spec(router: &str, metrics: &str) -> RolloutSpec {
        let yaml = format!(
            "revision: v2\nrouter: {router}\nsteps: [0, 100]\nanalysis:\n  interval: 30s\n  metrics: {metrics}\n"
        );
        serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const ISTIO_HOSTS: &str =
        "{istio: {virtualService: checkout, stable: {host: checkout}, canary: {host: checkout.stage.svc.cluster.local}}}";

    #[test]
    fn host_level_istio_queries_select_by_fqdn() {
        let plan = PolicyQueries::plan(
            &policy(),
            &spec(
                ISTIO_HOSTS,
                "[{name: e, template: istio-error-rate, max: 0.01, compare: {maxIncrease: 0.01}}]",
            ),
        );
        let SideQueries::Ready { value, .. } = &plan.metrics[0].canary else {
            panic!("{plan:?}");
        };
        assert!(value.contains(r#"destination_service="checkout.stage.svc.cluster.local""#));
        assert!(!value.contains("destination_version"), "{value}");
        let Some(SideQueries::Ready { value, .. }) = &plan.metrics[0].stable else {
            panic!("{plan:?}");
        };
        // The short stable host is expanded in the VirtualService's namespace.
        assert!(value.contains(r#"destination_service="checkout.shop.svc.cluster.local""#));
        let SideQueries::Ready { value, .. } = &plan.canary_requests else {
            panic!("{plan:?}");
        };
        assert_eq!(
            value,
            r#"sum(increase(istio_requests_total{reporter="destination",destination_service="checkout.stage.svc.cluster.local"}[30s]))"#
        );
    }

    #[test]
    fn compare_needs_a_side_dependent_query() {
        let fixed = PolicyQueries::plan(
            &policy(),
            &spec(
                ISTIO_HOSTS,
                r#"[{name: x, query: 'sum(up{job="a"})', compare: {maxRatio: 2}}]"#,
            ),
        );
        let Some(SideQueries::Failed(message)) = &fixed.metrics[0].stable else {
            panic!("{fixed:?}");
        };
        assert!(
            message.contains("stableQuery") && message.contains("`x`"),
            "{message}"
        );

        let reusable = PolicyQueries::plan(
            &policy(),
            &spec(
                ISTIO_HOSTS,
                r#"[{name: x, query: 'sum(up{svc="{{ target.host }}"})', compare: {maxRatio: 2}}]"#,
            ),
        );
        assert_eq!(
            reusable.metrics[0].stable,
            Some(SideQueries::Ready {
                value: r#"sum(up{svc="checkout.shop.svc.cluster.local"})"#.to_owned(),
                requests: None,
                errors: None,
            })
        );
    }

    #[test]
    fn istio_templates_on_an_envoy_router_fail_by_name() {
        let plan = PolicyQueries::plan(
            &policy(),
            &spec(
                "{envoy: {routesFile: r.yaml, adminAddress: '127.0.0.1:9901', stableCluster: s, canaryCluster: c}}",
                "[{name: e, template: istio-error-rate, max: 0.01}, {name: f, template: nope, max: 1}]",
            ),
        );
        let SideQueries::Failed(message) = &plan.metrics[0].canary else {
            panic!("{plan:?}");
        };
        assert!(
            message.contains("target.host") && message.contains("envoy"),
            "{message}"
        );
        let SideQueries::Failed(message) = &plan.metrics[1].canary else {
            panic!("{plan:?}");
        };
        assert!(message.contains("unknown template `nope`"), "{message}");
    }

    #[test]
    fn assemble_fills_counts_and_never_invents_numbers() {
        let side = SideQueries::Ready {
            value: "v".to_owned(),
            requests: Some("r".to_owned()),
            errors: Some("e".to_owned()),
        };
        let answers = HashMap::from([
            ("v".to_owned(), Sample::value(0.05)),
            ("r".to_owned(), Sample::value(200.0)),
            ("e".to_owned(), Sample::NoData),
        ]);
        let Sample::Value(m) = assemble(&side, &answers) else {
            panic!("no value");
        };
        assert_eq!((m.value, m.requests, m.errors), (0.05, Some(200.0), None));
        let answers = HashMap::from([("v".to_owned(), Sample::NotANumber)]);
        assert_eq!(assemble(&side, &answers), Sample::NotANumber);
    }
}
