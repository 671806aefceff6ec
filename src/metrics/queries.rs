//! Which PromQL queries a policy needs for one evaluation: per metric, the canary's (and,
//! when the metric compares, stable's) value query, plus request and error counts where
//! a built-in can tell, plus the canary's request count for `minRequests`. Pure.
//!
//! A metric judged sequentially also gets count queries over the range its judge needs
//! (since the evidence was last counted): requests and errors, or histogram buckets
//! (`sum by (le)`), from the built-in or from the metric's `counts:`. In them
//! `{{ interval }}` is that range.

use std::collections::HashMap;
use std::sync::Arc;

use super::builtin::{self, Matcher};
use super::grouping::Grouping;
use super::matchers::{matchers, request_family};
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
        /// Histogram bucket counts, one series per `le` (latency judged sequentially).
        buckets: Option<String>,
        /// The counts are for a sequential judge: they count even when the window's
        /// value is missing.
        judged_on_counts: bool,
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
    /// The built-in queries that a batch may ask together with other targets' (by
    /// query; [`super::grouping`]).
    pub groupings: Vec<(String, Grouping)>,
}

impl PolicyQueries {
    /// Builds the queries of `spec`, counts over the query window.
    pub fn plan(policy: &PolicyRef, spec: &RolloutSpec) -> PolicyQueries {
        PolicyQueries::plan_counting(policy, spec, None)
    }

    /// Builds the queries of `spec`; the sequential metrics' counts cover `counts_range`
    /// (a PromQL duration such as `45s`) when given, else the query window.
    pub fn plan_counting(
        policy: &PolicyRef,
        spec: &RolloutSpec,
        counts_range: Option<&str>,
    ) -> PolicyQueries {
        let variables = Variables::new(policy, spec);
        let mut counting = variables.clone();
        if let Some(range) = counts_range {
            counting.interval = range.to_owned();
        }
        let mut groupings = Vec::new();
        let mut metrics = Vec::with_capacity(spec.analysis.metrics.len());
        for metric in &spec.analysis.metrics {
            let mut side =
                |side| metric_queries(metric, &variables, &counting, side, &mut groupings);
            let canary = side(Side::Canary);
            let stable = metric.compare.as_ref().map(|_| side(Side::Stable));
            metrics.push(MetricQueries {
                name: metric.name.clone(),
                canary,
                stable,
            });
        }
        PolicyQueries {
            metrics,
            canary_requests: request_count(spec, &variables, &mut groupings),
            groupings,
        }
    }

    /// Every distinct histogram query (one series per `le`), each once.
    pub fn distinct_histograms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for side in self.sides() {
            if let SideQueries::Ready {
                buckets: Some(q), ..
            } = side
            {
                if !out.contains(q) {
                    out.push(q.clone());
                }
            }
        }
        out
    }

    fn sides(&self) -> impl Iterator<Item = &SideQueries> {
        self.metrics
            .iter()
            .flat_map(|m| std::iter::once(&m.canary).chain(m.stable.as_ref()))
    }

    /// Every distinct query of one number, each once.
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
                ..
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

/// The PromQL range of [`since`, `at`]: whole seconds as `45s`, else milliseconds; at
/// least `1ms` (a range that is empty or reversed counts nothing, and says so).
pub fn counts_range(since: crate::policy::Timestamp, at: crate::policy::Timestamp) -> String {
    let millis = at.signed_duration_since(since).num_milliseconds().max(1);
    if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
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
            buckets,
            judged_on_counts,
        } => {
            let histogram = match buckets.as_ref().map(answer) {
                None => None,
                Some(Sample::Value(h)) => Some(h),
                // No series: no counts, which the judge calls no data. A failed
                // query is that failure, never "no counts".
                Some(Sample::NoData | Sample::NotANumber) => Some(Measured::default()),
                Some(failed) => return failed,
            };
            let counts = Measured {
                requests: histogram
                    .as_ref()
                    .and_then(|h| h.requests)
                    .or_else(|| count(requests)),
                errors: count(errors),
                buckets: histogram.map(|h| h.buckets).unwrap_or_default(),
                ..Measured::default()
            };
            let counted = counts.requests.is_some() || !counts.buckets.is_empty();
            match answer(value) {
                Sample::Value(measured) => Sample::Value(Measured {
                    value: measured.value,
                    series: measured.series,
                    ..counts
                }),
                // The window's value is missing (no requests in it, at low traffic) but
                // the counts are there: the counts still count; the value stays NaN,
                // which every threshold reads as not a number.
                Sample::NoData | Sample::NotANumber if counted && *judged_on_counts => {
                    Sample::Value(Measured {
                        value: f64::NAN,
                        ..counts
                    })
                }
                other => other,
            }
        }
    }
}

