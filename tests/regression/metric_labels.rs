//! Issue "lifecycle" §4, §5, §7: metric labels that match the workloads, analysis
//! without a mesh, and A/B testing at 0 %.

use std::path::Path;

use serde_json::json;
use shiftgate::metrics::queries::{PolicyQueries, SideQueries};
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::parse::parse_file;
use shiftgate::policy::validate::validate_spec;
use shiftgate::policy::RolloutSpec;
use shiftgate::router::istio::destination_rule::with_subset_labels;
use shiftgate::sim::{Outcome, Scenario, Simulation};
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "echo".to_owned(),
        name: "web-echo".to_owned(),
    }
}

fn spec(yaml: &str) -> RolloutSpec {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The canary's value query of the first metric.
fn canary_query(policy: &PolicyRef, spec: &RolloutSpec) -> String {
    match &PolicyQueries::plan(policy, spec).metrics[0].canary {
        SideQueries::Ready { value, .. } => value.clone(),
        SideQueries::Failed(why) => panic!("{why}"),
    }
}

fn subset_spec(stable: &str, canary: &str, analysis_extra: &str) -> RolloutSpec {
    spec(&format!(
        "revision: v2\nrouter: {{istio: {{virtualService: web-echo, stable: {{host: web-echo, subset: {stable}}}, canary: {{host: web-echo, subset: {canary}}}}}}}\nsteps: [0, 100]\nanalysis:\n  minRequests: 10\n{analysis_extra}  metrics: [{{name: e, template: istio-error-rate, max: 0.01}}]\n"
    ))
}

/// Seed 003: subsets `v1`/`v2` select pods labelled `version: blue-web-echo` /
/// `green-web-echo`. Istio reports that label as `destination_version`, but the
/// built-in queries selected `destination_version="v2"`: no series, every evaluation
/// Inconclusive, rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subset_queries_select_the_pods_version_label_not_the_subset_name() {
    let server = TestApiServer::start().await.unwrap();
    server
        .put_object(
            &ResourceRef::new("networking.istio.io", "v1", "destinationrules"),
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": { "name": "web-echo", "namespace": "echo" },
                "spec": { "host": "web-echo", "subsets": [
                    { "name": "v1", "labels": { "version": "blue-web-echo" } },
                    { "name": "v2", "labels": { "version": "green-web-echo" } }
                ]}
            }),
        )
        .unwrap();
    let client = server.client().unwrap();
    let (resolved, said) =
        with_subset_labels(&client, &policy(), &subset_spec("v1", "v2", "")).await;
    let query = canary_query(&policy(), &resolved);
    assert!(
        query.contains(r#"destination_version="green-web-echo""#),
        "{query} ({said:?})"
    );
    assert!(!query.contains(r#"destination_version="v2""#), "{query}");
}

/// Seed 004: subsets select pods by `color`, which Istio does not report: there was no
/// way to make the built-in queries select anything but `destination_version`.
#[test]
fn a_subset_without_a_version_label_can_be_selected_by_target_labels() {
    let spec = subset_spec(
        "blue",
        "green",
        "  targetLabels: {stable: {destination_workload: myapp-blue}, canary: {destination_workload: myapp-green}}\n",
    );
    let query = canary_query(&policy(), &spec);
    assert!(
        query.contains(r#"destination_workload="myapp-green""#)
            && !query.contains("destination_version"),
        "{query}"
    );
}

const SERVICE: &str =
    "{service: {service: nginx, selectorKey: version, stableValue: '1.10', canaryValue: '1.11'}}";

/// Seed 001 without a mesh: the canary request count behind `minRequests` was always
/// `istio_requests_total`, whatever the policy's metrics read, so the shipped
/// `policies/service-blue-green.yaml` never passed on a cluster without Istio.
#[test]
fn the_request_count_of_a_service_switch_is_not_hard_wired_to_istio() {
    let spec = spec(&format!(
        "revision: '1.11'\nrouter: {SERVICE}\nsteps: [0, 100]\nanalysis:\n  minRequests: 10\n  metrics: [{{name: e, template: app-error-rate, max: 0.01}}]\n"
    ));
    let plan = PolicyQueries::plan(&policy(), &spec);
    let SideQueries::Ready { value, .. } = &plan.canary_requests else {
        panic!("{plan:?}");
    };
    assert_eq!(
        value,
        r#"sum(increase(http_requests_total{version="1.11"}[30s]))"#
    );
    // Raw queries name their own count.
    let custom = spec_with_requests();
    let SideQueries::Ready { value, .. } = &PolicyQueries::plan(&policy(), &custom).canary_requests
    else {
        panic!("no request count");
    };
    assert_eq!(
        value,
        r#"sum(increase(nginx_http_requests_total{version="1.11"}[30s]))"#
    );
}

fn spec_with_requests() -> RolloutSpec {
    spec(&format!(
        "revision: '1.11'\nrouter: {SERVICE}\nsteps: [0, 100]\nanalysis:\n  minRequests: 10\n  requests: 'sum(increase(nginx_http_requests_total{{version=\"{{{{ target.subset }}}}\"}}[{{{{ interval }}}}]))'\n  metrics: [{{name: e, query: 'sum(rate(x{{version=\"{{{{ canary.subset }}}}\"}}[1m]))', max: 1}}]\n"
    ))
}

/// The old `policies/service-blue-green.yaml` (raw query, `minRequests`, Service
/// router) checked clean although its request count could never be there.
#[test]
fn check_warns_when_a_service_switch_would_count_istio_requests() {
    let old = spec(&format!(
        "revision: '1.11'\nrouter: {SERVICE}\nsteps: [0, 100]\nanalysis:\n  minRequests: 10\n  metrics: [{{name: e, query: 'sum(rate(nginx_http_requests_total{{version=\"{{{{ canary.subset }}}}\"}}[1m]))', max: 0.01}}]\n"
    ));
    let issues = validate_spec(&old);
    assert!(
        issues
            .iter()
            .any(|i| i.path == "spec.analysis.minRequests"
                && i.message.contains("istio_requests_total")),
        "{issues:?}"
    );
    let istio_templates = spec(&format!(
        "revision: '1.11'\nrouter: {SERVICE}\nsteps: [0, 100]\nanalysis:\n  minRequests: 10\n  metrics: [{{name: e, template: istio-error-rate, max: 0.01}}]\n"
    ));
    let issues = validate_spec(&istio_templates);
    assert!(
        issues
            .iter()
            .any(|i| i.path.ends_with(".template") && i.message.contains("Service router")),
        "{issues:?}"
    );
    // What it should have been: no warning.
    assert!(validate_spec(&spec_with_requests()).is_empty());
    let fixed = shipped("policies/service-blue-green.yaml");
    assert!(
        validate_spec(&fixed).is_empty(),
        "{:?}",
        validate_spec(&fixed)
    );
}

/// Header/cookie A/B testing: at 0 % the canary's only traffic is the test route's, and
/// a 0 % step was never judged ("no user traffic to judge at 0%"): a canary failing on
/// the testers' requests reached 100 % of the users before its first verdict.
#[test]
fn ab_testing_at_zero_gets_a_verdict_from_test_route_traffic() {
    let spec = spec(
        "revision: v2\nrouter: {istio: {virtualService: web-echo, stable: {host: web-echo, subset: v1}, canary: {host: web-echo, subset: v2}}}\ntestRoute: {cookie: x-version=v2}\nsteps: [0, 100]\nanalysis:\n  interval: 1m\n  judgeTestRoute: true\n  metrics: [{name: error-rate, template: istio-error-rate, max: 0.01}]\n",
    );
    let scenario = Scenario::parse(
        "kind: Scenario\ntraffic: { requestsPerSecond: 50, testRouteShare: 0.1 }\nmetrics:\n  error-rate: { canary: [{ value: 0.5 }] }\n",
        "inline scenario",
    )
    .unwrap();
    let sim = Simulation::new(policy(), spec, scenario, 1).unwrap();
    let report = sim.run();
    assert_eq!(report.outcome, Outcome::RolledBack, "{:#?}", report.status);
    let weights: Vec<u8> = report
        .timeline
        .iter()
        .flat_map(|e| e.writes.iter().map(|w| w.canary_weight))
        .collect();
    assert!(
        weights.iter().all(|w| *w == 0),
        "no user reached the failing canary: {weights:?}"
    );
    let last = report.status.last_analysis.as_ref().expect("judged");
    assert_eq!(
        last.verdict,
        shiftgate::policy::status::VerdictKind::Fail,
        "{:#?}",
        report.status
    );
    assert!(
        last.message.contains("300 reqs"),
        "the testers' requests: {last:?}"
    );
}

fn shipped(file: &str) -> RolloutSpec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut loaded = parse_file(&root.join(file)).unwrap_or_else(|d| panic!("{d:?}"));
    loaded.remove(0).policy.spec
}
