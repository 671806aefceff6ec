//! Policy validation: every rule has a fixture in tests/fixtures/policies/ and a test
//! asserting its message, field path, line and column. Library-level first (cheaper),
//! then the built binary: exit codes, text and JSON output, the example policies, the
//! schema command, and the completeness of docs/policy.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use shiftgate::policy::diagnostic::{Diagnostic, Severity};
use shiftgate::policy::report::check_paths;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/policies").join(name)
}

/// `line:column: path: message` of every diagnostic of the given fixtures.
fn check(names: &[&str]) -> Vec<String> {
    diagnostics(names).iter().map(short).collect()
}

fn diagnostics(names: &[&str]) -> Vec<Diagnostic> {
    let paths: Vec<PathBuf> = names.iter().map(|n| fixture(n)).collect();
    check_paths(&paths).diagnostics
}

fn short(d: &Diagnostic) -> String {
    let warning = if d.severity == Severity::Warning {
        "warning: "
    } else {
        ""
    };
    format!(
        "{}:{}: {warning}{}: {}",
        d.line, d.column, d.path, d.message
    )
}

fn hints(names: &[&str]) -> Vec<String> {
    diagnostics(names)
        .into_iter()
        .map(|d| d.hint.unwrap_or_default())
        .collect()
}

#[test]
fn unknown_field_suggests_the_nearest_name() {
    assert_eq!(
        check(&["invalid/unknown-field.yaml"]),
        [
            "15:3: spec.onFailur: unknown field `onFailur`",
            "21:5: spec.analysis.failureLimt: unknown field `failureLimt`",
        ]
    );
    assert_eq!(
        hints(&["invalid/unknown-field.yaml"]),
        ["did you mean `onFailure`?", "did you mean `failureLimit`?"]
    );
}

#[test]
fn weight_outside_0_to_100() {
    assert_eq!(
        check(&["invalid/weight-out-of-range.yaml"]),
        [
            "16:7: spec.steps[1]: 150 is outside 0..=100",
            "17:9: spec.steps[2].weight: 101 is outside 0..=100"
        ]
    );
}

#[test]
fn steps_must_strictly_increase() {
    assert_eq!(
        check(&["invalid/steps-not-increasing.yaml"]),
        ["14:18: spec.steps[2]: weight 30 does not exceed the previous step's 60: steps must strictly increase"]
    );
}

#[test]
fn last_step_must_be_100() {
    assert_eq!(
        check(&["invalid/last-step-not-100.yaml"]),
        ["14:18: spec.steps[2]: the last step is 60, not 100: the rollout could never finish"]
    );
}

#[test]
fn metric_rules_all_reported_at_once() {
    assert_eq!(
        check(&["invalid/metrics.yaml"]),
        [
            "20:11: spec.analysis.metrics[1].name: duplicate metric name `error-rate` (also metrics[0])",
            "21:9: spec.analysis.metrics[2]: metric `no-criterion` has no criterion, so it could never fail",
            "22:9: spec.analysis.metrics[3]: metric `both` sets both `template` and `query`",
            "23:9: spec.analysis.metrics[4]: metric `neither` sets neither `template` nor `query`",
            "24:23: spec.analysis.metrics[5].template: unknown template `istio-error-ratio`",
            "27:9: spec.analysis.metrics[6].compare: metric `raw-compare` compares a raw query with stable, but has no `stableQuery`",
        ]
    );
    assert_eq!(
        hints(&["invalid/metrics.yaml"])[4],
        "did you mean `istio-error-rate`?"
    );
}

#[test]
fn bad_durations() {
    assert_eq!(
        check(&["invalid/bad-duration.yaml"]),
        [
            "16:5: spec.analysis.interval: expected a duration, found the number 30",
            "17:54: spec.analysis.prometheus.timeout: `fast` is not a duration: expected a number at character 1, found `f`",
        ]
    );
    assert_eq!(
        hints(&["invalid/bad-duration.yaml"])[0],
        "add a unit, e.g. `30s` or `30m`"
    );
}

#[test]
fn bad_cron_and_unknown_time_zone() {
    assert_eq!(
        check(&["invalid/windows.yaml"]),
        [
            "21:22: spec.windows[0].schedule: `0 0 9 * * Mon-Fri` has 6 fields, but windows use standard 5-field cron without seconds",
            "22:21: spec.windows[1].schedule: `0 25 * * *` is not a valid cron schedule: hour 25 is out of range (0 to 23)",
            "23:61: spec.windows[2].timeZone: `Europe/Berln` is not an IANA time zone",
            "24:21: spec.windows[3].schedule: day-of-week `9` in `0 18 * * 9`: 9 is outside 0..=7",
        ]
    );
    let hints = hints(&["invalid/windows.yaml"]);
    assert_eq!(
        hints[0],
        "drop the leading seconds field: `0 9 * * Mon-Fri`"
    );
    assert_eq!(hints[2], "did you mean `Europe/Berlin`?");
}

