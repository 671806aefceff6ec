//! Grouped batch members: the same built-in query of many targets asked as ONE query
//! that keeps the labels telling the targets apart, and its answer split back per target.
//!
//! A built-in query of one target selects it with equality matchers on its target
//! labels (`destination_service="a",destination_version="v2"`) and sums over them. The
//! grouped form ([`super::builtin::Builtin::grouped_queries`]) selects every target of
//! the group with `=~"a|b|…"` on each of those labels and sums `by` them, so each
//! target's series is the sum over exactly the series its own query sums, in the same
//! order: the same number. `or vector(0)` becomes `or 0 * <the target's total>`, which
//! gives 0 to each target that served requests and nothing to one that served none, as
//! alone. The regexes select a cross product (target a's host with target b's version);
//! the series of pairs no member asked for are dropped, never handed to anyone.
//!
//! Only queries of the same shape (the same grouped text: template, window or counts
//! range, labels) are grouped, so members whose counts ranges differ stay apart. A
//! target with an empty label value is never grouped (`label=""` also selects series
//! without the label, which a regex alternative would not say the same way).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::batch::{Kind, Member};
use super::builtin::group_marker;
use super::escape::regex_alternatives;

/// How a built-in query of one target can be asked with the same query of others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    /// The grouped query, with a marker per target label ([`group_marker`]).
    pub shape: String,
    /// The target labels, in marker order (shared by every query of one target).
    pub labels: Arc<[String]>,
    /// This target's value of each label, in the same order.
    pub values: Vec<String>,
}

impl Grouping {
    /// A grouping of one target, unless a value is empty, a label is one the grouped
    /// query needs for itself, or a label comes twice (`targetLabels` naming the
    /// family's own label: its series could not be told apart).
    pub fn new(shape: String, labels: Arc<[String]>, values: Vec<String>) -> Option<Grouping> {
        let reserved = |l: &String| l == "le" || l == super::batch::BATCH_LABEL;
        let usable = !labels.is_empty()
            && labels.len() == values.len()
            && !labels.iter().any(reserved)
            && labels
                .iter()
                .enumerate()
                .all(|(i, l)| !labels[..i].contains(l))
            && values.iter().all(|v| !v.is_empty());
        usable.then_some(Grouping {
            shape,
            labels,
            values,
        })
    }
}

/// Whose answer one query of a batch is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// One member's query, as it is.
    One(usize),
    /// A grouped query: each answered series is the member with its label values.
    Group {
        labels: Arc<[String]>,
        members: HashMap<Vec<String>, usize>,
    },
}

/// One query of a batch as sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub query: String,
    pub kind: Kind,
    pub route: Route,
}

/// The queries that ask for `members`: each shape shared by two or more members as one
/// grouped query (at the place of its first member), every other member as it is.
pub(crate) fn plan(members: &[Member]) -> Vec<Planned> {
    let mut by_shape: HashMap<(&str, Kind), Vec<usize>> = HashMap::new();
    for (i, member) in members.iter().enumerate() {
        if let Some(grouping) = &member.grouping {
            by_shape
                .entry((grouping.shape.as_str(), member.kind))
                .or_default()
                .push(i);
        }
    }
    let mut planned = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let group = member
            .grouping
            .as_ref()
            .and_then(|g| by_shape.get(&(g.shape.as_str(), member.kind)))
            .filter(|group| group.len() > 1);
        match group {
            // Its group is sent at its first member's place.
            Some(group) if group.first() != Some(&i) => {}
            Some(group) => match grouped(members, group) {
                Some(one) => planned.push(one),
                None => planned.extend(group.iter().map(|&m| alone(members, m))),
            },
            None => planned.push(alone(members, i)),
        }
    }
    planned
}

fn alone(members: &[Member], i: usize) -> Planned {
    Planned {
        query: members[i].query.clone(),
        kind: members[i].kind,
        route: Route::One(i),
    }
}

/// The grouped query of `group` (indexes into `members`, all of one shape and kind).
fn grouped(members: &[Member], group: &[usize]) -> Option<Planned> {
    let first = members.get(*group.first()?)?.grouping.as_ref()?;
    let mut query = first.shape.clone();
    for index in 0..first.labels.len() {
        let values = group
            .iter()
            .map(|&m| {
                let grouping = members[m].grouping.as_ref()?;
                grouping.values.get(index).map(String::as_str)
            })
            .collect::<Option<Vec<&str>>>()?;
        query = query.replace(&group_marker(index), &regex_alternatives(values));
    }
    let members_by_values = group
        .iter()
        .filter_map(|&m| Some((members[m].grouping.as_ref()?.values.clone(), m)))
        .collect();
    Some(Planned {
        query,
        kind: members[group[0]].kind,
        route: Route::Group {
            labels: Arc::clone(&first.labels),
            members: members_by_values,
        },
    })
}

