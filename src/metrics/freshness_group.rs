//! The scrape phase shared by a group of rollouts (a child of `freshness`), so learning
//! it does not cost Prometheus a query per rollout: 10,000 rollouts each asking every
//! [`RELEARN`] were 10,000 range queries per 5 min.
//!
//! The key is (Prometheus connection, namespace, the request counter the canary's
//! phase is read from, e.g. `istio_requests_total`): the rollouts of one namespace
//! whose requests the same job scrapes through the same connection (with the same
//! credentials). The scrape *period* is the job's, so one raw-sample query per group
//! learns it; the *offset* is each target's own (Prometheus spreads its targets over
//! the period), so one instant query per group reads the newest sample's timestamp of
//! every member's series at once (`freshness_batch`: grouped by their labels, or one
//! `timestamp(…)` series per member, tagged). A
//! group costs two queries per [`RELEARN`], plus one when rollouts join it (at most
//! one per [`JOIN_WAIT`]: a rollout that joins in between is unaligned until then).
//! Pure: the answers come in.

use std::collections::HashMap;

use super::ScrapePhase;
use crate::policy::Timestamp;

/// How long a group's answer is kept. Prometheus keeps a target's scrape offset for as
/// long as it runs, so this only catches restarts and reconfigurations.
pub const RELEARN: chrono::Duration = chrono::Duration::minutes(5);

/// How long a rollout that joined a group waits for the group's next query at most.
pub const JOIN_WAIT: chrono::Duration = chrono::Duration::seconds(10);

/// What one member is known by.
#[derive(Clone, Copy, Debug, Default)]
struct Member {
    asked: Option<Timestamp>,
    /// The newest sample of its series at the group's last query (`Some(None)`: asked
    /// for, no series); `None`: not in a query yet.
    latest: Option<Option<Timestamp>>,
}

/// One group's learned phase and members (by their canary request selector).
#[derive(Debug, Default)]
pub struct PhaseGroup {
    /// When the group was last queried (or a query started).
    queried_at: Option<Timestamp>,
    /// The period and ingest margin learned then (`None`: not learned).
    period: Option<(chrono::Duration, chrono::Duration)>,
    members: HashMap<String, Member>,
}

/// What a member's question needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Known without a query (`None`: no phase, for now).
    Known(Option<ScrapePhase>),
    /// Query the group: learn the period from the asking member's raw samples when
    /// `period` (the group is stale), and read the newest sample of every one of
    /// `members` (selectors).
    Query { period: bool, members: Vec<String> },
}

impl PhaseGroup {
    /// `member` asks for its phase at `now`.
    pub fn ask(&mut self, member: &str, now: Timestamp) -> Ask {
        let entry = self.members.entry(member.to_owned()).or_default();
        entry.asked = Some(now);
        let known = entry.latest;
        let age = self
            .queried_at
            .map(|at| now.signed_duration_since(at).abs());
        let within = |limit: chrono::Duration| age.is_some_and(|age| age < limit);
        let learned = self.period.is_some();
        match known {
            Some(latest) if learned && within(RELEARN) => Ask::Known(self.phase(latest)),
            // Just queried (or a query is under way): the next one will tell.
            _ if within(JOIN_WAIT) => Ask::Known(None),
            // A join: the period is the group's.
            None if learned && within(RELEARN) => self.start(now, false),
            // Stale, or the period could not be learned (no samples yet, Prometheus
            // down): again, at most once per JOIN_WAIT.
            _ => self.start(now, true),
        }
    }

    /// Starts a query at `now`: members asked for within two [`RELEARN`]s (the others
    /// have left analysis or are gone, and are forgotten).
    fn start(&mut self, now: Timestamp, period: bool) -> Ask {
        let keep = RELEARN + RELEARN;
        self.members.retain(|_, m| {
            m.asked
                .is_some_and(|at| now.signed_duration_since(at).abs() < keep)
        });
        self.queried_at = Some(now);
        let mut members: Vec<String> = self.members.keys().cloned().collect();
        members.sort_unstable();
        Ask::Query { period, members }
    }

