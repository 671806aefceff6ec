use super::*;

fn t(millis: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

fn members() -> Vec<Member> {
    vec![
        Member::plain("sum(a)", Kind::Value),
        Member::plain("sum(b)", Kind::Value),
        Member::plain("sum by (le) (c)", Kind::Histogram),
    ]
}

/// The batch of `members` as sent.
fn combined(members: &[Member]) -> String {
    combined_query(&grouping::plan(members))
}

/// The answer to the batch of `members` split per member.
fn split_members(answer: &RawAnswer, members: &[Member]) -> Split {
    split(answer, &grouping::plan(members), members.len(), "http://p")
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
        combined(&members()[..2]),
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
            all.push(Member::plain(query, Kind::Value));
        }
    }
    let combined = combined(&all);
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
    let Split::PerMember(bodies) = split_members(&http(body), &members()) else {
        panic!("not split");
    };
    let read = |i: usize| {
        let member = &members()[i];
        member.kind.interpret()(200, &bodies[i], &member.query, "http://p")
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
    assert_eq!(split_members(&refused, &members()), Split::Rerun);
    let warned =
        r#"{"status":"success","warnings":["w"],"data":{"resultType":"vector","result":[]}}"#;
    assert_eq!(split_members(&http(warned), &members()), Split::Rerun);
    let stranger = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"shiftgate_batch_query":"9"},"value":[1,"1"]}]}}"#;
    assert_eq!(split_members(&http(stranger), &members()), Split::Rerun);
    assert_eq!(
        split_members(&RawAnswer::TimedOut, &members()),
        Split::Shared
    );
    let down = RawAnswer::Http {
        status: 503,
        body: b"upstream down".to_vec(),
    };
    assert_eq!(split_members(&down, &members()), Split::Shared);
}

