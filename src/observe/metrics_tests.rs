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
