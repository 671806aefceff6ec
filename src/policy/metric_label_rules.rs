//! The rules on how the analysis tells stable's series from the canary's:
//! `analysis.targetLabels`, `analysis.requests`, `analysis.judgeTestRoute`, and whether
//! the policy's templates can fit its router (a Service router has no mesh: Istio's
//! metrics may not exist). Part of `policy::validate`; pure.

use super::diagnostic::{index, Issue};
use super::templates::{builtin, is_label_name};
use super::types::*;

pub(super) fn target_selection(
    a: &AnalysisSpec,
    metrics: &[Option<&MetricSpec>],
    router: Option<&RouterSpec>,
    test_route: bool,
    issues: &mut Vec<Issue>,
) {
    let path = "spec.analysis";
    if let Some(labels) = &a.target_labels {
        target_labels(labels, &format!("{path}.targetLabels"), issues);
    }
    if let Some(requests) = &a.requests {
        let rpath = format!("{path}.requests");
        if requests.trim().is_empty() {
            issues.push(
                Issue::error(&rpath, "query is empty")
                    .with_hint("write a PromQL count, e.g. `sum(increase(http_requests_total{version=\"{{ target.subset }}\"}[{{ interval }}]))`"),
            );
        } else if requests.matches("{{").count() != requests.matches("}}").count() {
            issues.push(
                Issue::error(&rpath, "unbalanced `{{ … }}` template braces")
                    .with_hint("close every `{{ variable` with `}}`"),
            );
        } else if !requests.contains("target.") && !requests.contains("canary.") {
            issues.push(
                Issue::warning(&rpath, "the request count does not depend on the canary: it counts the same requests whatever the release")
                    .with_hint("select the canary's requests with `{{ target.subset }}`, `{{ target.host }}` or `{{ target.label.NAME }}`"),
            );
        }
    }
    if a.judge_test_route && !test_route {
        issues.push(
            Issue::error(
                format!("{path}.judgeTestRoute"),
                "judgeTestRoute judges the canary on the test route's traffic, but there is no spec.testRoute",
            )
            .with_hint("add a `testRoute` (cookie or header), or remove `judgeTestRoute`"),
        );
    }
    let service = router.is_some_and(|r| r.service.is_some());
    let service_key_is_label = router
        .and_then(|r| r.service.as_ref())
        .is_some_and(|s| is_label_name(&s.selector_key));
    let mut uses_template = false;
    for (i, metric) in metrics.iter().enumerate() {
        let Some(metric) = metric else { continue };
        let Some(template) = metric.template.as_deref().and_then(builtin) else {
            continue;
        };
        uses_template = true;
        let tpath = format!("{}.template", index(&format!("{path}.metrics"), i));
        let family = template.family();
        match family {
            "istio" | "envoy" if service => issues.push(
                Issue::warning(
                    &tpath,
                    format!(
                        "template `{}` reads {family} telemetry, but a Service router needs no mesh or proxy: on a cluster without {family} it finds no series and every evaluation is Inconclusive",
                        template.name
                    ),
                )
                .with_hint("use the app's own counters (`app-…` templates with a label per version) or `nginx-…` behind ingress-nginx"),
            ),
            "nginx" if a.target_labels.is_none() => issues.push(
                Issue::error(&tpath, format!("template `{}` needs the label that tells the releases apart", template.name))
                    .with_hint("set spec.analysis.targetLabels, e.g. `{stable: {ingress: web}, canary: {ingress: web-canary}}`"),
            ),
            "app" if a.target_labels.is_none() && !service_key_is_label => issues.push(
                Issue::error(&tpath, format!("template `{}` needs the label of your counters that tells the releases apart", template.name))
                    .with_hint("set spec.analysis.targetLabels, e.g. `{stable: {version: blue}, canary: {version: green}}` (with a Service router whose selectorKey is a Prometheus label name, that label is the default)"),
            ),
            _ => {}
        }
    }
    // Without a built-in, `minRequests` counts the canary's requests from the router's
    // default family: Istio's, for a Service router.
    if service && !uses_template && a.requests.is_none() && a.min_requests > 0 {
        issues.push(
            Issue::warning(
                format!("{path}.minRequests"),
                "minRequests counts the canary's requests from istio_requests_total (no built-in template names another source): on a cluster without Istio the count is never there and every evaluation is Inconclusive",
            )
            .with_hint("add `requests:` with a query counting the canary's requests, or use `app-…` templates"),
        );
    }
}

fn target_labels(labels: &TargetLabels, path: &str, issues: &mut Vec<Issue>) {
    for (side, map) in [("stable", &labels.stable), ("canary", &labels.canary)] {
        if map.is_empty() {
            issues.push(
                Issue::error(
                    format!("{path}.{side}"),
                    "no labels: the query would select every release",
                )
                .with_hint("name at least one label, e.g. `{destination_workload: myapp-blue}`"),
            );
        }
        for (name, value) in map {
            if !is_label_name(name) {
                issues.push(
                    Issue::error(format!("{path}.{side}"), format!("`{name}` is not a Prometheus label name"))
                        .with_hint("use letters, digits and `_`, not starting with a digit or `__` (Prometheus turns `app.kubernetes.io/version` into e.g. `app_kubernetes_io_version`)"),
                );
            }
            if value.is_empty() {
                issues.push(
                    Issue::error(
                        format!("{path}.{side}.{name}"),
                        "the value is empty: it would match series without the label",
                    )
                    .with_hint("write the label's value for this release"),
                );
            }
        }
    }
    if !labels.stable.is_empty()
        && !labels.canary.is_empty()
        && !labels.stable.keys().eq(labels.canary.keys())
    {
        issues.push(
            Issue::error(
                path,
                "stable and canary name different labels: one template must select both",
            )
            .with_hint("name the same labels on both sides, with the value of each release"),
        );
    } else if !labels.stable.is_empty() && labels.stable == labels.canary {
        issues.push(
            Issue::error(path, "stable and canary have the same labels: the analysis would compare a release with itself")
                .with_hint("give each release its own value"),
        );
    }
}
