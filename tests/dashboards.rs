//! Every Grafana dashboard in `dashboards/`: its PromQL parses (checked by Prometheus'
//! own `promtool check rules`), every `shiftgate_*` metric it uses is one the daemon
//! exports, every panel has a unit, every canary-vs-stable panel draws the policy's
//! limits, and every dashboard link (`/d/<uid>`) leads to a dashboard of `dashboards/`
//! (the overview links each rollout to the per-rollout one). Grafana cannot be
//! installed here; this is what can be checked without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use shiftgate::observe::metrics::Metrics;

const INSTALL_HINT: &str = "promtool ships with Prometheus: install it with \
     `apt-get install prometheus` (Debian/Ubuntu) or `scripts/install-deps`";

fn dashboards() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
}

/// Every `expr` in the dashboard (panel targets, annotations, nested rows) and every
/// query variable's query, with the place it came from.
fn expressions(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{at}.{key}");
                match (key.as_str(), child) {
                    ("expr", Value::String(expr)) => out.push((here, expr.clone())),
                    _ => expressions(child, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                expressions(child, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Grafana variables are not PromQL: replace them with values of the right kind
/// (durations for Grafana's interval variables, a plain word otherwise — every other
/// variable sits inside a quoted label value).
fn substitute_variables(expr: &str) -> String {
    let mut out = expr.to_owned();
    for interval in ["$__rate_interval", "$__interval", "$__range"] {
        out = out.replace(interval, "5m");
    }
    let mut result = String::new();
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            result.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
            }
        } else {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                chars.next();
            }
        }
        result.push_str("value");
    }
    result
}