#[test]
fn service_router_allows_only_0_and_100() {
    assert_eq!(
        check(&["invalid/service-intermediate-weight.yaml"]),
        ["10:14: spec.steps[1]: weight 50 is not possible with the `service` router: a selector switch sends all traffic to one release"]
    );
}

#[test]
fn exactly_one_router() {
    assert_eq!(
        check(&["invalid/router-none.yaml"]),
        ["8:3: spec.router: no router is set"]
    );
    assert_eq!(
        check(&["invalid/router-two.yaml"]),
        ["8:3: spec.router: 2 routers are set (istio, envoy); a policy drives exactly one"]
    );
}

#[test]
fn test_route_cookie_or_header() {
    assert_eq!(
        check(&["invalid/test-route-both.yaml"]),
        ["20:3: spec.testRoute: both `cookie` and `header` are set"]
    );
    assert_eq!(
        check(&["invalid/test-route-neither.yaml"]),
        ["20:3: spec.testRoute: neither `cookie` nor `header` is set"]
    );
    assert_eq!(
        check(&["invalid/test-route-cookie.yaml"]),
        ["20:16: spec.testRoute.cookie: `test` is not `name=value`"]
    );
}

#[test]
fn header_exact_or_regex_and_valid_regex() {
    assert_eq!(
        check(&["invalid/header-both.yaml"]),
        ["21:5: spec.testRoute.header: both `exact` and `regex` are set"]
    );
    assert_eq!(
        check(&["invalid/header-neither.yaml"]),
        ["21:5: spec.testRoute.header: neither `exact` nor `regex` is set"]
    );
    assert_eq!(
        check(&["invalid/header-bad-regex.yaml"]),
        ["21:32: spec.testRoute.header.regex: `v2(canary` is not a valid regular expression: unclosed group"]
    );
}

#[test]
fn empty_file_and_comments_only() {
    assert_eq!(
        check(&["invalid/empty.yaml"]),
        ["1:1: : the file holds no policy"]
    );
    assert_eq!(
        check(&["invalid/comments-only.yaml"]),
        ["1:1: : the file holds no policy"]
    );
}

#[test]
fn not_yaml_reports_the_parser_position() {
    assert_eq!(
        check(&["invalid/not-yaml.yaml"]),
        ["4:10: : not valid YAML: `[` is never closed (the parser stopped at line 5, column 11: illegal placement of ':' indicator)"]
    );
}

#[test]
fn wrong_api_version_and_kind() {
    assert_eq!(
        check(&["invalid/api-version-kind.yaml"]),
        [
            "1:1: apiVersion: must be `shiftgate.dev/v1alpha1`, found the string `shiftgate.io/v1`",
            "2:1: kind: must be `RolloutPolicy`, found the string `Rollout`",
        ]
    );
}

#[test]
fn metadata_name_required_and_well_formed() {
    assert_eq!(
        check(&["invalid/metadata-name.yaml"]),
        ["3:1: metadata: missing required field `name`"]
    );
    assert_eq!(
        check(&["invalid/metadata-name-format.yaml"]),
        ["4:3: metadata.name: `Checkout_Canary` is not a valid name: only lowercase letters, digits and `-` are allowed"]
    );
}

#[test]
fn failure_and_inconclusive_limits() {
    assert_eq!(
        check(&["invalid/limits.yaml"]),
        [
            "21:5: spec.analysis.failureLimit: failureLimit 120 at interval 1m lets a failing canary keep its traffic for 121 minutes",
            "22:5: warning: spec.analysis.inconclusiveLimit: inconclusiveLimit 0 with onInconclusive rollback: a single missed scrape or Prometheus hiccup rolls back a healthy canary",
        ]
    );
}

#[test]
fn on_failure_and_on_drift_values() {
    assert_eq!(
        check(&["invalid/on-failure.yaml"]),
        [
            "20:3: spec.onFailure: the string `rollbak` is not one of `rollback`, `hold`",
            "21:3: spec.onDrift: the string `ignore` is not one of `pause`, `reassert`",
        ]
    );
    assert_eq!(
        hints(&["invalid/on-failure.yaml"])[0],
        "did you mean `rollback`?"
    );
}