    /// The answer of a query started by [`PhaseGroup::ask`]: the period and ingest
    /// margin (when learned), and the newest sample of each member that has series.
    pub fn answer(
        &mut self,
        period: Option<Option<(chrono::Duration, chrono::Duration)>>,
        asked: &[String],
        latest: &HashMap<String, Timestamp>,
    ) {
        if let Some(period) = period {
            self.period = period;
        }
        for member in asked {
            if let Some(entry) = self.members.get_mut(member) {
                entry.latest = Some(latest.get(member).copied());
            }
        }
    }

    /// `member`'s phase as last learned.
    pub fn known(&self, member: &str) -> Option<ScrapePhase> {
        self.phase(self.members.get(member)?.latest?)
    }

    fn phase(&self, latest: Option<Timestamp>) -> Option<ScrapePhase> {
        let (period, ingest) = self.period?;
        Some(ScrapePhase {
            latest: latest?,
            period,
            ingest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_767_607_200 + secs, 0).unwrap_or_default()
    }

    fn answered(group: &mut PhaseGroup, ask: Ask, latest: &[(&str, i64)]) {
        let Ask::Query { period, members } = ask else {
            panic!("expected a query, got {ask:?}");
        };
        let second = chrono::Duration::seconds(1);
        let latest = latest
            .iter()
            .map(|(m, t)| ((*m).to_owned(), at(*t)))
            .collect();
        group.answer(
            period.then_some(Some((second, chrono::Duration::milliseconds(30)))),
            &members,
            &latest,
        );
    }

    #[test]
    fn a_group_queries_once_per_relearn_and_once_more_for_rollouts_that_join() {
        let mut group = PhaseGroup::default();
        let ask = group.ask("a", at(0));
        assert_eq!(
            ask,
            Ask::Query {
                period: true,
                members: vec!["a".to_owned()]
            }
        );
        answered(&mut group, ask, &[("a", -1)]);
        assert_eq!(
            group.ask("a", at(60)),
            Ask::Known(group.known("a")),
            "kept for RELEARN"
        );
        assert!(group.known("a").is_some());
        // `b` joins within JOIN_WAIT of the query: it waits for the next one.
        assert_eq!(group.ask("b", at(5)), Ask::Known(None));
        let ask = group.ask("b", at(20));
        assert_eq!(
            ask,
            Ask::Query {
                period: false,
                members: vec!["a".to_owned(), "b".to_owned()]
            }
        );
        answered(&mut group, ask, &[("a", 19), ("b", 19)]);
        assert_eq!(group.known("b").map(|p| p.latest), Some(at(19)));
        // `c` has no series: known as such until the group is relearned.
        let ask = group.ask("c", at(40));
        answered(&mut group, ask, &[("a", 39)]);
        assert_eq!(group.ask("c", at(50)), Ask::Known(None));
        // Stale: one query for everyone, with the period.
        let ask = group.ask("c", at(40 + 301));
        assert_eq!(
            ask,
            Ask::Query {
                period: true,
                members: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]
            }
        );
    }

    #[test]
    fn a_period_that_could_not_be_learned_is_asked_again_after_the_join_wait() {
        let mut group = PhaseGroup::default();
        let Ask::Query { members, .. } = group.ask("a", at(0)) else {
            panic!("a first query");
        };
        group.answer(Some(None), &members, &HashMap::new());
        assert_eq!(group.ask("a", at(5)), Ask::Known(None));
        assert_eq!(
            group.ask("a", at(11)),
            Ask::Query {
                period: true,
                members: vec!["a".to_owned()]
            }
        );
    }

    #[test]
    fn members_not_asked_for_two_relearns_are_forgotten() {
        let mut group = PhaseGroup::default();
        let ask = group.ask("old", at(0));
        answered(&mut group, ask, &[]);
        let ask = group.ask("new", at(601));
        assert_eq!(
            ask,
            Ask::Query {
                period: true,
                members: vec!["new".to_owned()]
            }
        );
    }
}
