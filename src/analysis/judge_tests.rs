//! Tests of the threshold judge and of the evaluation as a whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::analysis::sample::Measured;
use crate::policy::CompareSpec;

fn metric(
    name: &str,
    min: Option<f64>,
    max: Option<f64>,
    compare: Option<CompareSpec>,
) -> MetricSpec {
    MetricSpec {
        name: name.to_owned(),
        template: None,
        query: Some("up".to_owned()),
        stable_query: None,
        min,
        max,
        judge: compare
            .as_ref()
            .map(|_| Box::new(crate::policy::JudgeSpec::Threshold)),
        compare,
        counts: None,
    }
}

fn spec(metrics: Vec<MetricSpec>, min_requests: u64) -> AnalysisSpec {
    serde_json::from_value::<AnalysisSpec>(serde_json::json!({ "metrics": [] }))
        .map(|mut s| {
            s.metrics = metrics;
            s.min_requests = min_requests;
            s
        })
        .unwrap()
}

fn input(requests: Sample, metrics: Vec<(&str, Sample, Option<Sample>)>) -> AnalysisInput {
    AnalysisInput {
        at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        canary_requests: requests,
        metrics: metrics
            .into_iter()
            .map(|(name, canary, stable)| MetricObservation {
                name: name.to_owned(),
                canary,
                stable,
            })
            .collect(),
    }
}

fn increase(x: f64) -> Option<CompareSpec> {
    Some(CompareSpec {
        max_increase: Some(x),
        max_ratio: None,
    })
}

fn ratio_limit(r: f64) -> Option<CompareSpec> {
    Some(CompareSpec {
        max_increase: None,
        max_ratio: Some(r),
    })
}

fn v(x: f64) -> Sample {
    Sample::value(x)
}

fn kind(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail { .. } => "fail",
        Verdict::Inconclusive(_) => "inconclusive",
    }
}

#[test]
fn verdict_table() {
    let unreachable = || Sample::Unreachable {
        message: "refused".into(),
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, MetricSpec, Sample, Option<Sample>, &str)> = vec![
        ("below max", metric("m", None, Some(0.01), None), v(0.002), None, "pass"),
        ("at max", metric("m", None, Some(0.01), None), v(0.01), None, "pass"),
        ("above max", metric("m", None, Some(0.01), None), v(0.034), None, "fail"),
        ("below min", metric("m", Some(0.9), None, None), v(0.5), None, "fail"),
        ("above min", metric("m", Some(0.9), None, None), v(0.95), None, "pass"),
        ("increase within", metric("m", None, None, increase(0.005)), v(0.004), Some(v(0.001)), "pass"),
        ("increase beyond", metric("m", None, None, increase(0.005)), v(0.05), Some(v(0.002)), "fail"),
        ("ratio within", metric("m", None, None, ratio_limit(1.25)), v(110.0), Some(v(100.0)), "pass"),
        ("ratio beyond", metric("m", None, None, ratio_limit(1.25)), v(160.0), Some(v(100.0)), "fail"),
        ("ratio 0 over 0", metric("m", None, None, ratio_limit(1.25)), v(0.0), Some(v(0.0)), "pass"),
        ("ratio x over 0", metric("m", None, None, ratio_limit(1.25)), v(0.001), Some(v(0.0)), "fail"),
        ("stable missing", metric("m", None, None, increase(0.005)), v(0.004), None, "inconclusive"),
        ("stable unreachable", metric("m", None, None, increase(0.005)), v(0.004), Some(unreachable()), "inconclusive"),
        ("max fails though stable missing", metric("m", None, Some(0.01), increase(0.005)), v(0.5), None, "fail"),
        ("no data", metric("m", None, Some(0.01), None), Sample::NoData, None, "inconclusive"),
        ("nan", metric("m", None, Some(0.01), None), Sample::NotANumber, None, "inconclusive"),
        ("nan value", metric("m", None, Some(0.01), None), v(f64::NAN), None, "inconclusive"),
        ("unreachable", metric("m", None, Some(0.01), None), unreachable(), None, "inconclusive"),
        ("timed out", metric("m", None, Some(0.01), None), Sample::TimedOut, None, "inconclusive"),
        ("invalid", metric("m", None, Some(0.01), None), Sample::Invalid { message: "parse".into() }, None, "inconclusive"),
        ("infinite", metric("m", None, Some(0.01), None), v(f64::INFINITY), None, "fail"),
    ];
    for (name, m, canary, stable, expected) in cases {
        let e = judge(
            &spec(vec![m], 0),
            &input(v(1000.0), vec![("m", canary, stable)]),
            30,
        );
        assert_eq!(kind(&e.verdict), expected, "{name}: {e:?}");
    }
}

