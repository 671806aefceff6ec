//! Semantic validation: rules the schema cannot say (steps increase and end at 100, one
//! router, a criterion per metric, valid cron, regex and URLs, …). Pure: it takes the
//! typed spec and returns every issue, each at a field path starting with `spec.`. The
//! CLI places them in files; the daemon puts them in a custom resource's status.

use std::collections::BTreeMap;

use super::analysis_rules::analysis;
use super::diagnostic::{index, Issue};
use super::duration::Duration;
use super::hooks::HookSpec;
use super::names::{
    dns_label, dns_subdomain, host_port, http_url, is_token, label_key, label_value, object_ref,
};
use super::notify::NotifySpec;
use super::step::StepSpec;
use super::structure::nearest;
use super::types::*;
use super::window::window_field_issues;

pub use super::report::{check_paths, Report};

/// Every issue of a spec, errors and warnings, in field order.
pub fn validate_spec(spec: &RolloutSpec) -> Vec<Issue> {
    validate_parts(&SpecParts::whole(spec))
}

/// What the rules read of a spec. From a complete spec every part is there; from a
/// document with structural errors only what could be read: `None` is a part that could
/// not be read, a `None` item a list item that was rejected. Each rule runs on the parts
/// it needs, so the rules that do not need a missing part still run.
#[derive(Clone, Debug, Default)]
pub(super) struct SpecParts<'a> {
    pub revision: Option<&'a str>,
    pub router: Option<&'a RouterSpec>,
    /// `spec.canaryColor`.
    pub canary_color: Option<&'a str>,
    /// Whether `router` is exactly what is written, so rules on other parts may read it.
    pub router_complete: bool,
    pub test_route_written: bool,
    pub steps: Option<Vec<Option<&'a StepSpec>>>,
    pub test_route: Option<&'a TestRoute>,
    pub checks: Vec<Option<&'a CheckSpec>>,
    /// Its `metrics` are not read: `metrics` are.
    pub analysis: Option<&'a AnalysisSpec>,
    pub metrics: Vec<Option<&'a MetricSpec>>,
    pub windows: Vec<WindowFields<'a>>,
    pub grafana: Option<&'a GrafanaSpec>,
    pub notify: Vec<Option<&'a NotifySpec>>,
    pub hooks: Vec<Option<&'a HookSpec>>,
    pub workloads: Option<&'a super::workloads::WorkloadsSpec>,
}

/// The readable fields of one deployment window.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct WindowFields<'a> {
    pub schedule: Option<&'a str>,
    pub time_zone: Option<&'a str>,
    pub duration: Option<Duration>,
}

impl<'a> SpecParts<'a> {
    pub fn whole(spec: &'a RolloutSpec) -> Self {
        SpecParts {
            // Absent (serde's default) reads as not written.
            revision: Some(spec.revision.as_str()).filter(|r| !r.is_empty()),
            router: Some(&spec.router),
            canary_color: spec.canary_color.as_deref(),
            router_complete: true,
            test_route_written: spec.test_route.is_some(),
            steps: Some(spec.steps.iter().map(Some).collect()),
            test_route: spec.test_route.as_deref(),
            checks: spec.checks.iter().map(Some).collect(),
            analysis: Some(&spec.analysis),
            metrics: spec.analysis.metrics.iter().map(Some).collect(),
            windows: spec
                .windows
                .iter()
                .map(|w| WindowFields {
                    schedule: Some(&w.schedule),
                    time_zone: Some(&w.time_zone),
                    duration: Some(w.duration),
                })
                .collect(),
            grafana: spec.grafana.as_deref(),
            notify: spec.notify.iter().map(Some).collect(),
            hooks: spec.hooks.iter().map(Some).collect(),
            workloads: spec.workloads.as_deref(),
        }
    }
}