fn render(metric: &str, text: &str, variables: &Variables) -> Result<String, String> {
    Template::parse(metric, text)
        .and_then(|t| t.render(variables))
        .map_err(|e| e.to_string())
}

fn metric_queries(
    metric: &MetricSpec,
    variables: &Variables,
    counting: &Variables,
    side: Side,
    groupings: &mut Vec<(String, Grouping)>,
) -> SideQueries {
    let variables = variables.with_side(side);
    // Counts over the judge's range only for a metric judged sequentially; others keep
    // the window's counts, beside their window's value.
    let counting = match metric.sequential() {
        Some(_) => counting.with_side(side),
        None => variables.clone(),
    };
    let name = &metric.name;
    let sequential = metric.sequential().is_some();
    let result = match (&metric.template, &metric.query) {
        (Some(template), None) => {
            builtin_queries(name, template, &variables, &counting, sequential, groupings)
        }
        (None, Some(query)) => raw_queries(metric, query, &variables, &counting),
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
    counting: &Variables,
    sequential: bool,
    groupings: &mut Vec<(String, Grouping)>,
) -> Result<SideQueries, String> {
    let builtin = builtin::lookup(template).ok_or_else(|| {
        let known: Vec<&str> = builtin::BUILTINS.iter().map(|b| b.name).collect();
        format!(
            "metric `{metric}`: unknown template `{template}`; built-in templates: {}",
            known.join(", ")
        )
    })?;
    let matchers =
        matchers(builtin.family, variables).map_err(|why| format!("metric `{metric}`: {why}"))?;
    let queries = builtin.queries(&matchers);
    let buckets = match (&queries.buckets, sequential) {
        (Some(b), true) => Some(render(metric, b, counting)?),
        _ => None,
    };
    let ready = SideQueries::Ready {
        value: render(metric, &queries.value, variables)?,
        requests: Some(render(metric, &queries.requests, counting)?),
        errors: Some(render(metric, &queries.errors, counting)?),
        buckets,
        judged_on_counts: sequential,
    };
    if let (
        SideQueries::Ready {
            value,
            requests,
            errors,
            buckets,
            ..
        },
        Some(group),
    ) = (&ready, Group::of(builtin, &matchers, variables))
    {
        let grouped = &group.queries;
        group.add(groupings, value, &grouped.value, variables);
        for (lone, text) in [(requests, &grouped.requests), (errors, &grouped.errors)] {
            if let Some(lone) = lone {
                group.add(groupings, lone, text, counting);
            }
        }
        if let (Some(lone), Some(text)) = (buckets, &grouped.buckets) {
            group.add(groupings, lone, text, counting);
        }
    }
    Ok(ready)
}

/// The grouped forms of one built-in for one target ([`super::grouping`]).
struct Group {
    queries: builtin::BuiltinQueries,
    labels: Arc<[String]>,
    values: Vec<String>,
}

impl Group {
    /// `None` when the built-in has no target label (every target asks the same query)
    /// or a value is missing.
    fn of(builtin: builtin::Builtin, matchers: &[Matcher], variables: &Variables) -> Option<Group> {
        let targets = builtin.family.target_matchers(matchers);
        if targets.is_empty() {
            return None;
        }
        let labels: Arc<[String]> = targets.iter().map(|m| m.label.clone()).collect();
        let values = targets
            .iter()
            .map(|m| variables.lookup(&m.variable).ok())
            .collect::<Option<Vec<String>>>()?;
        let queries =
            builtin.grouped_queries(&labels.join(", "), &builtin.family.group_selector(matchers));
        Some(Group {
            queries,
            labels,
            values,
        })
    }

    /// Notes how `lone` (rendered from a built-in's template with `variables`) may be
    /// grouped: the grouped `text` with the same window. (Its only variable is
    /// `{{ interval }}`, substituted as the template does in that place: a bare duration.)
    fn add(
        &self,
        groupings: &mut Vec<(String, Grouping)>,
        lone: &str,
        text: &str,
        variables: &Variables,
    ) {
        if groupings.iter().any(|(q, _)| q == lone) {
            return;
        }
        let Ok(interval) = super::escape::bare_token(&variables.interval) else {
            return;
        };
        let shape = text.replace("{{ interval }}", interval);
        if let Some(grouping) = Grouping::new(shape, Arc::clone(&self.labels), self.values.clone())
        {
            groupings.push((lone.to_owned(), grouping));
        }
    }
}

fn raw_queries(
    metric: &MetricSpec,
    query: &str,
    variables: &Variables,
    counting: &Variables,
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
    // `counts:` describes the side being queried through `{{ target.* }}`.
    let counts = metric
        .counts
        .as_ref()
        .filter(|_| metric.sequential().is_some());
    let count = |q: Option<&String>| q.map(|q| render(name, q, counting)).transpose();
    Ok(SideQueries::Ready {
        value: render(name, text, variables)?,
        requests: count(counts.and_then(|c| c.requests.as_ref()))?,
        errors: count(counts.and_then(|c| c.errors.as_ref()))?,
        buckets: count(counts.and_then(|c| c.buckets.as_ref()))?,
        judged_on_counts: counts.is_some(),
    })
}

/// The canary's request count: `spec.analysis.requests` when set, else the requests
/// query of [`request_family`].
fn request_count(
    spec: &RolloutSpec,
    variables: &Variables,
    groupings: &mut Vec<(String, Grouping)>,
) -> SideQueries {
    let variables = variables.with_side(Side::Canary);
    let ready = |value| SideQueries::Ready {
        value,
        requests: None,
        errors: None,
        buckets: None,
        judged_on_counts: false,
    };
    if let Some(text) = &spec.analysis.requests {
        return render("spec.analysis.requests", text, &variables)
            .map_or_else(SideQueries::Failed, ready);
    }
    let family = request_family(spec);
    let request_rate = builtin::BUILTINS
        .iter()
        .find(|b| b.family == family && b.measure == builtin::Measure::RequestRate);
    let Some(request_rate) = request_rate else {
        return SideQueries::Failed("no request-count query for the router".to_owned());
    };
    let matchers = match matchers(family, &variables) {
        Ok(matchers) => matchers,
        Err(why) => return SideQueries::Failed(format!("canary requests: {why}")),
    };
    let queries = request_rate.queries(&matchers);
    let rendered = render("canary requests", &queries.requests, &variables);
    if let (Ok(lone), Some(group)) = (&rendered, Group::of(*request_rate, &matchers, &variables)) {
        group.add(groupings, lone, &group.queries.requests, &variables);
    }
    rendered.map_or_else(SideQueries::Failed, ready)
}

/// The raw samples of the canary's request counter over the last
/// [`super::freshness::LEARN_RANGE`]: their timestamps tell when new data lands.
/// `None` when the requests come from a custom query (its series are not known).
pub fn freshness_query(policy: &PolicyRef, spec: &RolloutSpec) -> Option<String> {
    if spec.analysis.requests.is_some() {
        return None;
    }
    let variables = Variables::new(policy, spec).with_side(Side::Canary);
    let family = request_family(spec);
    let selector = family.selector(&matchers(family, &variables).ok()?);
    let series = family.total(&selector);
    let text = format!("{series}[{}]", super::freshness::LEARN_RANGE);
    render("canary request samples", &text, &variables).ok()
}

#[cfg(test)]
#[path = "queries_tests.rs"]
mod tests;
