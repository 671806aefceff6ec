//! The instant queries that read the newest sample of every member of a phase group (a
//! child of `freshness`), and how their answers are read back per member. Pure.
//!
//! A member is the selector of its canary's request counter, as shiftgate writes it
//! (`istio_requests_total{reporter="destination",destination_service="a…",…}`: every
//! matcher an equality). Members whose selectors name the same counter and the same
//! labels (every rollout of a group, normally) are asked together in grouped form,
//! `max by (<labels>) (timestamp(<counter>{<label>=~"<their values>",…}))`, up to
//! [`GROUPED_PER_QUERY`] members per query: each member's series under the regexes are
//! exactly those its own equalities select, so the maximum per label tuple is the newest
//! sample the member alone gives; tuples of the regexes' cross product that no member
//! asked for are dropped. Any other member is asked alone in the query,
//! `timestamp(<selector>)`, at most [`SINGLES_PER_QUERY`] per query (an `or` chain costs
//! Prometheus more than linear time in its length). Before grouping, a group of 10,000
//! rollouts cost 50 queries each time its members were read (every 10 s while a period
//! could not be learned); now it costs 3.

use std::collections::HashMap;

use crate::metrics::escape::regex_alternatives;

/// The label each series of a batch is tagged with: whose it is.
pub const MEMBER_LABEL: &str = "shiftgate_member";
/// The tag of the scrape durations in a batch.
pub const DURATION_TAG: &str = "scrape_duration";

/// Members asked alone (`timestamp(<selector>)`) in one query at most.
const SINGLES_PER_QUERY: usize = 200;
/// Members asked in grouped form in one query at most (bounds its regexes: ~40 bytes
/// per member).
const GROUPED_PER_QUERY: usize = 4096;

/// A member selector with its values of a shape's labels.
type Valued = (String, Vec<String>);

/// A counter and its label names: members of one shape are grouped.
type Shape = (String, Vec<String>);

/// A grouped sub-query's labels, and each of its members by its values of them.
type Grouped = (Vec<String>, HashMap<Vec<String>, String>);

/// One instant query of a group's members and whose each of its series is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TimestampBatch {
    pub query: String,
    /// Tag → the member asked alone under it.
    singles: HashMap<String, String>,
    /// Tag → the grouped labels, and each member by its values of them.
    groups: HashMap<String, Grouped>,
    parts: Vec<String>,
}

impl TimestampBatch {
    fn add(&mut self, tag: &str, expression: &str) {
        self.parts.push(format!(
            r#"label_replace({expression}, "{MEMBER_LABEL}", "{tag}", "", "")"#
        ));
    }

    fn single(&mut self, member: &str) {
        let tag = self.singles.len().to_string();
        self.add(&tag, &format!("timestamp({member})"));
        self.singles.insert(tag, member.to_owned());
    }