/// Every issue of the readable parts of a spec.
pub(super) fn validate_parts(parts: &SpecParts<'_>) -> Vec<Issue> {
    let mut issues = super::limits::spec_issues(parts);
    let colours = parts
        .router
        .map(super::colours::colour_keys)
        .unwrap_or_default();
    super::workloads::workloads_issues(parts.workloads, parts.revision, &colours, &mut issues);
    if let Some(r) = parts.router {
        super::colours::issues(r, parts.canary_color, &mut issues);
        // With colours, the rules on stable and canary read the colours (in the order
        // declared): what the router will be given once the live colour is known.
        let oriented = super::colours::colour_names(r)
            .and_then(|[first, _]| super::colours::orient_router(r, &first));
        if super::colours::has_colours(r) && oriented.is_none() {
            // The colours' own errors say what is wrong; stable/canary are not written.
        } else {
            router(
                oriented.as_ref().unwrap_or(r),
                parts.test_route_written,
                &mut issues,
            );
        }
    }
    // Rules on other parts read the router only when it is what the user wrote.
    let router = parts.router.filter(|_| parts.router_complete);
    if let Some(steps) = &parts.steps {
        // Only when it is the one router: with several, the router error says it all.
        let service =
            router.is_some_and(|r| r.service.is_some() && r.istio.is_none() && r.envoy.is_none());
        steps_rule(steps, service, &mut issues);
    }
    if let Some(route) = parts.test_route {
        test_route(route, &mut issues);
    }
    for (i, check) in parts.checks.iter().enumerate() {
        if let Some(check) = check {
            http_check(&check.http, &index("spec.checks", i), &mut issues);
        }
    }
    if let Some(a) = parts.analysis {
        analysis(a, &parts.metrics, router, &mut issues);
        super::metric_label_rules::target_selection(
            a,
            &parts.metrics,
            router,
            parts.test_route_written,
            &mut issues,
        );
    }
    for (i, window) in parts.windows.iter().enumerate() {
        issues.extend(window_field_issues(
            &index("spec.windows", i),
            window.schedule,
            window.time_zone,
            window.duration,
        ));
    }
    if let Some(grafana) = parts.grafana {
        http_url(&grafana.url, "spec.grafana.url", &mut issues);
        if grafana.dashboard.trim().is_empty() {
            issues.push(Issue::error(
                "spec.grafana.dashboard",
                "dashboard uid is empty",
            ));
        }
    }
    if let Some(annotations) = parts.grafana.and_then(|g| g.annotations.as_ref()) {
        super::notify::annotation_issues(annotations, &mut issues);
    }
    super::notify::notify_issues(&parts.notify, &mut issues);
    super::hook_rules::hooks(&parts.hooks, &mut issues);
    issues
}

/// `metadata.name` and `metadata.namespace` must be Kubernetes object names.
pub fn validate_metadata(name: Option<&str>, namespace: Option<&str>) -> Vec<Issue> {
    let mut issues = Vec::new();
    match name {
        None => issues.push(
            Issue::error("metadata", "missing required field `name`")
                .with_hint("add `name:` under `metadata`, e.g. `name: checkout`"),
        ),
        Some(name) => {
            if let Err(why) = dns_subdomain(name) {
                issues.push(
                    Issue::error(
                        "metadata.name",
                        format!("`{name}` is not a valid name: {why}"),
                    )
                    .with_hint(
                        "use lowercase letters, digits, `-` and `.`, e.g. `checkout-canary`",
                    ),
                );
            }
        }
    }
    if let Some(namespace) = namespace {
        if let Err(why) = dns_label(namespace) {
            issues.push(
                Issue::error(
                    "metadata.namespace",
                    format!("`{namespace}` is not a valid namespace: {why}"),
                )
                .with_hint("use lowercase letters, digits and `-`, e.g. `shop`"),
            );
        }
    }
    issues
}

