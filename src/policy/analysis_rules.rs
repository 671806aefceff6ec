//! The rules of `spec.analysis`: Prometheus connection, metrics (template or query, a
//! criterion each, compare needs a stable side), limits that keep a failing canary from
//! lingering. Part of `policy::validate`; pure.

use std::collections::BTreeMap;

use super::diagnostic::{index, Issue};
use super::names::is_identifier;
use super::structure::nearest;
use super::templates::{builtin, BUILTIN_TEMPLATES};
use super::types::*;

/// `a.metrics` is not read: `metrics` are its metrics, `None` where one was rejected.
/// `router` is the policy's router when it is known (for template family warnings).
pub(super) fn analysis(
    a: &AnalysisSpec,
    metrics: &[Option<&MetricSpec>],
    router: Option<&RouterSpec>,
    issues: &mut Vec<Issue>,
) {
    let path = "spec.analysis";
    if a.interval.std().is_zero() {
        issues.push(
            Issue::error(format!("{path}.interval"), "interval is 0s")
                .with_hint("write the evaluation cadence, e.g. `30s`"),
        );
    }
    if a.window.is_some_and(|w| w.std().is_zero()) {
        issues.push(
            Issue::error(
                format!("{path}.window"),
                "window is 0s: no query would see data",
            )
            .with_hint(
                "leave it out to use the interval, or write a few scrape intervals, e.g. `5s`",
            ),
        );
    }
    if let Some(prometheus) = &a.prometheus {
        let ppath = format!("{path}.prometheus");
        if prometheus.timeout.std().is_zero() {
            issues.push(
                Issue::error(
                    format!("{ppath}.timeout"),
                    "timeout is 0s: every query would time out",
                )
                .with_hint("write e.g. `5s`"),
            );
        } else if prometheus.timeout > a.interval {
            issues.push(
                Issue::warning(
                    format!("{ppath}.timeout"),
                    format!(
                        "timeout {} is longer than the interval {}: evaluations would overlap",
                        prometheus.timeout, a.interval
                    ),
                )
                .with_hint("keep the timeout below the interval"),
            );
        }
        super::prometheus_rules::connection(prometheus, &ppath, issues);
    }
    if metrics.is_empty() {
        issues.push(
            Issue::warning(
                format!("{path}.metrics"),
                "no metrics: every step passes on its hold time and checks alone",
            )
            .with_hint("add e.g. `{name: error-rate, template: istio-error-rate, max: 0.01}`"),
        );
    } else if a.min_requests == 0 {
        issues.push(
            Issue::warning(
                format!("{path}.minRequests"),
                "minRequests is 0: a canary that received no traffic can pass",
            )
            .with_hint("write the fewest canary requests worth judging (per window for thresholds, in all for sequential comparisons), e.g. `100`"),
        );
    }
    let family = match router {
        Some(r) if r.istio.is_some() => Some("istio"),
        Some(r) if r.envoy.is_some() => Some("envoy"),
        _ => None,
    };
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, metric) in metrics.iter().enumerate() {
        let Some(metric) = metric else {
            continue;
        };
        let mpath = index(&format!("{path}.metrics"), i);
        if metric.name.trim().is_empty() {
            issues.push(
                Issue::error(format!("{mpath}.name"), "metric name is empty")
                    .with_hint("write a short name, e.g. `error-rate`"),
            );
        } else if let Some(first) = names.insert(metric.name.as_str(), i) {
            issues.push(
                Issue::error(
                    format!("{mpath}.name"),
                    format!(
                        "duplicate metric name `{}` (also metrics[{first}])",
                        metric.name
                    ),
                )
                .with_hint("give every metric its own name"),
            );
        }
        metric_spec(metric, &mpath, family, issues);
    }
    let max_failing = a.interval.as_secs_f64() * (f64::from(a.failure_limit) + 1.0);
    if max_failing > 3600.0 {
        issues.push(
            Issue::error(format!("{path}.failureLimit"), format!("failureLimit {} at interval {} lets a failing canary keep its traffic for {:.0} minutes", a.failure_limit, a.interval, max_failing / 60.0))
                .with_hint("keep (failureLimit + 1) × interval under 1h; 0 to 3 is usual"),
        );
    }
    let max_inconclusive = a.interval.as_secs_f64() * (f64::from(a.inconclusive_limit) + 1.0);
    if max_inconclusive > 24.0 * 3600.0 {
        issues.push(
            Issue::error(
                format!("{path}.inconclusiveLimit"),
                format!(
                    "inconclusiveLimit {} at interval {} waits {:.0} hours before `onInconclusive`",
                    a.inconclusive_limit,
                    a.interval,
                    max_inconclusive / 3600.0
                ),
            )
            .with_hint("keep (inconclusiveLimit + 1) × interval under 24h"),
        );
    }
    if a.inconclusive_limit == 0
        && a.on_inconclusive == OnInconclusive::Rollback
        && !metrics.is_empty()
    {
        issues.push(
            Issue::warning(format!("{path}.inconclusiveLimit"), "inconclusiveLimit 0 with onInconclusive rollback: a single missed scrape or Prometheus hiccup rolls back a healthy canary")
                .with_hint("tolerate a few inconclusive evaluations, e.g. `inconclusiveLimit: 4`, or use `onInconclusive: pause`"),
        );
    }
    for name in a.vars.keys() {
        if !is_identifier(name) {
            issues.push(
                Issue::error(
                    format!("{path}.vars"),
                    format!("`{name}` is not a variable name"),
                )
                .with_hint("use letters, digits and `_`, starting with a letter, e.g. `namespace`"),
            );
        }
    }
}