/// A connection (never used to send: the address is a discard port).
fn connection(address: &str) -> Arc<Connection> {
    let spec: crate::policy::PrometheusSpec =
        serde_yaml_ng::from_str(&format!("address: '{address}'")).unwrap_or_else(|e| panic!("{e}"));
    crate::metrics::prometheus::PrometheusSource::new(None)
        .connect(Some(&spec))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ms(millis: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(millis)
}

#[test]
fn an_idle_connection_sends_at_the_next_window_and_a_busy_one_waits_for_the_spacing() {
    let spacing = ms(100);
    // Nothing sent yet, or the last instant a spacing or more ago: the window's instant.
    assert_eq!(next_instant(t(1_020), None, spacing), t(1_020));
    assert_eq!(
        next_instant(t(1_120), Some((t(1_020), true)), spacing),
        t(1_120)
    );
    assert_eq!(
        next_instant(t(5_000), Some((t(1_020), false)), spacing),
        t(5_000)
    );
    // Less than a spacing after the last instant: one spacing after it.
    assert_eq!(
        next_instant(t(1_040), Some((t(1_020), true)), spacing),
        t(1_120)
    );
    assert_eq!(
        next_instant(t(1_100), Some((t(1_020), false)), spacing),
        t(1_120)
    );
    // The last instant is still ahead and its batch open: join it (never earlier than
    // the window's).
    assert_eq!(
        next_instant(t(1_100), Some((t(1_120), false)), spacing),
        t(1_120)
    );
    assert_eq!(
        next_instant(t(1_120), Some((t(1_120), false)), spacing),
        t(1_120)
    );
    // Its batch has left (this evaluation's clock was read before it did): the next.
    assert_eq!(
        next_instant(t(1_120), Some((t(1_120), true)), spacing),
        t(1_220)
    );
    assert_eq!(
        next_instant(t(1_100), Some((t(1_120), true)), spacing),
        t(1_220)
    );
    // No spacing: today's windows.
    assert_eq!(
        next_instant(t(1_040), Some((t(1_020), true)), chrono::Duration::zero()),
        t(1_040)
    );
    // Overflow: the window's instant.
    let end = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    assert_eq!(next_instant(end, Some((end - ms(1), true)), spacing), end);
}

#[test]
fn instants_over_a_second_of_arrivals_are_at_most_one_per_spacing() {
    let batcher = Batcher::new(DEFAULT_WINDOW);
    let busy = connection("http://127.0.0.1:9");
    let mut instants = Vec::new();
    for i in 0..200 {
        let called = t(1_000 + i * 5);
        let at = batcher.reserve(&busy, called);
        assert!(at >= called && at - called <= ms(120), "{called} → {at}");
        instants.push(at);
    }
    instants.dedup();
    let spacing = ms(i64::try_from(MIN_SPACING.as_millis()).unwrap_or(i64::MAX));
    assert!(instants.windows(2).all(|w| w[1] - w[0] >= spacing));
    assert_eq!(instants.len(), 11, "{instants:?}");
    // A clock read before its window's batch left: the next instant, not a batch of its own.
    let late = connection("http://127.0.0.1:11");
    let at = batcher.reserve(&late, t(1_001));
    assert_eq!(batcher.reserve(&late, t(1_005)), at, "joins while open");
    let key = (Arc::as_ptr(&late) as usize, at.timestamp_millis());
    let (pending, _sender) = batcher.enter(key, &members());
    drop(Leave {
        batcher: &batcher,
        key,
        pending: &pending,
    });
    assert_eq!(batcher.reserve(&late, t(1_005)), at + ms(100));
    // Another connection is not held back by this one's.
    let other = connection("http://127.0.0.1:10");
    assert_eq!(batcher.reserve(&other, t(1_001)), t(1_020));
}

#[test]
fn a_full_batch_stays_until_its_instant_and_newcomers_open_another() {
    let batcher = Batcher::new(DEFAULT_WINDOW);
    let key = (1, 1_000);
    let many: Vec<Member> = (0..MAX_QUERIES)
        .map(|i| Member::plain(format!("sum(q{i})"), Kind::Value))
        .collect();
    let (first, sender) = batcher.enter(key, &many);
    assert!(sender.is_some(), "the first opens and sends");
    let (second, sender) = batcher.enter(key, &[Member::plain("sum(more)", Kind::Value)]);
    assert!(
        sender.is_some(),
        "past the cap: a batch of its own, same instant"
    );
    assert!(!Arc::ptr_eq(&first, &second));
    let (third, sender) = batcher.enter(key, &[Member::plain("sum(yet)", Kind::Value)]);
    assert!(
        sender.is_none() && Arc::ptr_eq(&second, &third),
        "joins the open one"
    );
}

#[test]
fn only_evaluations_with_a_built_in_template_or_request_count_take_an_instant() {
    use crate::metrics::batch_plan::may_batch;
    let spec = |metrics: &str, requests: &str| -> crate::policy::RolloutSpec {
        let yaml = format!(
            "revision: v2\nrouter: {{istio: {{virtualService: a, stable: {{host: a}}, canary: {{host: b}}}}}}\nsteps: [0, 100]\nanalysis:\n  interval: 10s\n  prometheus: {{address: 'http://p'}}\n{requests}  metrics: [{metrics}]\n"
        );
        serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"))
    };
    let template = "{name: e, template: istio-error-rate, max: 0.01}";
    let custom = "{name: c, query: 'sum(x)', max: 1}";
    let requests = "  requests: 'sum(r{a=\"{{ target.host }}\"})'\n";
    assert!(may_batch(&spec(template, "")));
    assert!(may_batch(&spec(template, requests)));
    assert!(may_batch(&spec(custom, "")), "the canary's request count");
    assert!(!may_batch(&spec(custom, requests)));
}

#[test]
fn every_builtins_grouped_query_is_valid_promql_keeping_the_target_labels() {
    use crate::metrics::builtin::{Matcher, BUILTINS};
    use crate::metrics::template::Template;
    use crate::metrics::variables::Variables;
    let policy = crate::metrics::PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    };
    let spec: crate::policy::RolloutSpec = serde_yaml_ng::from_str(
        "revision: v2\nrouter: {istio: {virtualService: a, stable: {host: a}, canary: {host: b}}}\nsteps: [0, 100]\nanalysis: {interval: 30s, metrics: []}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let vars = Variables::new(&policy, &spec);
    let matcher = vec![Matcher {
        label: "version".to_owned(),
        variable: "target.subset".to_owned(),
    }];
    for builtin in BUILTINS {
        let targets = builtin.family.target_matchers(&matcher);
        let labels: std::sync::Arc<[String]> = targets.iter().map(|m| m.label.clone()).collect();
        let q =
            builtin.grouped_queries(&labels.join(", "), &builtin.family.group_selector(&matcher));
        for text in [&q.value, &q.requests, &q.errors]
            .into_iter()
            .chain(&q.buckets)
        {
            let shape = Template::parse(builtin.name, text)
                .and_then(|t| t.render(&vars))
                .unwrap_or_else(|e| panic!("{e}"));
            // The first label's values need escaping; the others are `v0`, `v1`.
            let member = |first: &str, side: usize| {
                let values: Vec<String> = (0..labels.len())
                    .map(|k| match k {
                        0 => first.to_owned(),
                        _ => format!("v{side}"),
                    })
                    .collect();
                Member {
                    query: format!("{shape}{values:?}"),
                    kind: Kind::Value,
                    grouping: Grouping::new(shape.clone(), labels.clone(), values),
                }
            };
            let members = [member("a.shop", 0), member("b\"x", 1)];
            let planned = grouping::plan(&members);
            assert_eq!(planned.len(), 1, "{text}");
            let parsed = promql_parser::parser::parse(&planned[0].query)
                .unwrap_or_else(|e| panic!("{e}: {}", planned[0].query));
            assert_eq!(
                parsed.value_type(),
                promql_parser::parser::value::ValueType::Vector,
                "{}",
                planned[0].query
            );
            assert!(!planned[0].query.contains("<<"), "{}", planned[0].query);
            assert!(
                planned[0].query.contains(r#"=~"a\\.shop|b\"x""#),
                "{}",
                planned[0].query
            );
            if let Err(e) = promql_parser::parser::parse(&combined(&members)) {
                panic!("{e}");
            }
        }
    }
}

#[test]
fn grouped_members_count_once_against_the_cap() {
    let batcher = Batcher::new(DEFAULT_WINDOW);
    let key = (1, 1_000);
    let grouped = |i: usize| Member {
        query: format!("sum(q{{svc=\"s{i}\"}})"),
        kind: Kind::Value,
        grouping: Grouping::new(
            r#"sum by (svc) (q{svc=~"<<shiftgate group 0>>"})"#.to_owned(),
            std::sync::Arc::from(["svc".to_owned()]),
            vec![format!("s{i}")],
        ),
    };
    let many: Vec<Member> = (0..MAX_QUERIES * 4).map(grouped).collect();
    let (first, sender) = batcher.enter(key, &many);
    assert!(sender.is_some());
    let (second, sender) = batcher.enter(key, &[grouped(MAX_QUERIES * 4)]);
    assert!(
        sender.is_none() && Arc::ptr_eq(&first, &second),
        "one grouped query, far under the cap"
    );
    let more: Vec<Member> = (0..MAX_MEMBERS)
        .map(|i| grouped(i + MAX_QUERIES * 8))
        .collect();
    let (third, sender) = batcher.enter(key, &more);
    assert!(
        sender.is_some() && !Arc::ptr_eq(&first, &third),
        "past the member cap: a batch of its own"
    );
}
