//! Unit tests of the daemon's registry (src/observe/metrics.rs).

use super::*;

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    }
}

#[test]
fn names_follow_the_convention() {
    let metrics = Metrics::new();
    let names = metrics.exported_names();
    assert!(names.contains(&"shiftgate_rollouts_total".to_owned()));
    assert!(names.contains(&"shiftgate_prometheus_query_duration_seconds".to_owned()));
    assert!(names.contains(&"shiftgate_canary_weight_ratio".to_owned()));
    for name in &names {
        assert!(
            name.starts_with("shiftgate_") || name.starts_with("process_"),
            "{name}"
        );
        assert!(
            !name.ends_with("_ms") && !name.ends_with("_percent"),
            "{name}"
        );
    }
}

/// With a series in every family, the names the encoder writes are exactly the
/// recorded ones (so the record cannot drift from prometheus-client's naming).
#[test]
fn recorded_names_match_the_encoded_ones() {
    let metrics = Metrics::new();
    metrics.rollout_finished(&policy(), RolloutResult::Promoted, Some(90.0));
    metrics.analysis_evaluated(&policy(), VerdictKind::Pass);
    metrics.set_rollout(&policy(), Phase::Progressing, 1, 30);
    metrics.set_metric_value(&policy(), "error-rate", Target::Canary, 0.01);
    metrics.set_metric_threshold(&policy(), "error-rate", Bound::Max, 0.02);
    metrics.set_evidence(&policy(), "error-rate", Some(0.48));
    metrics.observe_prometheus_query(0.1);
    metrics.observe_reconcile(0.1);
    metrics.router_write(WriteResult::Ok);
    metrics.reconcile_failed("StatusConflict");
    metrics.set_leader(true);
    metrics.set_policies(1);
    let text = metrics.encode().unwrap_or_default();
    let mut encoded: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            let name = parts.next()?;
            Some(match parts.next()? {
                "counter" => format!("{name}_total"),
                _ => name.to_owned(),
            })
        })
        .collect();
    encoded.sort();
    assert_eq!(encoded, metrics.exported_names());
}

