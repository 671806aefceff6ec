#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

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
fn built_in_queries_note_their_grouped_form_and_custom_ones_do_not() {
    let plan = PolicyQueries::plan(
        &policy(),
        &spec(
            ISTIO_HOSTS,
            "[{name: e, template: istio-error-rate, max: 0.01}, {name: c, query: 'sum(x)', max: 1}]",
        ),
    );
    // Value, requests and errors; the canary request count is the same requests query.
    assert_eq!(plan.groupings.len(), 3, "{:?}", plan.groupings);
    let SideQueries::Ready { value, .. } = &plan.metrics[0].canary else {
        panic!("{plan:?}");
    };
    let (_, grouping) = plan
        .groupings
        .iter()
        .find(|(q, _)| q == value)
        .unwrap_or_else(|| panic!("{plan:?}"));
    assert_eq!(
        grouping.shape,
        r#"(sum by (destination_service) (rate(istio_requests_total{reporter="destination",destination_service=~"<<shiftgate group 0>>",response_code=~"5.."}[30s])) or 0 * sum by (destination_service) (rate(istio_requests_total{reporter="destination",destination_service=~"<<shiftgate group 0>>"}[30s]))) / sum by (destination_service) (rate(istio_requests_total{reporter="destination",destination_service=~"<<shiftgate group 0>>"}[30s]))"#
    );
    assert_eq!(&*grouping.labels, ["destination_service".to_owned()]);
    assert_eq!(
        grouping.values,
        ["checkout.stage.svc.cluster.local".to_owned()]
    );
    assert!(plan.groupings.iter().all(|(q, _)| q != "sum(x)"));
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
            buckets: None,
            judged_on_counts: false,
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
fn sequential_metrics_count_over_the_judges_range() {
    let metrics = r#"[
        {name: judged, template: istio-latency-p99, compare: {}},
        {name: limited, template: istio-error-rate, max: 0.01},
        {name: raw, query: 'sum(rate(x{v="{{ target.host }}"}[{{ interval }}]))',
         stableQuery: 'sum(rate(x{v="s"}[{{ interval }}]))', compare: {},
         counts: {requests: 'sum(increase(r{v="{{ target.host }}"}[{{ interval }}]))',
                  errors: 'sum(increase(e{v="{{ target.host }}"}[{{ interval }}]))'}}]"#;
    let plan = PolicyQueries::plan_counting(&policy(), &spec(ISTIO_HOSTS, metrics), Some("47s"));
    let ready = |side: &SideQueries| match side {
        SideQueries::Ready {
            value,
            requests,
            errors,
            buckets,
            judged_on_counts,
        } => (
            value.clone(),
            requests.clone(),
            errors.clone(),
            buckets.clone(),
            *judged_on_counts,
        ),
        SideQueries::Failed(m) => panic!("{m}"),
    };
    let (value, requests, _, buckets, judged) = ready(&plan.metrics[0].canary);
    assert!(
        value.contains("[30s]"),
        "the value keeps the window: {value}"
    );
    assert!(requests.unwrap().contains("[47s]"));
    let buckets = buckets.unwrap();
    assert!(
        buckets.starts_with("sum by (le) (increase(istio_request_duration_milliseconds_bucket{"),
        "{buckets}"
    );
    assert!(buckets.ends_with("[47s]))"), "{buckets}");
    assert!(judged);
    let (_, requests, _, buckets, judged) = ready(&plan.metrics[1].canary);
    assert!(
        requests.unwrap().contains("[30s]"),
        "a threshold metric counts its window"
    );
    assert_eq!((buckets, judged), (None, false));
    let (_, requests, errors, _, judged) = ready(plan.metrics[2].stable.as_ref().unwrap());
    assert_eq!(
        requests.as_deref(),
        Some(r#"sum(increase(r{v="checkout.shop.svc.cluster.local"}[47s]))"#)
    );
    assert!(errors.unwrap().contains("[47s]"));
    assert!(judged);
    assert_eq!(plan.distinct_histograms().len(), 2, "canary and stable");
    assert_eq!(counts_range(t(0), t(47)), "47s");
    assert_eq!(counts_range(t(0), t(0)), "1ms");
}

#[test]
fn counts_count_when_the_window_is_empty_and_failures_stay_failures() {
    let side = SideQueries::Ready {
        value: "v".to_owned(),
        requests: Some("r".to_owned()),
        errors: Some("e".to_owned()),
        buckets: Some("b".to_owned()),
        judged_on_counts: true,
    };
    let histogram = Sample::Value(Measured {
        value: 7.0,
        requests: Some(7.0),
        buckets: vec![crate::analysis::sample::Bucket {
            le: 100.0,
            count: 5.0,
        }],
        ..Measured::default()
    });
    let answers = HashMap::from([
        ("v".to_owned(), Sample::NotANumber),
        ("r".to_owned(), Sample::value(9.0)),
        ("e".to_owned(), Sample::value(0.0)),
        ("b".to_owned(), histogram),
    ]);
    let Sample::Value(m) = assemble(&side, &answers) else {
        panic!("the counts were lost");
    };
    assert!(m.value.is_nan());
    assert_eq!((m.requests, m.buckets.len()), (Some(7.0), 1), "{m:?}");
    let mut down = answers.clone();
    down.insert("b".to_owned(), Sample::TimedOut);
    assert_eq!(assemble(&side, &down), Sample::TimedOut);
}

fn t(secs: i64) -> crate::policy::Timestamp {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

#[test]
fn assemble_fills_counts_and_never_invents_numbers() {
    let side = SideQueries::Ready {
        value: "v".to_owned(),
        requests: Some("r".to_owned()),
        errors: Some("e".to_owned()),
        buckets: None,
        judged_on_counts: false,
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