#[test]
fn prometheus_address_must_be_a_url() {
    assert_eq!(
        check(&["invalid/prometheus-address.yaml"]),
        ["16:19: spec.analysis.prometheus.address: `prometheus:9090` is not a URL: scheme `prometheus` is not http or https"]
    );
}

#[test]
fn every_document_of_a_file_is_checked_with_its_own_lines() {
    assert_eq!(
        check(&["invalid/multi-document.yaml"]),
        ["34:18: spec.steps[2]: 150 is outside 0..=100"]
    );
}

#[test]
fn two_policies_on_one_route_across_files() {
    let report = check_paths(&[fixture("conflicts")]);
    let lines: Vec<String> = report
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d.file.file_name().unwrap_or_default().to_string_lossy(),
                short(d)
            )
        })
        .collect();
    let a = |name: &str| fixture("conflicts").join(name).display().to_string();
    assert_eq!(
        lines,
        [
            format!("envoy-b.yml:9:14: spec.router.envoy.routesFile: Envoy routes file /tmp/shiftgate/routes.yaml is also driven by policy shop/envoy-a ({}:1): two rollouts on one route would fight over its weights", a("envoy-a.yaml")),
            format!("istio-b.yaml:11:16: spec.router.istio.routes[0]: route `primary` of VirtualService shop/checkout is also driven by policy shop/checkout-a ({}:1): two rollouts on one route would fight over its weights", a("istio-a.yaml")),
            format!("same-name.yaml:4:3: metadata.name: policy shop/checkout-a is also defined at {}:1", a("istio-a.yaml")),
            format!("service-b.yaml:9:16: spec.router.service.service: Service shop/nginx is also driven by policy shop/nginx-a ({}:1): two rollouts on one route would fight over its weights", a("service-a.yaml")),
        ]
    );
    // Another route of the same VirtualService is no conflict; the conflicting ones are not loaded.
    let mut names: Vec<String> = report
        .policies
        .iter()
        .filter_map(|p| p.policy.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["checkout-a", "checkout-c", "envoy-a", "nginx-a"]);
}

#[test]
fn valid_fixture_parses_into_the_policy_type() {
    let loaded = shiftgate::policy::parse::parse_file(&fixture("valid/minimal.yaml"))
        .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].line, 1);
    let spec = &loaded[0].policy.spec;
    assert_eq!(
        spec.steps.iter().map(|s| s.weight).collect::<Vec<_>>(),
        [0, 50, 100]
    );
    assert_eq!(
        spec.analysis.interval.to_string(),
        "30s",
        "default interval"
    );
    let Err(err) = shiftgate::policy::parse::parse_str("inline.yaml", "kind: [") else {
        panic!("`kind: [` is not YAML and must not parse");
    };
    assert_eq!(err[0].file, Path::new("inline.yaml"));
}

#[test]
fn a_type_error_past_the_schema_is_still_located() {
    assert_eq!(
        check(&["invalid/creation-timestamp.yaml"]),
        ["5:3: metadata.creationTimestamp: does not match the RolloutPolicy type: failed to parse four digit integer as year: invalid digit, expected 0-9 but got y"]
    );
}

#[test]
fn structural_and_semantic_errors_are_reported_in_one_pass() {
    // A wrong type (steps[3], minRequests, windows[1].duration), missing required fields
    // (revision, metrics[2].name), steps that do not increase, a duplicate metric name, a
    // metric without criterion, bad crons and an unknown time zone: all at once.
    assert_eq!(
        check(&["invalid/mixed-structure-and-rules.yaml"]),
        [
            "6:1: spec.revision: missing required field `revision`",
            "12:18: spec.steps[2]: weight 30 does not exceed the previous step's 60: steps must strictly increase",
            "12:22: spec.steps[3]: expected a whole number or a mapping, found the string `abc`",
            "15:5: spec.analysis.minRequests: expected a whole number, found the string `many`",
            "16:5: spec.analysis.failureLimit: failureLimit 120 at interval 1m lets a failing canary keep its traffic for 121 minutes",
            "19:9: spec.analysis.metrics[1]: metric `error-rate` has no criterion, so it could never fail",
            "19:11: spec.analysis.metrics[1].name: duplicate metric name `error-rate` (also metrics[0])",
            "20:9: spec.analysis.metrics[2]: missing required field `name`",
            "22:22: spec.windows[0].schedule: `0 25 * * *` is not a valid cron schedule: hour 25 is out of range (0 to 23)",
            "22:60: spec.windows[0].timeZone: `Europe/Berln` is not an IANA time zone",
            "23:21: spec.windows[1].schedule: `0 0 9 * * Mon` has 6 fields, but windows use standard 5-field cron without seconds",
            "23:48: spec.windows[1].duration: expected a duration, found the number 8",
        ]
    );
    let hints = hints(&["invalid/mixed-structure-and-rules.yaml"]);
    assert_eq!(hints[0], "add `revision:`");
    assert_eq!(hints[9], "did you mean `Europe/Berlin`?");
    assert_eq!(hints[11], "add a unit, e.g. `8s` or `8m`");
    let paths: Vec<String> = diagnostics(&["invalid/mixed-structure-and-rules.yaml"])
        .into_iter()
        .map(|d| d.path)
        .collect();
    let unique: std::collections::BTreeSet<&String> = paths.iter().collect();
    assert_eq!(
        unique.len(),
        paths.len(),
        "a path reported twice: {paths:?}"
    );
}

