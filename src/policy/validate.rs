//! Semantic validation: rules the schema cannot say (steps increase and end at 100, one
//! router, a criterion per metric, valid cron, regex and URLs, …). Pure: it takes the
//! typed spec and returns every issue, each at a field path starting with `spec.`. The
//! CLI places them in files; the daemon puts them in a custom resource's status.

use std::collections::BTreeMap;

use super::diagnostic::{index, Issue};
use super::structure::nearest;
use super::templates::{builtin, BUILTIN_TEMPLATES};
use super::types::*;
use super::window::Windows;

pub use super::report::{check_paths, Report};

/// Every issue of a spec, errors and warnings, in field order.
pub fn validate_spec(spec: &RolloutSpec) -> Vec<Issue> {
    let mut issues = Vec::new();
    if spec.revision.trim().is_empty() {
        issues.push(
            Issue::error("spec.revision", "revision is empty")
                .with_hint("write the release being rolled out, e.g. `\"v2\"` or an image tag"),
        );
    }
    router(spec, &mut issues);
    steps(spec, &mut issues);
    if let Some(route) = &spec.test_route {
        test_route(route, &mut issues);
    }
    for (i, check) in spec.checks.iter().enumerate() {
        http_check(&check.http, &index("spec.checks", i), &mut issues);
    }
    analysis(spec, &mut issues);
    if let Err(window_issues) = Windows::compile(&spec.windows) {
        issues.extend(window_issues);
    }
    if let Some(grafana) = &spec.grafana {
        http_url(&grafana.url, "spec.grafana.url", &mut issues);
        if grafana.dashboard.trim().is_empty() {
            issues.push(Issue::error(
                "spec.grafana.dashboard",
                "dashboard uid is empty",
            ));
        }
    }
    for (i, notify) in spec.notify.iter().enumerate() {
        http_url(
            &notify.webhook.url,
            &format!("{}.webhook.url", index("spec.notify", i)),
            &mut issues,
        );
    }
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

fn router(spec: &RolloutSpec, issues: &mut Vec<Issue>) {
    let r = &spec.router;
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
        if spec.test_route.is_some() {
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
                    format!("`{}` is not an admin address: {why}", envoy.admin_address),
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

fn steps(spec: &RolloutSpec, issues: &mut Vec<Issue>) {
    let Some(last) = spec.steps.last() else {
        issues.push(
            Issue::error("spec.steps", "no steps")
                .with_hint("write the canary weights in percent, e.g. `[0, 30, 60, 100]`"),
        );
        return;
    };
    // Only when it is the one router: with several, the router error says it all.
    let r = &spec.router;
    let service = r.service.is_some() && r.istio.is_none() && r.envoy.is_none();
    let mut previous: Option<u8> = None;
    for (i, step) in spec.steps.iter().enumerate() {
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
    if last.weight != 100 {
        issues.push(
            Issue::error(index("spec.steps", spec.steps.len() - 1), format!("the last step is {}, not 100: the rollout could never finish", last.weight))
                .with_hint("end the steps with 100; to stop part-way, pause the last step with `{weight: 100, pause: true}` or use `pause: true` on an earlier one"),
        );
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

fn analysis(spec: &RolloutSpec, issues: &mut Vec<Issue>) {
    let a = &spec.analysis;
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
        http_url(&prometheus.address, &format!("{ppath}.address"), issues);
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
        if let Some(auth) = &prometheus.auth {
            let apath = format!("{ppath}.auth");
            let kinds = [
                auth.bearer_token_file.is_some(),
                auth.bearer_token_env.is_some(),
                auth.basic.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                issues.push(
                    Issue::error(
                        &apath,
                        "set exactly one of `bearerTokenFile`, `bearerTokenEnv`, `basic`",
                    )
                    .with_hint("keep one way to authenticate"),
                );
            }
            if let Some(basic) = &auth.basic {
                if basic.password_file.is_some() == basic.password_env.is_some() {
                    issues.push(
                        Issue::error(
                            format!("{apath}.basic"),
                            "set exactly one of `passwordFile` and `passwordEnv`",
                        )
                        .with_hint("read the password from a file or from an environment variable"),
                    );
                }
            }
        }
    }
    if a.metrics.is_empty() {
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
            .with_hint("write the fewest canary requests per interval worth judging, e.g. `100`"),
        );
    }
    let family = if spec.router.istio.is_some() {
        Some("istio")
    } else if spec.router.envoy.is_some() {
        Some("envoy")
    } else {
        None
    };
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, metric) in a.metrics.iter().enumerate() {
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
        && !a.metrics.is_empty()
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
                if let Some(family) = family.filter(|f| *f != template.family()) {
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
        if compare.max_increase.is_none() && compare.max_ratio.is_none() {
            issues.push(
                Issue::error(&cpath, "compare sets no limit")
                    .with_hint("add `maxIncrease:` (absolute) or `maxRatio:` (relative)"),
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
    } else if m.stable_query.is_some() && m.query.is_some() {
        issues.push(
            Issue::warning(
                format!("{path}.stableQuery"),
                "stableQuery is only used by `compare`",
            )
            .with_hint("add `compare: {maxIncrease: …}` or remove `stableQuery`"),
        );
    }
}

/// An `http://` or `https://` URL with a host.
fn http_url(text: &str, path: &str, issues: &mut Vec<Issue>) {
    let problem = match url::Url::parse(text) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Some(format!("scheme `{}` is not http or https", u.scheme()))
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("it has no host".to_owned()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = problem {
        issues.push(
            Issue::error(path, format!("`{text}` is not a URL: {why}"))
                .with_hint("write a full URL, e.g. `http://prometheus.monitoring:9090`"),
        );
    }
}

/// `host:port` (the form Envoy's admin address takes), or an http URL.
fn host_port(text: &str) -> Result<(), String> {
    if text.starts_with("http://") || text.starts_with("https://") {
        return url::Url::parse(text).map(|_| ()).map_err(|e| e.to_string());
    }
    let (host, port) = text.rsplit_once(':').ok_or("it has no `:port`")?;
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("`{port}` is not a port"))
}

/// `[namespace/]name` of a Kubernetes object.
fn object_ref(text: &str, path: &str, kind: &str, issues: &mut Vec<Issue>) {
    let (namespace, name) = match text.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, text),
    };
    let problem = namespace
        .map(|ns| dns_label(ns).map_err(|why| format!("namespace `{ns}`: {why}")))
        .transpose()
        .and_then(|_| dns_subdomain(name).map_err(|why| format!("name `{name}`: {why}")));
    if let Err(why) = problem {
        issues.push(
            Issue::error(path, format!("`{text}` is not a {kind} reference: {why}"))
                .with_hint(format!("write `name` or `namespace/name` of the {kind}")),
        );
    }
}

/// RFC 1123 subdomain (Kubernetes object names).
fn dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters".to_owned());
    }
    name.split('.').try_for_each(dns_label)
}

/// RFC 1123 label (namespaces).
fn dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("it has an empty part".to_owned());
    }
    if label.len() > 63 {
        return Err("a part is longer than 63 characters".to_owned());
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits and `-` are allowed".to_owned());
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("it must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

fn label_key(key: &str) -> Result<(), String> {
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    label_value(name).and_then(|_| {
        if name.is_empty() {
            Err("it is empty".to_owned())
        } else {
            Ok(())
        }
    })
}

fn label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("it is longer than 63 characters".to_owned());
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("only letters, digits, `-`, `_` and `.` are allowed".to_owned());
    }
    if value.starts_with(['-', '_', '.']) || value.ends_with(['-', '_', '.']) {
        return Err("it must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

/// An HTTP token (header and cookie names).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_identifier(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