#[test]
fn phase_gauge_is_one_for_the_current_phase_only() {
    let metrics = Metrics::new();
    metrics.set_rollout(&policy(), Phase::Progressing, 2, 30);
    metrics.set_metric_value(&policy(), "error-rate", Target::Canary, 0.01);
    metrics.set_metric_threshold(&policy(), "error-rate", Bound::Max, 0.02);
    let text = metrics.encode().unwrap_or_default();
    assert!(text.contains(
        r#"shiftgate_rollout_phase{namespace="shop",name="checkout",phase="Progressing"} 1"#
    ));
    assert!(text.contains(
        r#"shiftgate_rollout_phase{namespace="shop",name="checkout",phase="Promoted"} 0"#
    ));
    assert!(text.contains(r#"shiftgate_canary_weight_ratio{namespace="shop",name="checkout"} 0.3"#));
    metrics.forget_policy(&policy());
    let text = metrics.encode().unwrap_or_default();
    assert!(!text.contains(r#"name="checkout""#), "{text}");
}

#[test]
fn per_policy_counters_stop_at_the_bound_and_a_deleted_policy_frees_its_place() {
    let metrics = Metrics::new();
    let nth = |i: usize| PolicyRef {
        namespace: "shop".to_owned(),
        name: format!("p{i}"),
    };
    for i in 0..MAX_POLICIES_WITH_RESULT_SERIES {
        metrics.set_rollout(&nth(i), Phase::Progressing, 0, 0);
    }
    let past = nth(MAX_POLICIES_WITH_RESULT_SERIES);
    metrics.rollout_finished(&past, RolloutResult::RolledBack, None);
    let text = metrics.encode().unwrap_or_default();
    let series = format!(
        r#"shiftgate_policy_rollouts_total{{namespace="shop",name="{}","#,
        past.name
    );
    assert!(!text.contains(&series), "past the bound");
    assert!(text.contains(r#"shiftgate_rollouts_total{result="rolled_back"} 1"#));
    metrics.forget_policy(&nth(0));
    metrics.rollout_finished(&past, RolloutResult::RolledBack, None);
    let text = metrics.encode().unwrap_or_default();
    assert!(
        text.contains(&format!("{series}result=\"rolled_back\"}} 1")),
        "{series}"
    );
    assert!(!text.contains(r#"name="p0","#));
}

fn at(namespace: &str, name: &str) -> PolicyRef {
    PolicyRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// Everything a reconcile publishes for a policy, with `weight` to tell policies apart.
fn publish(metrics: &Metrics, policy: &PolicyRef, weight: u8) {
    metrics.set_rollout(policy, Phase::Checking, 3, weight);
    metrics.set_metric_threshold(policy, "error-rate", Bound::Max, 0.02);
    metrics.set_metric_threshold(policy, "p99", Bound::MaxRatio, 1.5);
    metrics.set_metric_value(policy, "error-rate", Target::Canary, 0.015);
    metrics.set_metric_value(policy, "error-rate", Target::Stable, f64::NAN);
    metrics.set_metric_value(policy, "p99", Target::Stable, 123.0);
    metrics.clear_metric_value(policy, "p99", Target::Stable);
    metrics.set_metric_value(policy, "p99", Target::Canary, 1e-12);
    metrics.set_evidence(policy, "error-rate", Some(0.48));
    metrics.set_evidence(policy, "p99", Some(0.1));
    metrics.set_evidence(policy, "p99", None);
    metrics.analysis_evaluated(policy, VerdictKind::Pass);
    metrics.analysis_evaluated(policy, VerdictKind::Fail);
}

fn series_of(text: &str, policy: &PolicyRef) -> Vec<String> {
    let labels = format!(
        "{{namespace=\"{}\",name=\"{}\"",
        policy.namespace, policy.name
    );
    text.lines()
        .filter(|line| line.contains(&labels))
        .map(str::to_owned)
        .collect()
}

/// The per-policy series are written from one record per policy; this pins every line
/// (labels, their order, value formats) to what prometheus-client's families wrote.
#[test]
fn a_policys_series_are_written_as_the_families_wrote_them() {
    let metrics = Metrics::new();
    publish(&metrics, &policy(), 50);
    let text = metrics.encode().unwrap_or_default();
    let phase = |phase: &str, value: u8| {
        format!(
            r#"shiftgate_rollout_phase{{namespace="shop",name="checkout",phase="{phase}"}} {value}"#
        )
    };
    let mut expected = vec![
        r#"shiftgate_policy_rollouts_total{namespace="shop",name="checkout",result="promoted"} 0"#.to_owned(),
        r#"shiftgate_policy_rollouts_total{namespace="shop",name="checkout",result="rolled_back"} 0"#.to_owned(),
        r#"shiftgate_policy_rollouts_total{namespace="shop",name="checkout",result="aborted"} 0"#.to_owned(),
        r#"shiftgate_policy_rollouts_total{namespace="shop",name="checkout",result="held"} 0"#.to_owned(),
        r#"shiftgate_policy_analysis_evaluations_total{namespace="shop",name="checkout",verdict="pass"} 1"#.to_owned(),
        r#"shiftgate_policy_analysis_evaluations_total{namespace="shop",name="checkout",verdict="fail"} 1"#.to_owned(),
        r#"shiftgate_policy_analysis_evaluations_total{namespace="shop",name="checkout",verdict="inconclusive"} 0"#.to_owned(),
        r#"shiftgate_canary_weight_ratio{namespace="shop",name="checkout"} 0.5"#.to_owned(),
        r#"shiftgate_rollout_step{namespace="shop",name="checkout"} 3"#.to_owned(),
    ];
    for candidate in ALL_PHASES {
        expected.push(phase(
            candidate.as_str(),
            u8::from(candidate == Phase::Checking),
        ));
    }
    expected.extend([
        r#"shiftgate_analysis_metric_value{namespace="shop",name="checkout",metric="error-rate",target="canary"} 0.015"#.to_owned(),
        r#"shiftgate_analysis_metric_value{namespace="shop",name="checkout",metric="error-rate",target="stable"} NaN"#.to_owned(),
        r#"shiftgate_analysis_metric_value{namespace="shop",name="checkout",metric="p99",target="canary"} 1e-12"#.to_owned(),
        r#"shiftgate_analysis_metric_threshold{namespace="shop",name="checkout",metric="error-rate",bound="max"} 0.02"#.to_owned(),
        r#"shiftgate_analysis_metric_threshold{namespace="shop",name="checkout",metric="p99",bound="max_ratio"} 1.5"#.to_owned(),
        r#"shiftgate_analysis_evidence_ratio{namespace="shop",name="checkout",metric="error-rate"} 0.48"#.to_owned(),
    ]);
    assert_eq!(series_of(&text, &policy()), expected);
    assert!(text.contains("# TYPE shiftgate_policy_rollouts counter\n"));
    assert!(text.contains("# TYPE shiftgate_rollout_phase gauge\n"));
}

/// Label values are escaped as prometheus-client escapes them.
#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new();
    metrics.set_rollout(&at("a\"b\\c", "new\nline"), Phase::Held, 1, 100);
    let text = metrics.encode().unwrap_or_default();
    assert!(
        text.contains(r#"shiftgate_canary_weight_ratio{namespace="a\"b\\c",name="new\nline"} 1.0"#),
        "{text}"
    );
}

/// Policies with the same name in two namespaces, and two in one namespace, keep their
/// own series; forgetting one removes all of its series (and its record) and nothing
/// of the others.
#[test]
fn policies_keep_their_own_series_and_forgetting_one_removes_all_of_it() {
    let metrics = Metrics::new();
    let shop = policy();
    let other = at("other", "checkout");
    let cart = at("shop", "cart");
    publish(&metrics, &shop, 10);
    publish(&metrics, &other, 20);
    publish(&metrics, &cart, 30);
    metrics.rollout_finished(&other, RolloutResult::RolledBack, None);
    let before = metrics.encode().unwrap_or_default();
    let series = |p: &PolicyRef| series_of(&before, p);
    assert_eq!(series(&shop).len(), 25);
    assert!(series(&shop)
        .iter()
        .any(|l| l.starts_with("shiftgate_canary_weight_ratio") && l.ends_with(" 0.1")));
    assert!(series(&other)
        .iter()
        .any(|l| l.starts_with("shiftgate_canary_weight_ratio") && l.ends_with(" 0.2")));
    assert!(series(&other)
        .iter()
        .any(|l| l.contains(r#"result="rolled_back"} 1"#)));
    assert!(series(&shop)
        .iter()
        .any(|l| l.contains(r#"result="rolled_back"} 0"#)));

    metrics.forget_policy(&shop);
    let after = metrics.encode().unwrap_or_default();
    assert!(series_of(&after, &shop).is_empty(), "{after}");
    assert_eq!(series_of(&after, &other), series(&other));
    assert_eq!(series_of(&after, &cart), series(&cart));

    metrics.forget_policy(&other);
    metrics.forget_policy(&cart);
    assert!(metrics.policy_series.lock().namespaces.is_empty());
    let empty = metrics.encode().unwrap_or_default();
    assert!(!empty.contains("namespace="), "{empty}");
    // A family without series is not written at all, as before any policy.
    assert!(
        !empty.contains("# HELP shiftgate_rollout_phase "),
        "{empty}"
    );
    let headers = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("# "))
            .map(str::to_owned)
            .collect()
    };
    let fresh = Metrics::new().encode().unwrap_or_default();
    assert_eq!(headers(&empty), headers(&fresh));
}

/// The same calls give the same per-policy series, whatever order the policies were
/// first seen in: they are written in policy, metric and label order (the fixed
/// families keep prometheus-client's hash order).
#[test]
fn the_same_calls_give_the_same_scrape() {
    let scrape = |order: &[usize]| {
        let metrics = Metrics::new();
        for i in order {
            publish(&metrics, &at("shop", &format!("p{i}")), 5);
        }
        let text = metrics.encode().unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("namespace="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let forward: Vec<usize> = (0..50).collect();
    let backward: Vec<usize> = (0..50).rev().collect();
    let forward = scrape(&forward);
    assert_eq!(forward.lines().count(), 50 * 25);
    assert!(forward == scrape(&backward), "the order differs");
}

/// Clearing a value or evidence never creates a policy or a metric.
#[test]
fn clearing_what_was_never_set_creates_nothing() {
    let metrics = Metrics::new();
    metrics.clear_metric_value(&policy(), "error-rate", Target::Canary);
    metrics.set_evidence(&policy(), "error-rate", None);
    assert!(metrics.policy_series.lock().namespaces.is_empty());
    metrics.set_metric_threshold(&policy(), "error-rate", Bound::Min, 0.5);
    metrics.clear_metric_value(&policy(), "latency", Target::Stable);
    let text = metrics.encode().unwrap_or_default();
    assert!(
        !text.contains("# HELP shiftgate_analysis_metric_value "),
        "{text}"
    );
    assert!(!text.contains("latency"), "{text}");
    assert!(text.contains(
        r#"shiftgate_analysis_metric_threshold{namespace="shop",name="checkout",metric="error-rate",bound="min"} 0.5"#
    ));
}

/// What a policy costs in the registry: one record (the weight, step and phase
/// inline, result counters boxed) and one entry per analysis metric. A field added
/// here is paid 10,000 times at the scale goal.
#[test]
fn a_policy_record_stays_compact() {
    use super::super::policy_series::{MetricSeries, PolicyRecord};
    assert!(std::mem::size_of::<PolicyRecord>() <= 48);
    assert!(std::mem::size_of::<MetricSeries>() <= 80);
}

/// A scrape takes the store's lock per chunk of policies: every policy is still written
/// once, in order, when a chunk ends inside a namespace, at its end, or at the last one.
#[test]
fn a_scrape_writes_every_policy_once_across_its_chunks() {
    let metrics = Metrics::new();
    let sizes = [("a", 256), ("b", 300), ("c", 1), ("d", 211)];
    let mut expected = Vec::new();
    for (namespace, count) in sizes {
        for i in 0..count {
            let name = format!("p{i:03}");
            metrics.set_rollout(&at(namespace, &name), Phase::Progressing, 0, 1);
            expected.push(format!(
                r#"shiftgate_canary_weight_ratio{{namespace="{namespace}",name="{name}"}} 0.01"#
            ));
        }
    }
    let text = metrics.encode().unwrap_or_default();
    let written: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("shiftgate_canary_weight_ratio{"))
        .collect();
    assert_eq!(written, expected);
}

/// What a holding rollout of the scale bench keeps: one record, its namespace shared
/// with the other policies', its metrics in a vector of exactly their number.
#[test]
fn a_namespace_of_rollouts_shares_one_namespace_and_keeps_one_record_each() {
    let metrics = Metrics::new();
    for i in 0..300 {
        let policy = at("bench", &format!("app-{i}"));
        for _reconcile in 0..2 {
            metrics.set_metric_threshold(&policy, "error-rate", Bound::Max, 0.01);
            metrics.set_metric_threshold(&policy, "p99-latency", Bound::Max, 500.0);
            metrics.set_rollout(&policy, Phase::Progressing, 1, 10);
            metrics.analysis_evaluated(&policy, VerdictKind::Pass);
            for metric in ["error-rate", "p99-latency"] {
                metrics.set_evidence(&policy, metric, None);
                metrics.set_metric_value(&policy, metric, Target::Canary, 0.001);
                metrics.set_metric_value(&policy, metric, Target::Stable, 0.002);
            }
        }
    }
    let store = metrics.policy_series.lock();
    assert_eq!(store.namespaces.len(), 1);
    let records = &store.namespaces["bench"];
    assert_eq!(records.len(), 300);
    for record in records.values() {
        assert_eq!(record.metrics.len(), 2);
        assert_eq!(record.metrics.capacity(), 2);
        assert!(record.results.is_some());
    }
}