#[test]
fn a_single_type_error_has_no_follow_ups() {
    // minRequests falls back to 0 once rejected; "minRequests is 0" would be about a
    // value nobody wrote.
    assert_eq!(
        check(&["invalid/only-a-type-error.yaml"]),
        ["16:5: spec.analysis.minRequests: expected a whole number, found the string `many`"]
    );
    // The last step is unreadable, so "the last step is 50, not 100" would be invented.
    assert_eq!(
        check(&["invalid/quoted-last-step.yaml"]),
        ["13:18: spec.steps[2]: expected a whole number or a mapping, found the string `100`"]
    );
}

#[test]
fn rules_that_read_a_rejected_field_stay_silent() {
    // Without the rejected interval, onInconclusive, stable port and stableQuery, the
    // rules would judge defaults: "failureLimit 200 at interval 30s", "inconclusiveLimit
    // 0 with onInconclusive rollback", "canary is the same destination as stable" and
    // "compares a raw query with stable, but has no `stableQuery`".
    assert_eq!(
        check(&["invalid/rejected-field-not-defaulted.yaml"]),
        [
            "11:51: spec.router.istio.stable.port: expected a whole number, found the string `http`",
            "15:5: spec.analysis.interval: expected a duration, found the number 30",
            "18:5: spec.analysis.onInconclusive: the string `wait` is not one of `rollback`, `pause`",
            "23:9: spec.analysis.metrics[0].stableQuery: expected a string, found the number 5",
        ]
    );
}

#[test]
fn a_type_error_past_the_schema_is_reported_next_to_structural_ones() {
    assert_eq!(
        check(&["invalid/creation-timestamp-and-type.yaml"]),
        [
            "5:3: metadata.creationTimestamp: does not match the RolloutPolicy type: failed to parse four digit integer as year: invalid digit, expected 0-9 but got y",
            "14:23: spec.steps[3]: expected a whole number or a mapping, found the string `x`",
        ]
    );
}

#[test]
fn kubectl_output_with_server_fields_and_status_is_accepted() {
    assert_eq!(check(&["valid/from-kubectl.yaml"]), Vec::<String>::new());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 256,
        // Deterministic: the same cases on every run.
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261122),
        ..Default::default()
    })]

    /// Whatever is cut out of a valid policy, the checker answers with located
    /// diagnostics and never panics.
    #[test]
    fn damaged_policies_never_panic_and_stay_located(start in 0usize..2000, len in 0usize..80, insert in "[ a-z:\\[\\]{}\\-,\"'0-9\\n]{0,6}") {
        let text = std::fs::read_to_string(root().join("policies/istio-host-canary.yaml")).unwrap_or_default();
        let mut damaged: String = text.chars().take(start).collect();
        damaged.push_str(&insert);
        damaged.extend(text.chars().skip(start + len));
        let lines = damaged.lines().count().max(1);
        let result = shiftgate::policy::parse::check_str("damaged.yaml", &damaged);
        for d in &result.diagnostics {
            proptest::prop_assert!(d.line >= 1 && d.line <= lines + 1, "{d} (of {lines} lines)");
            proptest::prop_assert!(d.column >= 1, "{d}");
        }
        if !result.has_errors() {
            proptest::prop_assert!(!result.policies.is_empty(), "no error, yet no policy");
        }
        proptest::prop_assert!(result.policies.len() <= result.documents);
    }
}

// ---- the built binary ----

