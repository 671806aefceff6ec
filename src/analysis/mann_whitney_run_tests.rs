//! Tests of `judge: mannWhitney` in an evaluation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::analysis::judge::evaluate;
use crate::analysis::sample::{MetricObservation, Sample};

fn spec(judges: &[serde_json::Value]) -> AnalysisSpec {
    let metrics: Vec<serde_json::Value> = judges
        .iter()
        .enumerate()
        .map(|(i, judge)| {
            serde_json::json!({
                "name": format!("m{i}"), "template": "istio-latency-p50",
                "compare": {}, "judge": judge
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "metrics": metrics })).unwrap()
}

fn input(at: i64, values: &[(Sample, Sample)]) -> AnalysisInput {
    AnalysisInput {
        at: chrono::DateTime::from_timestamp(at, 0).unwrap(),
        canary_requests: Sample::value(1000.0),
        metrics: values
            .iter()
            .enumerate()
            .map(|(i, (canary, stable))| MetricObservation {
                name: format!("m{i}"),
                canary: canary.clone(),
                stable: Some(stable.clone()),
            })
            .collect(),
    }
}

/// Evaluations at 30 s apart, each with the per-metric values of `rounds[k]`.
fn run(spec: &AnalysisSpec, rounds: &[Vec<(f64, f64)>]) -> Vec<crate::analysis::Evaluation> {
    let mut prior: Option<EvidenceStatus> = None;
    let mut out = Vec::new();
    for (k, round) in rounds.iter().enumerate() {
        let values: Vec<(Sample, Sample)> = round
            .iter()
            .map(|(c, s)| (Sample::value(*c), Sample::value(*s)))
            .collect();
        let e = evaluate(spec, &input(30 * k as i64, &values), 10, prior.as_ref());
        prior = e.evidence.clone();
        out.push(e);
    }
    out
}

fn series_of(e: &crate::analysis::Evaluation, name: &str) -> MannWhitneySeries {
    match prior_state(e.evidence.as_ref(), name) {
        Some(JudgeState::MannWhitney(s)) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn the_series_keeps_the_last_intervals_only() {
    let mut s = MannWhitneySeries::default();
    for i in 0..(MAX_INTERVALS + 25) {
        s = s.pushed(i as f64, 2.0 * i as f64);
    }
    assert_eq!(s.canary.len(), MAX_INTERVALS);
    assert_eq!(s.stable.len(), MAX_INTERVALS);
    assert_eq!(s.canary.first(), Some(&25.0));
    assert_eq!(s.canary.last(), Some(&((MAX_INTERVALS + 24) as f64)));
    let json = serde_json::to_string(&JudgeState::MannWhitney(s)).unwrap();
    assert!(json.len() < 4_000, "{} bytes", json.len());
}

#[test]
fn a_slower_canary_fails_once_enough_intervals_are_in() {
    let spec = spec(&[serde_json::json!("mannWhitney")]);
    let rounds: Vec<Vec<(f64, f64)>> = (0..8)
        .map(|i| vec![(200.0 + i as f64, 100.0 + (i % 3) as f64)])
        .collect();
    let evaluations = run(&spec, &rounds);
    // Three intervals give no finite 95% interval; the fourth does.
    for e in &evaluations[..3] {
        assert!(
            matches!(
                e.verdict,
                Verdict::Inconclusive(InconclusiveReason::NotEnoughEvidence(_))
            ),
            "{e:?}"
        );
        assert!(e.gathering, "{e:?}");
        assert!(e.message.contains("interval"), "{}", e.message);
    }
    let failed = evaluations
        .iter()
        .position(|e| matches!(e.verdict, Verdict::Fail { .. }))
        .expect("the slower canary fails");
    let e = &evaluations[failed];
    assert_eq!(failed, 3);
    assert!(
        !e.decided_worse,
        "one look of a fixed-horizon test counts against failureLimit"
    );
    assert!(e.message.contains("higher than stable"), "{}", e.message);
    assert!(e.message.contains("score 0 of 100"), "{}", e.message);
    assert!(e.message.contains("95% interval"), "{}", e.message);
    assert_eq!(series_of(e, "m0").intervals(), failed + 1);
}

#[test]
fn a_canary_like_stable_passes_and_never_advances_early() {
    let spec = spec(&[serde_json::json!("mannWhitney")]);
    let rounds: Vec<Vec<(f64, f64)>> = (0..10)
        .map(|i| vec![(100.0 + (i * 7 % 5) as f64, 100.0 + (i * 3 % 5) as f64)])
        .collect();
    let evaluations = run(&spec, &rounds);
    for e in &evaluations[4..] {
        assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
        assert!(
            !e.shown_no_worse,
            "a fixed-horizon test shows nothing early"
        );
        assert!(e.message.contains("no shift shown"), "{}", e.message);
    }
}

#[test]
fn an_outage_adds_nothing_and_is_inconclusive() {
    let spec = spec(&[serde_json::json!("mannWhitney")]);
    let e = run(&spec, &[vec![(100.0, 100.0)]]).remove(0);
    let prior = e.evidence.clone();
    let down = Sample::Unreachable {
        message: "refused".into(),
    };
    for values in [
        (Sample::value(101.0), down.clone()),
        (Sample::NotANumber, Sample::value(100.0)),
        (Sample::NoData, Sample::value(100.0)),
    ] {
        let e = evaluate(&spec, &input(30, &[values]), 10, prior.as_ref());
        assert!(matches!(e.verdict, Verdict::Inconclusive(_)), "{e:?}");
        assert!(!e.gathering, "{e:?}");
        assert_eq!(e.evidence, prior, "nothing was added");
    }
}

#[test]
fn the_score_over_metrics_fails_marginal_or_passes_as_kayenta() {
    // m0 regresses, m1 and m2 do not: a score of 66.7.
    let rounds: Vec<Vec<(f64, f64)>> = (0..8)
        .map(|i| {
            let noise = (i * 7 % 5) as f64;
            vec![
                (300.0 + noise, 100.0 + noise),
                (100.0 + noise, 100.0 + (i * 3 % 5) as f64),
                (50.0 + (i * 3 % 5) as f64, 50.0 + noise),
            ]
        })
        .collect();
    let with = |pass: f64, marginal: f64| {
        let judge = serde_json::json!({"mannWhitney": {"pass": pass, "marginal": marginal}});
        let spec = spec(&[judge.clone(), judge.clone(), judge]);
        run(&spec, &rounds).pop().unwrap()
    };
    let failed = with(95.0, 75.0);
    assert!(
        matches!(&failed.verdict, Verdict::Fail { metric, .. } if metric == "m0"),
        "{failed:?}"
    );
    let marginal = with(95.0, 60.0);
    assert!(
        matches!(
            marginal.verdict,
            Verdict::Inconclusive(InconclusiveReason::MarginalScore(_))
        ),
        "{marginal:?}"
    );
    assert!(
        !marginal.gathering,
        "a marginal score counts against inconclusiveLimit"
    );
    assert!(
        marginal.message.contains("score 66.6667 of 100"),
        "{}",
        marginal.message
    );
    assert_eq!(with(60.0, 50.0).verdict, Verdict::Pass);
}

#[test]
fn series_survive_evaluations_where_the_sequential_judges_cannot_count() {
    let mut spec = spec(&[serde_json::json!("mannWhitney")]);
    spec.metrics.push(
        serde_json::from_value(serde_json::json!({
            "name": "errors", "template": "istio-error-rate", "compare": {}
        }))
        .unwrap(),
    );
    // The error judge sees an outage; the mannWhitney metric a value.
    let mut i = input(30, &[(Sample::value(100.0), Sample::value(100.0))]);
    i.metrics.push(MetricObservation {
        name: "errors".into(),
        canary: Sample::TimedOut,
        stable: Some(Sample::TimedOut),
    });
    let e = evaluate(&spec, &i, 10, None);
    assert_eq!(series_of(&e, "m0").intervals(), 1);
    assert!(
        prior_state(e.evidence.as_ref(), "errors").is_none(),
        "no error counts committed"
    );
}