/// Hands the series answering each planned query (`per_planned`, in plan order) to the
/// members they belong to: a grouped query's series to the member with its values, less
/// the group's labels (so each member gets the series its own query gives); series of
/// value tuples no member asked for are dropped.
pub(crate) fn route(
    planned: &[Planned],
    per_planned: Vec<Vec<Value>>,
    members: usize,
) -> Vec<Vec<Value>> {
    let mut per_member: Vec<Vec<Value>> = vec![Vec::new(); members];
    for (planned, series) in planned.iter().zip(per_planned) {
        match &planned.route {
            Route::One(m) => {
                if let Some(slot) = per_member.get_mut(*m) {
                    slot.extend(series);
                }
            }
            Route::Group { labels, members } => {
                for mut one in series {
                    let Some(metric) = one.get_mut("metric").and_then(Value::as_object_mut) else {
                        continue;
                    };
                    let values: Option<Vec<String>> = labels
                        .iter()
                        .map(|l| match metric.remove(l) {
                            Some(Value::String(v)) => Some(v),
                            _ => None,
                        })
                        .collect();
                    let owner = values.and_then(|v| members.get(&v));
                    if let Some(slot) = owner.and_then(|&m| per_member.get_mut(m)) {
                        slot.push(one);
                    }
                }
            }
        }
    }
    per_member
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(query: &str, shape: Option<(&str, &[&str])>) -> Member {
        Member {
            query: query.to_owned(),
            kind: Kind::Value,
            grouping: shape.and_then(|(shape, values)| {
                Grouping::new(
                    shape.to_owned(),
                    Arc::from(["svc".to_owned(), "ver".to_owned()]),
                    values.iter().map(|v| (*v).to_owned()).collect(),
                )
            }),
        }
    }

    const SHAPE: &str =
        r#"sum by (svc, ver) (x{svc=~"<<shiftgate group 0>>",ver=~"<<shiftgate group 1>>"})"#;

    #[test]
    fn members_of_one_shape_are_one_query_with_escaped_alternatives() {
        let members = [
            member("sum(x{a})", Some((SHAPE, &["a.b", "v2"]))),
            member("sum(y)", None),
            member("sum(x{c})", Some((SHAPE, &["c|d", "v2"]))),
        ];
        let planned = plan(&members);
        assert_eq!(planned.len(), 2);
        assert_eq!(
            planned[0].query,
            r#"sum by (svc, ver) (x{svc=~"a\\.b|c\\|d",ver=~"v2"})"#
        );
        assert_eq!(planned[1].query, "sum(y)");
        assert_eq!(planned[1].route, Route::One(1));
    }

    #[test]
    fn a_lone_member_of_its_shape_is_sent_as_it_is() {
        let members = [
            member("sum(x{a})", Some((SHAPE, &["a", "v2"]))),
            member("sum(z)", Some(("other", &["a", "v2"]))),
        ];
        let planned = plan(&members);
        assert_eq!(
            planned.iter().map(|p| p.query.as_str()).collect::<Vec<_>>(),
            ["sum(x{a})", "sum(z)"]
        );
    }

    #[test]
    fn an_empty_value_a_reserved_label_or_a_label_twice_is_never_grouped() {
        let labels = |l: &[&str]| l.iter().map(|l| (*l).to_owned()).collect::<Arc<[String]>>();
        assert!(Grouping::new("s".into(), labels(&["svc"]), vec![String::new()]).is_none());
        assert!(Grouping::new("s".into(), labels(&["le"]), vec!["a".into()]).is_none());
        assert!(Grouping::new("s".into(), labels(&[]), vec![]).is_none());
        let twice = labels(&["svc", "svc"]);
        assert!(Grouping::new("s".into(), twice, vec!["a".into(), "a".into()]).is_none());
    }

    #[test]
    fn grouped_series_reach_their_member_only_and_lose_the_group_labels() {
        let members = [
            member("sum(x{a})", Some((SHAPE, &["a", "v2"]))),
            member("sum(x{b})", Some((SHAPE, &["b", "v1"]))),
            member("sum(y)", None),
        ];
        let planned = plan(&members);
        let series = |svc: &str, ver: &str, v: &str| json!({"metric": {"svc": svc, "ver": ver, "le": "1"}, "value": [1, v]});
        let answers = vec![
            vec![
                series("a", "v2", "1"),
                // The cross product's pairs nobody asked for.
                series("a", "v1", "2"),
                series("b", "v2", "3"),
                series("b", "v1", "4"),
                json!({"metric": {"svc": "b"}, "value": [1, "5"]}),
            ],
            vec![json!({"metric": {}, "value": [1, "6"]})],
        ];
        let routed = route(&planned, answers, members.len());
        let value = |m: &Value| m["value"][1].as_str().unwrap().to_owned();
        assert_eq!(routed[0].iter().map(value).collect::<Vec<_>>(), ["1"]);
        assert_eq!(routed[1].iter().map(value).collect::<Vec<_>>(), ["4"]);
        assert_eq!(routed[2].iter().map(value).collect::<Vec<_>>(), ["6"]);
        assert_eq!(routed[0][0]["metric"], json!({"le": "1"}));
    }
}