fn shiftgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run shiftgate: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_policy_is_valid_without_warnings() {
    let examples: Vec<String> = std::fs::read_dir(root().join("policies"))
        .unwrap_or_else(|e| panic!("policies/: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    for required in [
        "istio-host-canary.yaml",
        "istio-subset-canary.yaml",
        "istio-subset-labels.yaml",
        "istio-blue-green.yaml",
        "service-blue-green.yaml",
        "istio-test-route-smoke.yaml",
        "windows.yaml",
        "envoy-local.yaml",
    ] {
        assert!(
            examples.iter().any(|e| e.ends_with(required)),
            "policies/{required} is missing"
        );
    }
    for example in &examples {
        let (code, stdout, stderr) = shiftgate(&["check", "--deny-warnings", example]);
        assert_eq!(code, 0, "{example}:\n{stdout}{stderr}");
        assert_eq!(stdout, "", "{example}");
        assert!(stderr.contains("0 errors, 0 warnings"), "{stderr}");
    }
    let (code, _, stderr) = shiftgate(&["check", "policies"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "checked {} files ({} policies)",
            examples.len(),
            examples.len()
        )),
        "{stderr}"
    );
}

#[test]
fn check_prints_every_error_of_every_file_and_exits_2() {
    let (code, stdout, stderr) = shiftgate(&["check", "tests/fixtures/policies/invalid"]);
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"tests/fixtures/policies/invalid/steps-not-increasing.yaml:14:18: spec.steps[2]: weight 30 does not exceed the previous step's 60: steps must strictly increase (hint: order the weights from low to high, each once, e.g. `[0, 30, 60, 100]`)"), "{stdout}");
    assert!(lines.iter().any(|l| l
        .starts_with("tests/fixtures/policies/invalid/empty.yaml:1:1: the file holds no policy")));
    let files_with_errors: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l.split(':').next()).collect();
    let fixtures = std::fs::read_dir(fixture("invalid"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        files_with_errors.len(),
        fixtures,
        "every invalid fixture reports: {stdout}"
    );
    assert!(stderr.contains("errors"), "{stderr}");
}

#[test]
fn check_json_output() {
    let (code, stdout, _) = shiftgate(&[
        "check",
        "--output",
        "json",
        "tests/fixtures/policies/invalid/limits.yaml",
    ]);
    assert_eq!(code, 2);
    let json: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"], 1);
    assert_eq!(json["warnings"], 1);
    let first = &json["diagnostics"][0];
    assert_eq!(first["line"], 21);
    assert_eq!(first["column"], 5);
    assert_eq!(first["path"], "spec.analysis.failureLimit");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["file"], "tests/fixtures/policies/invalid/limits.yaml");
    assert!(first["hint"]
        .as_str()
        .is_some_and(|h| h.contains("under 1h")));
}

#[test]
fn warnings_pass_unless_denied() {
    let (code, stdout, _) = shiftgate(&["check", "tests/fixtures/policies/valid"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("warnings.yaml:15:3: warning: spec.analysis.minRequests"),
        "{stdout}"
    );
    let (code, _, _) = shiftgate(&["check", "--deny-warnings", "tests/fixtures/policies/valid"]);
    assert_eq!(code, 2);
}

#[test]
fn missing_file_is_invalid_input() {
    let (code, stdout, _) = shiftgate(&["check", "tests/fixtures/policies/does-not-exist.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stdout.starts_with(
            "tests/fixtures/policies/does-not-exist.yaml: cannot read the policy file"
        ),
        "{stdout}"
    );
}

#[test]
fn schema_command_prints_the_document_schema() {
    let (code, stdout, stderr) = shiftgate(&["schema"]);
    assert_eq!(code, 0, "{stderr}");
    let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        schema["properties"]["apiVersion"]["const"],
        "shiftgate.dev/v1alpha1"
    );
    assert_eq!(schema["properties"]["metadata"]["required"][0], "name");
    assert!(schema["definitions"]["MetricSpec"]["properties"]["stableQuery"].is_object());
}

#[test]
fn docs_mention_every_schema_field() {
    let docs = std::fs::read_to_string(root().join("docs/policy.md"))
        .unwrap_or_else(|e| panic!("docs/policy.md: {e}"));
    let schema = shiftgate::policy::schema::document_schema();
    let missing: Vec<String> = shiftgate::policy::schema::property_names(&schema)
        .into_iter()
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/policy.md does not mention: {missing:?}"
    );
    for template in shiftgate::policy::templates::BUILTIN_TEMPLATES {
        assert!(
            docs.contains(&format!("`{}`", template.name)),
            "template {} undocumented",
            template.name
        );
    }
}