fn metric_spec(m: &MetricSpec, path: &str, family: Option<&str>, issues: &mut Vec<Issue>) {
    match (&m.template, &m.query) {
        (Some(_), Some(_)) => issues.push(
            Issue::error(
                path,
                format!("metric `{}` sets both `template` and `query`", m.name),
            )
            .with_hint("keep one: a built-in template or your own PromQL"),
        ),
        (None, None) => issues.push(
            Issue::error(
                path,
                format!("metric `{}` sets neither `template` nor `query`", m.name),
            )
            .with_hint(
                "add `template: istio-error-rate` (see docs/policy.md) or `query: <PromQL>`",
            ),
        ),
        _ => {}
    }
    if let Some(name) = &m.template {
        match builtin(name) {
            None => {
                let issue = Issue::error(
                    format!("{path}.template"),
                    format!("unknown template `{name}`"),
                );
                issues.push(
                    match nearest(name, BUILTIN_TEMPLATES.iter().map(|t| t.name)) {
                        Some(best) => issue.with_hint(format!("did you mean `{best}`?")),
                        None => issue.with_hint(format!(
                            "use one of: {}",
                            BUILTIN_TEMPLATES
                                .iter()
                                .map(|t| t.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    },
                );
            }
            Some(template) => {
                // The app's own and ingress-nginx counters do not depend on the router.
                let routed = matches!(template.family(), "istio" | "envoy");
                if let Some(family) = family.filter(|f| routed && *f != template.family()) {
                    issues.push(
                        Issue::warning(
                            format!("{path}.template"),
                            format!(
                                "template `{name}` reads {} telemetry, but the router is {family}",
                                template.family()
                            ),
                        )
                        .with_hint(format!("use the `{family}-…` template of the same measure")),
                    );
                }
                if template.unit.starts_with("ratio") && m.max.is_some_and(|max| max > 1.0) {
                    issues.push(
                        Issue::warning(
                            format!("{path}.max"),
                            format!(
                                "error rates are ratios from 0 to 1; max {} can never fail",
                                m.max.unwrap_or_default()
                            ),
                        )
                        .with_hint("write a ratio, e.g. `0.01` for 1%"),
                    );
                }
            }
        }
        if m.stable_query.is_some() {
            issues.push(
                Issue::error(
                    format!("{path}.stableQuery"),
                    "stableQuery is for raw queries; a template already knows the stable side",
                )
                .with_hint("remove `stableQuery`"),
            );
        }
    }
    for (field, text) in [("query", &m.query), ("stableQuery", &m.stable_query)] {
        if let Some(text) = text {
            if text.trim().is_empty() {
                issues.push(
                    Issue::error(format!("{path}.{field}"), "query is empty")
                        .with_hint("write a PromQL expression"),
                );
            } else if text.matches("{{").count() != text.matches("}}").count() {
                issues.push(
                    Issue::error(
                        format!("{path}.{field}"),
                        "unbalanced `{{ … }}` template braces",
                    )
                    .with_hint("close every `{{ variable` with `}}`"),
                );
            }
        }
    }
    if m.min.is_none() && m.max.is_none() && m.compare.is_none() {
        issues.push(
            Issue::error(
                path,
                format!(
                    "metric `{}` has no criterion, so it could never fail",
                    m.name
                ),
            )
            .with_hint("add `max:`, `min:` or `compare: {maxIncrease: …}`"),
        );
    }
    if let (Some(min), Some(max)) = (m.min, m.max) {
        if min > max {
            issues.push(
                Issue::error(
                    format!("{path}.min"),
                    format!("min {min} is above max {max}: every value fails"),
                )
                .with_hint("swap them"),
            );
        }
    }
    if let Some(compare) = &m.compare {
        let cpath = format!("{path}.compare");
        let threshold = m.sequential().is_none();
        if threshold && compare.max_increase.is_none() && compare.max_ratio.is_none() {
            issues.push(
                Issue::error(&cpath, "compare sets no limit")
                    .with_hint("add `maxIncrease:` (absolute) or `maxRatio:` (relative), or leave out `judge: threshold` to judge sequentially"),
            );
        }
        if compare.max_ratio.is_some_and(|r| r <= 0.0) {
            issues.push(
                Issue::error(format!("{cpath}.maxRatio"), "maxRatio must be above 0")
                    .with_hint("e.g. `1.5` fails a canary 50% worse than stable"),
            );
        }
        if compare.max_increase.is_some_and(|d| d < 0.0) {
            issues.push(
                Issue::warning(
                    format!("{cpath}.maxIncrease"),
                    "a negative maxIncrease fails a canary that is exactly as good as stable",
                )
                .with_hint("write 0 or more"),
            );
        }
        if m.query.is_some() && m.stable_query.is_none() {
            issues.push(
                Issue::error(
                    &cpath,
                    format!(
                        "metric `{}` compares a raw query with stable, but has no `stableQuery`",
                        m.name
                    ),
                )
                .with_hint("add `stableQuery:` with the same PromQL for the stable release"),
            );
        }
    }
    super::judge_rules::metric(m, path, issues);
    if m.compare.is_none() && m.stable_query.is_some() && m.query.is_some() {
        issues.push(
            Issue::warning(
                format!("{path}.stableQuery"),
                "stableQuery is only used by `compare`",
            )
            .with_hint("add `compare: {maxIncrease: …}` or remove `stableQuery`"),
        );
    }
}
