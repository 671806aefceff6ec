use super::*;

fn t(millis: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

fn members() -> Vec<(String, Kind)> {
    vec![
        ("sum(a)".to_owned(), Kind::Value),
        ("sum(b)".to_owned(), Kind::Value),
        ("sum by (le) (c)".to_owned(), Kind::Histogram),
    ]
}

fn http(body: &str) -> RawAnswer {
    RawAnswer::Http {
        status: 200,
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn instants_round_up_to_the_window_and_never_earlier() {
    let batcher = Batcher::new(Duration::from_millis(20));
    assert_eq!(batcher.align(t(1_000)), t(1_000));
    assert_eq!(batcher.align(t(1_001)), t(1_020));
    assert_eq!(batcher.align(t(1_019)), t(1_020));
    let sub_milli = t(1_000) + chrono::Duration::microseconds(1);
    assert_eq!(batcher.align(sub_milli), t(1_020));
}

#[test]
fn the_batch_labels_each_member_and_joins_them_with_or() {
    assert_eq!(
        combined_query(&members()[..2]),
        r#"label_replace(sum(a), "shiftgate_batch_query", "0", "", "") or label_replace(sum(b), "shiftgate_batch_query", "1", "", "")"#
    );
}

#[test]
fn every_builtin_query_is_an_instant_vector_and_batches_into_valid_promql() {
    use crate::metrics::builtin::{Matcher, BUILTINS};
    use crate::metrics::template::Template;
    use crate::metrics::variables::{Side, Target, Variables};
    let vars = Variables {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
        interval: "30s".to_owned(),
        canary: Target {
            host: Some("checkout.shop.svc.cluster.local".to_owned()),
            subset: Some("v2".to_owned()),
            port: None,
            cluster: Some("canary".to_owned()),
            labels: Default::default(),
        },
        stable: Target::default(),
        side: Side::Canary,
        vars: Default::default(),
        router: "istio",
        selector_key: None,
    };
    let matcher = vec![Matcher {
        label: "version".to_owned(),
        variable: "target.subset".to_owned(),
    }];
    let mut all = Vec::new();
    for builtin in BUILTINS {
        let q = builtin.queries(&matcher);
        for text in [&q.value, &q.requests, &q.errors]
            .into_iter()
            .chain(&q.buckets)
        {
            let query = Template::parse(builtin.name, text)
                .and_then(|t| t.render(&vars))
                .unwrap_or_else(|e| panic!("{e}"));
            let parsed = promql_parser::parser::parse(&query).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                parsed.value_type(),
                promql_parser::parser::value::ValueType::Vector,
                "{query}"
            );
            all.push((query, Kind::Value));
        }
    }
    let combined = combined_query(&all);
    if let Err(e) = promql_parser::parser::parse(&combined) {
        panic!("{e}: {combined}");
    }
}

#[test]
fn an_answer_is_split_by_member_and_a_missing_series_is_no_data() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"shiftgate_batch_query":"2","le":"+Inf"},"value":[1,"7"]},
        {"metric":{"shiftgate_batch_query":"0"},"value":[1,"0.5"]},
        {"metric":{"shiftgate_batch_query":"2","le":"100"},"value":[1,"5"]}]}}"#;
    let Split::PerMember(bodies) = split(&http(body), &members(), "http://p") else {
        panic!("not split");
    };
    let read = |i: usize| {
        let (query, kind) = &members()[i];
        kind.interpret()(200, &bodies[i], query, "http://p")
    };
    assert_eq!(read(0), Sample::value(0.5));
    assert_eq!(
        read(1),
        Sample::NoData,
        "never another member's number, never 0"
    );
    let Sample::Value(histogram) = read(2) else {
        panic!("{:?}", read(2));
    };
    assert_eq!(
        (histogram.requests, histogram.buckets.len()),
        (Some(7.0), 1)
    );
}

#[test]
fn refused_batches_are_rerun_and_outages_are_shared() {
    let bad = r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}"#;
    let refused = RawAnswer::Http {
        status: 422,
        body: bad.as_bytes().to_vec(),
    };
    assert_eq!(split(&refused, &members(), "http://p"), Split::Rerun);
    let warned =
        r#"{"status":"success","warnings":["w"],"data":{"resultType":"vector","result":[]}}"#;
    assert_eq!(split(&http(warned), &members(), "http://p"), Split::Rerun);
    let stranger = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"shiftgate_batch_query":"9"},"value":[1,"1"]}]}}"#;
    assert_eq!(split(&http(stranger), &members(), "http://p"), Split::Rerun);
    assert_eq!(
        split(&RawAnswer::TimedOut, &members(), "http://p"),
        Split::Shared
    );
    let down = RawAnswer::Http {
        status: 503,
        body: b"upstream down".to_vec(),
    };
    assert_eq!(split(&down, &members(), "http://p"), Split::Shared);
}