    fn group(&mut self, counter: &str, labels: &[String], members: &[Valued]) {
        let mut matchers = Vec::with_capacity(labels.len());
        for (index, label) in labels.iter().enumerate() {
            let values = members.iter().map(|(_, own)| own[index].as_str());
            matchers.push(format!(r#"{label}=~"{}""#, regex_alternatives(values)));
        }
        let tag = format!("g{}", self.groups.len());
        self.add(
            &tag,
            &format!(
                "max by ({}) (timestamp({counter}{{{}}}))",
                labels.join(", "),
                matchers.join(",")
            ),
        );
        let by_values = members
            .iter()
            .map(|(member, values)| (values.clone(), member.clone()))
            .collect();
        self.groups.insert(tag, (labels.to_vec(), by_values));
    }

    fn finish(mut self) -> TimestampBatch {
        self.query = self.parts.join(" or ");
        self.parts = Vec::new();
        self
    }

    /// The newest sample (seconds) of each member with series in this batch's answer
    /// (`series`: each series' labels and value), and the longest scrape duration when
    /// the batch asked for it.
    pub fn read(
        &self,
        series: &[(HashMap<String, String>, f64)],
    ) -> (HashMap<String, f64>, Option<f64>) {
        let mut newest: HashMap<String, f64> = HashMap::new();
        let mut duration: Option<f64> = None;
        for (labels, value) in series {
            if !value.is_finite() {
                continue;
            }
            let Some(tag) = labels.get(MEMBER_LABEL) else {
                continue;
            };
            let member = match (self.singles.get(tag), self.groups.get(tag)) {
                (Some(member), _) => Some(member),
                (None, Some((grouped, members))) => grouped
                    .iter()
                    .map(|l| labels.get(l).cloned())
                    .collect::<Option<Vec<String>>>()
                    .and_then(|values| members.get(&values)),
                (None, None) => {
                    if tag == DURATION_TAG {
                        duration = Some(duration.map_or(*value, |d| d.max(*value)));
                    }
                    None
                }
            };
            if let Some(member) = member {
                let slot = newest.entry(member.clone()).or_insert(*value);
                *slot = slot.max(*value);
            }
        }
        (newest, duration)
    }
}

/// The queries that read the newest sample of every one of `members` (selectors); the
/// first also reads the longest `scrape_duration_seconds` over
/// [`super::LEARN_RANGE`] of the scrape targets `durations` names (`job`, `instance`
/// matchers, already escaped), tagged [`DURATION_TAG`].
pub fn timestamp_batches(members: &[String], durations: Option<&str>) -> Vec<TimestampBatch> {
    // (counter, labels) → its members with their values, in order of first appearance.
    let mut shapes: Vec<(Shape, Vec<Valued>)> = Vec::new();
    let mut singles: Vec<&String> = Vec::new();
    for member in members {
        let Some((counter, matchers)) = parse_selector(member) else {
            singles.push(member);
            continue;
        };
        let (labels, values): (Vec<String>, Vec<String>) = matchers.into_iter().unzip();
        let key = (counter, labels);
        match shapes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push((member.clone(), values)),
            None => shapes.push((key, vec![(member.clone(), values)])),
        }
    }
    let mut batches = Vec::new();
    let mut current = TimestampBatch::default();
    let mut grouped = 0;
    for ((counter, labels), group) in &shapes {
        if let [(member, _)] = group.as_slice() {
            singles.push(member);
            continue;
        }
        for chunk in group.chunks(GROUPED_PER_QUERY) {
            if grouped > 0 && grouped + chunk.len() > GROUPED_PER_QUERY {
                batches.push(std::mem::take(&mut current).finish());
                grouped = 0;
            }
            current.group(counter, labels, chunk);
            grouped += chunk.len();
        }
    }
    if grouped > 0 {
        batches.push(current.finish());
    }
    for chunk in singles.chunks(SINGLES_PER_QUERY) {
        let mut batch = TimestampBatch::default();
        for member in chunk {
            batch.single(member);
        }
        batches.push(batch.finish());
    }
    if let (Some(targets), Some(first)) = (durations, batches.first_mut()) {
        let expression = format!(
            "max_over_time(scrape_duration_seconds{{{targets}}}[{}])",
            super::LEARN_RANGE
        );
        first.query.push_str(&format!(
            r#" or label_replace({expression}, "{MEMBER_LABEL}", "{DURATION_TAG}", "", "")"#
        ));
    }
    batches
}

/// The counter and the matchers of a selector written as shiftgate writes them:
/// `name{label="value",…}`, every matcher an equality with a non-empty value, each label
/// once, values escaped as PromQL double-quoted strings. `None` for anything else.
pub fn parse_selector(selector: &str) -> Option<(String, Vec<(String, String)>)> {
    let (counter, rest) = selector.split_once('{')?;
    let body = rest.strip_suffix('}')?;
    let is_name = |s: &str, colon: bool| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    if !is_name(counter, true) {
        return None;
    }
    let mut matchers: Vec<(String, String)> = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let label: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if !is_name(&label, false) || matchers.iter().any(|(l, _)| *l == label) {
            return None;
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => value.push(match chars.next()? {
                    '\\' => '\\',
                    '"' => '"',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => {
                        let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                    }
                    _ => return None,
                }),
                c => value.push(c),
            }
        }
        if value.is_empty() {
            return None;
        }
        matchers.push((label, value));
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return None,
        }
    }
    (!matchers.is_empty()).then(|| (counter.to_owned(), matchers))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::escape;

    fn selector(host: &str, version: &str) -> String {
        let quote = |v: &str| escape::string_content(v, '"').unwrap();
        format!(
            r#"istio_requests_total{{reporter="destination",destination_service="{}",destination_version="{}"}}"#,
            quote(host),
            quote(version)
        )
    }

    #[test]
    fn selectors_written_by_shiftgate_parse_back_to_their_values() {
        for value in ["a.shop.svc", "we\"ird\\\n\tvalue\u{1}", "ünï|.*"] {
            let (counter, matchers) = parse_selector(&selector(value, "v2")).unwrap();
            assert_eq!(counter, "istio_requests_total");
            assert_eq!(
                matchers[1],
                ("destination_service".to_owned(), value.to_owned())
            );
        }
        for other in [
            "a",
            "a{}",
            r#"a{x=~"1"}"#,
            r#"a{x!="1"}"#,
            r#"a{x=""}"#,
            r#"a{x="1",x="2"}"#,
            r#"a{x="1"} or b"#,
            r#"sum(a){x="1"}"#,
        ] {
            assert_eq!(parse_selector(other), None, "{other}");
        }
    }

    #[test]
    fn members_of_one_counter_and_labels_are_one_grouped_query() {
        let members: Vec<String> = (0..450)
            .map(|i| selector(&format!("app-{i}.shop"), "v2"))
            .chain(["up{job=~\"x\"}".to_owned()])
            .collect();
        let batches = timestamp_batches(&members, Some(r#"job="mesh""#));
        assert_eq!(
            batches.len(),
            2,
            "one grouped query, one for the odd member"
        );
        assert!(batches[0].query.starts_with(
            r#"label_replace(max by (reporter, destination_service, destination_version) (timestamp(istio_requests_total{reporter=~"destination",destination_service=~"app-0\\.shop|app-1\\.shop|"#
        ));
        assert!(batches[0]
            .query
            .contains(r#""shiftgate_member", "scrape_duration""#));
        assert_eq!(
            batches[1].query,
            r#"label_replace(timestamp(up{job=~"x"}), "shiftgate_member", "0", "", "")"#
        );
        if let Err(e) = promql_parser::parser::parse(&batches[0].query) {
            panic!("{e}");
        }
    }

    #[test]
    fn grouped_series_are_read_back_per_member_and_strangers_are_dropped() {
        let members = vec![
            selector("a", "v2"),
            selector("b", "v2"),
            selector("c", "v1"),
        ];
        let batches = timestamp_batches(&members, Some(r#"job="mesh""#));
        assert_eq!(batches.len(), 1);
        let series = |tag: &str, host: &str, version: &str, at: f64| {
            let labels = [
                (MEMBER_LABEL, tag),
                ("reporter", "destination"),
                ("destination_service", host),
                ("destination_version", version),
            ]
            .into_iter()
            .map(|(l, v)| (l.to_owned(), v.to_owned()))
            .collect();
            (labels, at)
        };
        let answer = vec![
            series("g0", "a", "v2", 10.0),
            series("g0", "b", "v2", 12.0),
            // The cross product: asked by nobody.
            series("g0", "a", "v1", 99.0),
            series("g0", "c", "v2", 98.0),
            series("g0", "c", "v1", f64::NAN),
            (
                [(MEMBER_LABEL.to_owned(), DURATION_TAG.to_owned())].into(),
                0.25,
            ),
        ];
        let (newest, duration) = batches[0].read(&answer);
        assert_eq!(newest.len(), 2, "{newest:?}");
        assert_eq!(newest[&members[0]], 10.0);
        assert_eq!(newest[&members[1]], 12.0);
        assert_eq!(duration, Some(0.25));
    }

    #[test]
    fn members_asked_alone_keep_their_tags() {
        let members = vec!["up{job=~\"x\"}".to_owned(), "a{x=\"1\"}".to_owned()];
        let batches = timestamp_batches(&members, Some(r#"job="envoy",instance="127.0.0.1:9901""#));
        assert_eq!(
            batches.iter().map(|b| b.query.as_str()).collect::<Vec<_>>(),
            [
                r#"label_replace(timestamp(up{job=~"x"}), "shiftgate_member", "0", "", "") or label_replace(timestamp(a{x="1"}), "shiftgate_member", "1", "", "") or label_replace(max_over_time(scrape_duration_seconds{job="envoy",instance="127.0.0.1:9901"}[30s]), "shiftgate_member", "scrape_duration", "", "")"#
            ]
        );
        let tagged = |tag: &str, at: f64| ([(MEMBER_LABEL.to_owned(), tag.to_owned())].into(), at);
        let (newest, _) = batches[0].read(&[tagged("1", 5.0), tagged("1", 7.0), tagged("0", 3.0)]);
        assert_eq!(newest[&members[1]], 7.0);
        assert_eq!(newest[&members[0]], 3.0);
    }
}