fn check_with_promtool(exprs: &[(String, String)], source: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("dashboard-rules.yml");
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(&substitute_variables(expr)).unwrap();
        yaml.push_str(&format!(
            "      - record: dashboard:expression_{i}\n        expr: {quoted}\n"
        ));
    }
    std::fs::write(&rules, yaml).unwrap();
    let output = match Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!("cannot run promtool ({error}); {INSTALL_HINT}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "promtool rejected PromQL of {}:\n{stdout}\n{stderr}\nexpressions:\n{}",
        source.display(),
        exprs
            .iter()
            .enumerate()
            .map(|(i, (at, e))| format!("  expression_{i} at {at}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `shiftgate_*` names in an expression, histogram series mapped to their histogram.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(found) = expr[i..].find("shiftgate_") {
        let start = i + found;
        let boundary = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

fn exported(name: &str, registry: &[String]) -> bool {
    if registry.iter().any(|r| r == name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| registry.iter().any(|r| r == base))
    })
}

#[test]
fn every_dashboard_expression_parses_and_uses_exported_metrics() {
    let registry = Metrics::new().exported_names();
    for path in dashboards() {
        let text = std::fs::read_to_string(&path).unwrap();
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let mut exprs = Vec::new();
        expressions(&dashboard, "", &mut exprs);
        // Query variables: `label_values(...)` is Grafana's, its selector is PromQL.
        for (i, variable) in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(query) = variable["query"]["query"].as_str() {
                let selector = query
                    .strip_prefix("label_values(")
                    .and_then(|rest| rest.rsplit_once(','))
                    .map_or(query, |(selector, _)| selector);
                exprs.push((format!(".templating.list[{i}]"), selector.to_owned()));
            }
        }
        assert!(
            exprs.len() >= 10,
            "{}: only {} expressions",
            path.display(),
            exprs.len()
        );
        check_with_promtool(&exprs, &path);
        for (at, expr) in &exprs {
            for name in metric_names(expr) {
                assert!(
                    exported(&name, &registry),
                    "{}{at} uses {name}, which shiftgate does not export; exported: {registry:?}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn rollout_dashboard_has_its_uid_variables_and_step_annotations() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/shiftgate-rollout.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        dashboard["uid"], "shiftgate-rollout",
        "the uid spec.grafana defaults to"
    );
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for needed in ["namespace", "name"] {
        assert!(
            variables.contains(&needed),
            "variable {needed} missing: {variables:?}"
        );
    }
    let annotations = dashboard["annotations"]["list"].as_array().unwrap();
    assert!(annotations.iter().any(|a| a["expr"]
        .as_str()
        .is_some_and(|e| e.contains("shiftgate_rollout_step"))));
    let text = dashboard.to_string();
    for shown in [
        "shiftgate_canary_weight_ratio",
        "shiftgate_rollout_phase",
        "shiftgate_analysis_metric_value",
        "shiftgate_analysis_metric_threshold",
    ] {
        assert!(text.contains(shown), "the dashboard does not show {shown}");
    }
}

#[test]
fn a_bad_expression_is_caught() {
    // The checks above must be able to fail: promtool rejects broken PromQL…
    let result = std::panic::catch_unwind(|| {
        check_with_promtool(
            &[("test".to_owned(), "sum(rate(x[5m])".to_owned())],
            Path::new("test"),
        );
    });
    assert!(
        result.is_err(),
        "promtool accepted an unbalanced parenthesis"
    );
    // …and an unknown metric name is not exported.
    let registry = Metrics::new().exported_names();
    assert!(!exported("shiftgate_canary_weight_percent", &registry));
    assert!(exported(
        "shiftgate_reconcile_duration_seconds_bucket",
        &registry
    ));
    assert_eq!(
        metric_names("rate(shiftgate_router_writes_total[5m]) + dashboard:shiftgate_x"),
        BTreeSet::from(["shiftgate_router_writes_total".to_owned()])
    );
}

/// Every panel of a dashboard, the panels of rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

fn panel_name(panel: &Value) -> String {
    format!(
        "panel {} ({})",
        panel["id"],
        panel["title"].as_str().unwrap_or("untitled")
    )
}

/// Panels (rows aside) without `fieldConfig.defaults.unit`.
fn panels_without_unit(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .filter(|p| {
            p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_none_or(str::is_empty)
        })
        .map(panel_name)
        .collect()
}

/// Panels showing `shiftgate_analysis_metric_value` (canary vs stable) that do not
/// draw the policy's limits: no `shiftgate_analysis_metric_threshold` target, or that
/// target not styled as a limit line (an override of its refId setting a line style).
fn metric_panels_without_limits(dashboard: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for panel in panels(dashboard) {
        let targets: Vec<&Value> = panel["targets"].as_array().into_iter().flatten().collect();
        let expr = |t: &&Value| t["expr"].as_str().unwrap_or("").to_owned();
        if !targets
            .iter()
            .any(|t| expr(t).contains("shiftgate_analysis_metric_value"))
        {
            continue;
        }
        let limits: Vec<&str> = targets
            .iter()
            .filter(|t| expr(t).contains("shiftgate_analysis_metric_threshold"))
            .filter_map(|t| t["refId"].as_str())
            .collect();
        if limits.is_empty() {
            missing.push(format!(
                "{}: no shiftgate_analysis_metric_threshold",
                panel_name(panel)
            ));
            continue;
        }
        let overrides = panel["fieldConfig"]["overrides"].as_array();
        for refid in limits {
            let drawn = overrides.into_iter().flatten().any(|o| {
                o["matcher"]["id"] == "byFrameRefID"
                    && o["matcher"]["options"] == refid
                    && o["properties"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["id"] == "custom.lineStyle")
            });
            if !drawn {
                missing.push(format!(
                    "{}: limit query {refid} is not drawn as a limit line (no byFrameRefID override with custom.lineStyle)",
                    panel_name(panel)
                ));
            }
        }
    }
    missing
}

/// Every `/d/<uid>` a dashboard links to (dashboard links, data links), with the URL.
fn linked_uids(dashboard: &Value) -> Vec<(String, String)> {
    let mut urls = Vec::new();
    fn walk(value: &Value, urls: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("url", Value::String(url)) => urls.push(url.clone()),
                        _ => walk(child, urls),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|c| walk(c, urls)),
            _ => {}
        }
    }
    walk(dashboard, &mut urls);
    urls.into_iter()
        .filter_map(|url| {
            let rest = url.split_once("/d/")?.1;
            let uid = rest.split(['/', '?']).next()?.to_owned();
            Some((uid, url))
        })
        .collect()
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn every_panel_has_a_unit_and_every_metric_panel_draws_its_limits() {
    for path in dashboards() {
        let dashboard = load(&path);
        let no_unit = panels_without_unit(&dashboard);
        assert!(
            no_unit.is_empty(),
            "{}: panels without a unit: {no_unit:?}",
            path.display()
        );
        let no_limits = metric_panels_without_limits(&dashboard);
        assert!(no_limits.is_empty(), "{}: {no_limits:?}", path.display());
    }
}

#[test]
fn the_overview_shows_every_rollout_and_links_each_to_its_dashboard() {
    let uids: BTreeSet<String> = dashboards()
        .iter()
        .map(|path| {
            load(path)["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{} has no uid", path.display()))
                .to_owned()
        })
        .collect();
    let overview_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/shiftgate-overview.json");
    assert!(
        overview_path.exists(),
        "no overview dashboard at {}",
        overview_path.display()
    );
    let overview = load(&overview_path);
    assert_eq!(overview["uid"], "shiftgate-overview");
    // Every link of every dashboard leads to a dashboard that exists.
    for path in dashboards() {
        for (uid, url) in linked_uids(&load(&path)) {
            assert!(
                uids.contains(&uid),
                "{} links to uid {uid} ({url}), which no dashboard has: {uids:?}",
                path.display()
            );
        }
    }
    // Each rollout row and series opens the per-rollout dashboard on that rollout.
    let to_rollout: Vec<String> = linked_uids(&overview)
        .into_iter()
        .filter(|(uid, _)| uid == "shiftgate-rollout")
        .map(|(_, url)| url)
        .collect();
    assert!(
        to_rollout
            .iter()
            .any(|u| u.contains("var-namespace=${__data.fields.namespace}") && u.contains("var-name=${__data.fields.name}")),
        "no data link to the per-rollout dashboard with the row's namespace and name: {to_rollout:?}"
    );
    let text = overview.to_string();
    for shown in [
        "shiftgate_rollout_phase",
        "shiftgate_canary_weight_ratio",
        "shiftgate_policy_analysis_evaluations_total",
        "shiftgate_policy_rollouts_total",
        "rolled_back",
    ] {
        assert!(text.contains(shown), "the overview does not show {shown}");
    }
    // The per-rollout dashboard links back.
    let rollout =
        load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/shiftgate-rollout.json"));
    assert!(linked_uids(&rollout)
        .iter()
        .any(|(uid, _)| uid == "shiftgate-overview"));
}

#[test]
fn a_panel_without_unit_or_limits_and_a_dead_link_are_caught() {
    let dashboard = serde_json::json!({
        "links": [ { "url": "/d/nowhere/x?var-name=a" } ],
        "panels": [
            { "id": 1, "type": "row", "title": "r", "panels": [
                { "id": 2, "type": "timeseries", "title": "no unit",
                  "fieldConfig": { "defaults": {} },
                  "targets": [ { "refId": "A", "expr": "shiftgate_analysis_metric_value" } ] } ] },
            { "id": 3, "type": "timeseries", "title": "limit not drawn",
              "fieldConfig": { "defaults": { "unit": "s" }, "overrides": [] },
              "targets": [ { "refId": "A", "expr": "shiftgate_analysis_metric_value" },
                           { "refId": "B", "expr": "shiftgate_analysis_metric_threshold" } ] }
        ]
    });
    assert_eq!(panels_without_unit(&dashboard), ["panel 2 (no unit)"]);
    let no_limits = metric_panels_without_limits(&dashboard);
    assert_eq!(no_limits.len(), 2, "{no_limits:?}");
    assert!(no_limits[0].contains("no shiftgate_analysis_metric_threshold"));
    assert!(no_limits[1].contains("limit query B"));
    assert_eq!(linked_uids(&dashboard)[0].0, "nowhere");
}