fn router(r: &RouterSpec, test_route_written: bool, issues: &mut Vec<Issue>) {
    let set: Vec<&str> = [
        r.istio.as_ref().map(|_| "istio"),
        r.service.as_ref().map(|_| "service"),
        r.envoy.as_ref().map(|_| "envoy"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match set.len() {
        0 => issues.push(
            Issue::error("spec.router", "no router is set")
                .with_hint("set exactly one of `istio`, `service` or `envoy`"),
        ),
        1 => {}
        _ => issues.push(
            Issue::error(
                "spec.router",
                format!(
                    "{} routers are set ({}); a policy drives exactly one",
                    set.len(),
                    set.join(", ")
                ),
            )
            .with_hint("keep one of them and move the other routes to their own policy"),
        ),
    }
    if let Some(istio) = &r.istio {
        let path = "spec.router.istio";
        object_ref(
            &istio.virtual_service,
            &format!("{path}.virtualService"),
            "VirtualService",
            issues,
        );
        let mut seen = BTreeMap::new();
        for (i, route) in istio.routes.iter().enumerate() {
            let route_path = index(&format!("{path}.routes"), i);
            if route.trim().is_empty() {
                issues.push(
                    Issue::error(route_path, "route name is empty")
                        .with_hint("write the `name:` of an http route of the VirtualService"),
                );
            } else if let Some(first) = seen.insert(route.as_str(), i) {
                issues.push(
                    Issue::error(
                        route_path,
                        format!("route `{route}` is listed twice (also routes[{first}])"),
                    )
                    .with_hint("list each route once"),
                );
            }
        }
        for (side, dest) in [("stable", &istio.stable), ("canary", &istio.canary)] {
            if dest.host.trim().is_empty() {
                issues.push(
                    Issue::error(format!("{path}.{side}.host"), "host is empty").with_hint(
                        "write the destination host, e.g. `checkout.prod.svc.cluster.local`",
                    ),
                );
            }
            if dest.subset.as_deref().is_some_and(|s| s.trim().is_empty()) {
                issues.push(
                    Issue::error(format!("{path}.{side}.subset"), "subset is empty").with_hint(
                        "write a subset name of the DestinationRule, or remove `subset`",
                    ),
                );
            }
        }
        if istio.stable == istio.canary {
            issues.push(
                Issue::error(format!("{path}.canary"), "canary is the same destination as stable: shifting traffic would change nothing")
                    .with_hint("point canary at the new release: another host (e.g. `…stage…`) or another `subset`"),
            );
        }
    }
    if let Some(service) = &r.service {
        let path = "spec.router.service";
        object_ref(
            &service.service,
            &format!("{path}.service"),
            "Service",
            issues,
        );
        if let Err(why) = label_key(&service.selector_key) {
            issues.push(
                Issue::error(
                    format!("{path}.selectorKey"),
                    format!("`{}` is not a label key: {why}", service.selector_key),
                )
                .with_hint("write a label key such as `version` or `color`"),
            );
        }
        for (field, value) in [
            ("stableValue", &service.stable_value),
            ("canaryValue", &service.canary_value),
        ] {
            if let Err(why) = label_value(value) {
                issues.push(
                    Issue::error(
                        format!("{path}.{field}"),
                        format!("`{value}` is not a label value: {why}"),
                    )
                    .with_hint(
                        "use letters, digits, `-`, `_` and `.`, at most 63 characters, e.g. `blue`",
                    ),
                );
            }
        }
        if service.stable_value == service.canary_value {
            issues.push(
                Issue::error(
                    format!("{path}.canaryValue"),
                    "canaryValue equals stableValue: switching the selector would change nothing",
                )
                .with_hint("use the label value of the new release, e.g. `green`"),
            );
        }
        if test_route_written {
            issues.push(Issue::error("spec.testRoute", "the `service` router cannot route by cookie or header: a selector switch moves all traffic at once").with_hint("remove `testRoute`, or use the istio or envoy router"));
        }
    }
    if let Some(envoy) = &r.envoy {
        let path = "spec.router.envoy";
        if envoy.routes_file.trim().is_empty() {
            issues.push(
                Issue::error(format!("{path}.routesFile"), "routesFile is empty").with_hint(
                    "write the path of the RDS file Envoy watches, e.g. `/tmp/envoy/routes.yaml`",
                ),
            );
        }
        if let Err(why) = host_port(&envoy.admin_address) {
            issues.push(
                Issue::error(
                    format!("{path}.adminAddress"),
                    format!(
                        "`{}` is not an admin address: {why}",
                        crate::redact::urls(&envoy.admin_address)
                    ),
                )
                .with_hint("write `host:port`, e.g. `127.0.0.1:9901`"),
            );
        }
        for (field, cluster) in [
            ("stableCluster", &envoy.stable_cluster),
            ("canaryCluster", &envoy.canary_cluster),
        ] {
            if cluster.trim().is_empty() {
                issues.push(
                    Issue::error(format!("{path}.{field}"), "cluster name is empty")
                        .with_hint("write the name of an Envoy cluster"),
                );
            }
        }
        if envoy.stable_cluster == envoy.canary_cluster {
            issues.push(Issue::error(format!("{path}.canaryCluster"), "canaryCluster is the same as stableCluster: shifting traffic would change nothing").with_hint("name the cluster of the new release"));
        }
        if envoy.domains.is_empty() {
            issues.push(
                Issue::error(
                    format!("{path}.domains"),
                    "no domains: the route would serve no request",
                )
                .with_hint("write `[\"*\"]` or the hosts to serve"),
            );
        }
    }
}

/// `steps[i]` is `None` when that item was rejected: it is neither judged nor compared.
fn steps_rule(steps: &[Option<&StepSpec>], service: bool, issues: &mut Vec<Issue>) {
    if steps.is_empty() {
        issues.push(
            Issue::error("spec.steps", "no steps")
                .with_hint("write the canary weights in percent, e.g. `[0, 30, 60, 100]`"),
        );
        return;
    }
    let mut previous: Option<u8> = None;
    for (i, step) in steps.iter().enumerate() {
        let Some(step) = step else {
            previous = None;
            continue;
        };
        let path = index("spec.steps", i);
        let weight = step.weight;
        if weight > 100 {
            issues.push(
                Issue::error(&path, format!("weight {weight} is outside 0..=100"))
                    .with_hint("write a percentage from 0 to 100"),
            );
        } else if service && weight != 0 && weight != 100 {
            issues.push(
                Issue::error(&path, format!("weight {weight} is not possible with the `service` router: a selector switch sends all traffic to one release"))
                    .with_hint("use only 0 and 100 (e.g. `[0, 100]`), or the istio or envoy router for gradual steps"),
            );
        }
        if let Some(before) = previous {
            if weight <= before {
                issues.push(
                    Issue::error(&path, format!("weight {weight} does not exceed the previous step's {before}: steps must strictly increase"))
                        .with_hint("order the weights from low to high, each once, e.g. `[0, 30, 60, 100]`"),
                );
            }
        }
        previous = Some(weight);
    }
    if let Some(Some(last)) = steps.last() {
        if last.weight != 100 {
            issues.push(
                Issue::error(index("spec.steps", steps.len() - 1), format!("the last step is {}, not 100: the rollout could never finish", last.weight))
                    .with_hint("end the steps with 100; to stop part-way, pause the last step with `{weight: 100, pause: true}` or use `pause: true` on an earlier one"),
            );
        }
    }
}

fn test_route(route: &TestRoute, issues: &mut Vec<Issue>) {
    let path = "spec.testRoute";
    match (&route.cookie, &route.header) {
        (Some(_), Some(_)) => issues.push(
            Issue::error(path, "both `cookie` and `header` are set")
                .with_hint("keep one: the test route matches a cookie or a header"),
        ),
        (None, None) => issues.push(
            Issue::error(path, "neither `cookie` nor `header` is set").with_hint(
                "write `cookie: \"test=true\"` or `header: {name: x-version, exact: v2}`",
            ),
        ),
        _ => {}
    }
    if let Some(cookie) = &route.cookie {
        let valid = cookie.split_once('=').is_some_and(|(name, value)| {
            is_token(name) && !value.is_empty() && !value.contains([';', ',', ' ', '"'])
        });
        if !valid {
            issues.push(
                Issue::error(
                    format!("{path}.cookie"),
                    format!("`{cookie}` is not `name=value`"),
                )
                .with_hint("write the cookie as `name=value`, e.g. `test=true`"),
            );
        }
    }
    if let Some(header) = &route.header {
        let hpath = format!("{path}.header");
        if !is_token(&header.name) {
            issues.push(
                Issue::error(
                    format!("{hpath}.name"),
                    format!("`{}` is not a header name", header.name),
                )
                .with_hint("write a header name such as `x-version`"),
            );
        } else if header.name.eq_ignore_ascii_case("cookie") {
            issues.push(
                Issue::warning(
                    format!("{hpath}.name"),
                    "matching the whole `cookie` header is brittle",
                )
                .with_hint("use `testRoute.cookie: name=value` instead"),
            );
        }
        match (&header.exact, &header.regex) {
            (Some(_), Some(_)) => issues.push(
                Issue::error(&hpath, "both `exact` and `regex` are set")
                    .with_hint("keep one of them"),
            ),
            (None, None) => issues.push(
                Issue::error(&hpath, "neither `exact` nor `regex` is set")
                    .with_hint("add `exact: v2` or `regex: \"v2.*\"`"),
            ),
            _ => {}
        }
        if let Some(pattern) = &header.regex {
            if let Err(e) = regex::Regex::new(pattern) {
                let reason = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("error: ")
                    .to_owned();
                issues.push(Issue::error(format!("{hpath}.regex"), format!("`{pattern}` is not a valid regular expression: {reason}")).with_hint("write an RE2 regular expression (as Istio and Envoy read them), e.g. `v2|canary`"));
            }
        }
    }
}

fn http_check(check: &HttpCheck, path: &str, issues: &mut Vec<Issue>) {
    let path = format!("{path}.http");
    http_url(&check.url, &format!("{path}.url"), issues);
    const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
    if !METHODS.contains(&check.method.as_str()) {
        let issue = Issue::error(
            format!("{path}.method"),
            format!("`{}` is not an HTTP method", check.method),
        );
        issues.push(match nearest(&check.method, METHODS.iter().copied()) {
            Some(m) => issue.with_hint(format!("did you mean `{m}`?")),
            None => issue.with_hint("write one of GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"),
        });
    }
    if !(100..=599).contains(&check.expect_status) {
        issues.push(
            Issue::error(
                format!("{path}.expectStatus"),
                format!("{} is not an HTTP status", check.expect_status),
            )
            .with_hint("write a status from 100 to 599, e.g. 200"),
        );
    }
    if check.attempts == 0 {
        issues.push(
            Issue::error(
                format!("{path}.attempts"),
                "0 attempts: the check would never run",
            )
            .with_hint("write 1 or more"),
        );
    }
    if check.timeout.std().is_zero() {
        issues.push(
            Issue::error(
                format!("{path}.timeout"),
                "timeout is 0s: every attempt would fail",
            )
            .with_hint("write e.g. `5s`"),
        );
    }
    super::hook_rules::json_expectations(&check.expect_json, &format!("{path}.expectJson"), issues);
    for name in check.headers.keys() {
        if !is_token(name) {
            issues.push(
                Issue::error(
                    format!("{path}.headers"),
                    format!("`{name}` is not a header name"),
                )
                .with_hint("write header names such as `cookie` or `x-version`"),
            );
        }
    }
}