#[test]
fn inconclusive_reasons_are_kept() {
    let m = || metric("m", None, Some(1.0), None);
    let reason = |s: Sample| {
        judge(
            &spec(vec![m()], 0),
            &input(v(1000.0), vec![("m", s, None)]),
            30,
        )
        .verdict
    };
    assert_eq!(
        reason(Sample::NoData),
        Verdict::Inconclusive(InconclusiveReason::NoData)
    );
    assert_eq!(
        reason(Sample::TimedOut),
        Verdict::Inconclusive(InconclusiveReason::TimedOut)
    );
    assert_eq!(
        reason(Sample::Unreachable {
            message: "refused".into()
        }),
        Verdict::Inconclusive(InconclusiveReason::SourceUnreachable("refused".into()))
    );
    assert_eq!(
        reason(Sample::Invalid {
            message: "bad".into()
        }),
        Verdict::Inconclusive(InconclusiveReason::InvalidQuery("bad".into()))
    );
}

#[test]
fn fail_beats_inconclusive_and_inconclusive_beats_pass() {
    let s = spec(
        vec![
            metric("a", None, Some(1.0), None),
            metric("b", None, Some(1.0), None),
            metric("c", None, Some(1.0), None),
        ],
        0,
    );
    let e = judge(
        &s,
        &input(
            v(1000.0),
            vec![
                ("a", v(0.5), None),
                ("b", Sample::NoData, None),
                ("c", v(2.0), None),
            ],
        ),
        30,
    );
    assert!(
        matches!(&e.verdict, Verdict::Fail { metric, .. } if metric == "c"),
        "{e:?}"
    );
    let e = judge(
        &s,
        &input(
            v(1000.0),
            vec![
                ("a", v(0.5), None),
                ("b", Sample::NoData, None),
                ("c", v(0.5), None),
            ],
        ),
        30,
    );
    assert_eq!(e.verdict, Verdict::Inconclusive(InconclusiveReason::NoData));
    let e = judge(
        &s,
        &input(v(1000.0), vec![("a", v(0.5), None), ("c", v(0.5), None)]),
        30,
    );
    assert_eq!(
        kind(&e.verdict),
        "inconclusive",
        "a metric missing from the input has no data"
    );
}

#[test]
fn too_few_requests_make_the_whole_evaluation_inconclusive() {
    let s = spec(vec![metric("m", None, Some(0.01), None)], 100);
    let e = judge(&s, &input(v(42.0), vec![("m", v(0.5), None)]), 30);
    assert_eq!(
        e.verdict,
        Verdict::Inconclusive(InconclusiveReason::TooFewRequests {
            requests: 42.0,
            min: 100
        })
    );
    assert!(e.message.contains("42 < 100"), "{}", e.message);
    let e = judge(&s, &input(Sample::NoData, vec![("m", v(0.001), None)]), 30);
    assert!(matches!(
        e.verdict,
        Verdict::Inconclusive(InconclusiveReason::TooFewRequests { .. })
    ));
    let e = judge(
        &s,
        &input(Sample::NotANumber, vec![("m", v(0.001), None)]),
        30,
    );
    assert_eq!(
        e.verdict,
        Verdict::Inconclusive(InconclusiveReason::NotANumber),
        "a count that is not a number is not 0 requests"
    );
    assert!(
        e.message.contains("canary request count: not a number"),
        "{}",
        e.message
    );
    let e = judge(
        &s,
        &input(Sample::TimedOut, vec![("m", v(0.001), None)]),
        30,
    );
    assert_eq!(
        e.verdict,
        Verdict::Inconclusive(InconclusiveReason::TimedOut)
    );
    let e = judge(&s, &input(v(100.0), vec![("m", v(0.001), None)]), 30);
    assert_eq!(e.verdict, Verdict::Pass);
    // No minimum: the request count is not needed.
    let s = spec(vec![metric("m", None, Some(0.01), None)], 0);
    let e = judge(&s, &input(Sample::NoData, vec![("m", v(0.001), None)]), 30);
    assert_eq!(e.verdict, Verdict::Pass);
}

#[test]
fn compare_is_skipped_at_full_weight() {
    let s = spec(vec![metric("m", None, None, increase(0.005))], 0);
    let e = judge(
        &s,
        &input(v(1000.0), vec![("m", v(0.5), Some(Sample::NotANumber))]),
        100,
    );
    assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
    assert!(e.metrics[0].detail.contains("compare skipped"));
}

#[test]
fn messages_carry_the_numbers() {
    let s = spec(vec![metric("error-rate", None, Some(0.01), None)], 100);
    let mut i = input(v(1234.0), vec![("error-rate", v(0.034), None)]);
    i.metrics[0].canary = Sample::Value(Measured {
        value: 0.034,
        ..Measured::default()
    });
    let e = judge(&s, &i, 30);
    assert_eq!(e.message, "error-rate 0.034 > max 0.01 over 30s, 1234 reqs");
}

#[test]
fn numbers_print_short() {
    assert_eq!(num(0.034), "0.034");
    assert_eq!(num(512.0), "512");
    assert_eq!(num(0.00001), "0");
    assert_eq!(num(-0.0), "0");
    assert_eq!(num(1234.5), "1234.5");
}
