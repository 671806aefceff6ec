//! Batched Prometheus queries (the daemon): the built-in templates' queries of every
//! evaluation that asks the same Prometheus connection at the same instant are sent as
//! ONE query, and its answer is split back per query.
//!
//! How the batch stays exact. Each member query is evaluated unchanged inside
//! `label_replace(<query>, "shiftgate_batch_query", "<i>", "", "")`, and the members are
//! joined with `or`: Prometheus evaluates every member exactly as it would alone (its own
//! selectors, windows, `or vector(0)`, `histogram_quantile`, its own counts range for the
//! sequential judges), and the label, distinct per member, keeps `or` from dropping any
//! series and says whose each series is. A member whose query answers no series gets
//! no series (no data, never 0), and no series can reach another member. Only the
//! built-in templates' queries (always an instant vector without that label) are
//! batched; custom `query:` metrics and `spec.analysis.requests` run per rollout. The
//! batch is sent as a POST form body (`post_raw`), so its length is no URL's problem.
//!
//! Grouped members. The same built-in query of several targets (the same template,
//! window or counts range and target labels: one shape) is one member of the batch, in
//! its grouped form, `sum by (<target labels>)` over `label=~"a|b|…"`, and its series are
//! handed to each target by their label values ([`super::grouping`], which says why the
//! numbers are the same). An instant of 10,000 rollouts' evaluations is then a handful
//! of members (one per shape) instead of hundreds of copies of one query.
//!
//! When: leading edge, then at most one instant per [`MIN_SPACING`] per connection.
//! An evaluation's instant is chosen before its queries are written ([`Batcher::reserve`]):
//! its clock reading rounded UP to the next multiple of the batch window (20 ms), when
//! the connection's last instant is at least [`MIN_SPACING`] older (a lone rollout in
//! the daemon waits for nothing more than that rounding, as before; `shiftgate run`, and
//! so `scripts/measure-rollback`, never batches);
//! otherwise the connection's next instant, `last + MIN_SPACING` (or the last one itself
//! while it is still ahead), which every evaluation arriving before it joins. That
//! instant is the one queried and the one the analysis is told (`AnalysisInput.at`), so
//! the sequential judges count exactly [since, at]; it is never earlier than the clock
//! reading and at most `MIN_SPACING` + one window later. The batch is sent at its
//! instant, never before (a full batch does not leave early: the data up to its instant
//! would not all be there yet); queries past [`MAX_QUERIES`] (a grouped query counts
//! once) or members past [`MAX_MEMBERS`] open another batch at the same instant. So
//! queries per second per connection are at most 1 / [`MIN_SPACING`] × ⌈queries per
//! instant / [`MAX_QUERIES`]⌉, whatever the number of rollouts: with built-in templates
//! only, a query per shape, so 10 a second up to 4,096 member queries per instant
//! (40,000 a second; 10,000 rollouts at a 10 s interval with two template metrics ask
//! ~4,000). (The cap is not raised for ungrouped members: an `or` chain's evaluation
//! grows faster than its members, docs/benchmarks.md.) The price: under load an
//! evaluation waits up to [`MIN_SPACING`] for its batch, holding its scheduler slot
//! (docs/architecture.md, "Batched Prometheus queries").
//!
//! Whom. Batches are per connection (address, credentials, CA, timeout: a policy's own
//! Secrets make a connection of its namespace), so no query is ever sent with another
//! namespace's credentials or to another Prometheus.
//!
//! Failures. A batch that times out or cannot reach Prometheus gives every member that
//! failure, with the member's own query in the message, as a query alone would. A batch
//! that Prometheus rejects (a bad query, too many samples, warnings) is re-run one query
//! at a time, so only the guilty query fails, with today's message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::sync::watch;

use super::grouping::{self, Grouping, Planned};
use super::prometheus::{Connection, RawAnswer};
use crate::analysis::sample::Sample;
use crate::policy::Timestamp;

/// The label that tells the members of a batch apart in its answer.
pub const BATCH_LABEL: &str = "shiftgate_batch_query";

/// Instants are multiples of this: evaluations within one window share a batch.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(20);

/// Between two instants of one connection at least this long: bounds batches per
/// second per connection (10) whatever the number of rollouts. A connection idle for
/// this long sends at the next window's instant without waiting more (leading edge).
/// Shorter would raise the bound; longer would hold busy evaluations (and their
/// scheduler slots) longer and delay a failing rollout's rollback by up to as much.
pub const MIN_SPACING: Duration = Duration::from_millis(100);

/// Queries in one batch at most (a grouped query counts once): bounds the query's size (~75 kB of PromQL), the
/// samples it loads and its evaluation time, which Prometheus 2.42 spends faster than
/// linearly in the members of an `or` chain (measured: 64 members 13 ms, 256 members
/// 0.17 s, 512 members 0.7 s; docs/benchmarks.md).
pub const MAX_QUERIES: usize = 256;

/// Member queries in one batch at most, grouped or not: bounds the grouped queries'
/// regexes (~40 bytes per member) and the answer's size.
pub const MAX_MEMBERS: usize = 4096;

/// Past this many connections with a recent instant, the stale ones are forgotten.
const PRUNE_LAST_AT: usize = 64;

/// Member queries of a failed batch re-run at once at most.
const MAX_CONCURRENT_RERUNS: usize = 16;

/// How a query's answer is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One number ([`super::prometheus::interpret`]).
    Value,
    /// One series per `le` ([`super::histogram::interpret_histogram`]).
    Histogram,
}

impl Kind {
    fn interpret(self) -> fn(u16, &[u8], &str, &str) -> Sample {
        match self {
            Kind::Value => super::prometheus::interpret,
            Kind::Histogram => super::histogram::interpret_histogram,
        }
    }
}

type Answers = HashMap<String, Sample>;

/// One query of an evaluation that may join a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub query: String,
    pub kind: Kind,
    /// How it may be asked together with the same query of other targets
    /// ([`super::grouping`]); `None`: only as it is.
    pub grouping: Option<Grouping>,
}

impl Member {
    /// A member that is only ever asked as it is.
    pub fn plain(query: impl Into<String>, kind: Kind) -> Member {
        Member {
            query: query.into(),
            kind,
            grouping: None,
        }
    }
}

/// Where a batch's sender publishes its answers.
type Publish = watch::Sender<Option<Arc<Answers>>>;

/// A batch still open for members.
struct Pending {
    members: Mutex<Members>,
    answers: watch::Receiver<Option<Arc<Answers>>>,
}

#[derive(Default)]
struct Members {
    queries: Vec<Member>,
    /// The queries already in `queries` (several rollouts may ask the same one).
    seen: HashSet<String>,
    /// The grouped shapes already in `queries` (a shape's text tells its kind): each is
    /// sent as one query ([`grouping::plan`]).
    shapes: HashSet<String>,
    /// The members of `queries` that are sent as they are.
    plain: usize,
    /// Taken by the sender: no member may join any more.
    closed: bool,
}

impl Pending {
    /// Adds `queries` unless the batch is closed or they would overfill it.
    fn join(&self, queries: &[Member]) -> bool {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let mut new_shapes: HashSet<&str> = HashSet::new();
        let more = queries
            .iter()
            .filter(|q| match &q.grouping {
                Some(g) => !members.shapes.contains(&g.shape) && new_shapes.insert(&g.shape),
                None => true,
            })
            .count();
        let fits = members.queries.is_empty()
            || (members.shapes.len() + members.plain + more <= MAX_QUERIES
                && members.queries.len() + queries.len() <= MAX_MEMBERS);
        if members.closed || !fits {
            return false;
        }
        for query in queries {
            if members.seen.insert(query.query.clone()) {
                match &query.grouping {
                    Some(g) if members.shapes.contains(&g.shape) => {}
                    Some(g) => {
                        members.shapes.insert(g.shape.clone());
                    }
                    None => members.plain += 1,
                }
                members.queries.push(query.clone());
            }
        }
        true
    }
}

/// (connection, instant in ms): the batches open now.
type Key = (usize, i64);

/// Collects the daemon's evaluations into batches; see the module docs.
pub struct Batcher {
    window_ms: i64,
    spacing: chrono::Duration,
    pending: Mutex<HashMap<Key, Arc<Pending>>>,
    /// Per connection, its latest instant handed out and whether its batch has left
    /// (and when to prune next).
    last: Mutex<Latest>,
}

#[derive(Default)]
struct Latest {
    instants: HashMap<usize, (Timestamp, bool)>,
    prune_at: usize,
}

impl Batcher {
    /// Instants every `window`, at most one per [`MIN_SPACING`] per connection.
    pub fn new(window: Duration) -> Batcher {
        Batcher::with_spacing(window, MIN_SPACING)
    }

    /// Instants every `window`, at most one per `spacing` per connection.
    pub fn with_spacing(window: Duration, spacing: Duration) -> Batcher {
        Batcher {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1),
            spacing: chrono::Duration::from_std(spacing).unwrap_or(chrono::Duration::zero()),
            pending: Mutex::new(HashMap::new()),
            last: Mutex::new(Latest::default()),
        }
    }

    /// The instant an evaluation whose clock read `called_at` queries on `connection`
    /// (see the module docs), noted as the connection's latest. Never earlier than
    /// `called_at`.
    pub fn reserve(&self, connection: &Arc<Connection>, called_at: Timestamp) -> Timestamp {
        let aligned = self.align(called_at);
        let key = Arc::as_ptr(connection) as usize;
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let instant = next_instant(aligned, last.instants.get(&key).copied(), self.spacing);
        last.instants.insert(key, (instant, false));
        if last.instants.len() > last.prune_at.max(PRUNE_LAST_AT) {
            // Those idle for a spacing no longer hold anyone back.
            let spacing = self.spacing;
            last.instants.retain(|_, (at, _)| {
                at.checked_add_signed(spacing)
                    .is_none_or(|end| end > aligned)
            });
            last.prune_at = last.instants.len().saturating_mul(2);
        }
        instant
    }

    /// The instant an evaluation at `at` queries: `at` rounded up to the next multiple
    /// of the window (never earlier than `at`; `at` itself when that overflows).
    pub fn align(&self, at: Timestamp) -> Timestamp {
        let mut millis = at.timestamp_millis();
        if !at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
            millis = millis.saturating_add(1);
        }
        let rest = millis.rem_euclid(self.window_ms);
        let aligned = if rest == 0 {
            Some(millis)
        } else {
            millis.checked_add(self.window_ms - rest)
        };
        aligned
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or(at)
    }

    /// Runs `queries` at `at` (the instant [`Batcher::reserve`] gave; `called_at` is when
    /// the evaluation asked) on `connection`, in a batch with every other evaluation's at
    /// that instant. The batch leaves at its instant (after `at - called_at`, at most a
    /// spacing and a window).
    pub async fn run(
        &self,
        connection: &Arc<Connection>,
        at: Timestamp,
        called_at: Timestamp,
        queries: Vec<Member>,
    ) -> Answers {
        let key = (Arc::as_ptr(connection) as usize, at.timestamp_millis());
        let (pending, sender) = self.enter(key, &queries);
        let answers = match sender {
            Some(sender) => {
                let guard = Leave {
                    batcher: self,
                    key,
                    pending: &pending,
                };
                let longest = Duration::from_millis(self.window_ms.unsigned_abs())
                    .saturating_add(self.spacing.to_std().unwrap_or_default());
                let wait = at
                    .signed_duration_since(called_at)
                    .to_std()
                    .unwrap_or_default()
                    .min(longest);
                tokio::time::sleep(wait).await;
                drop(guard);
                let members = {
                    let mut members = pending
                        .members
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    members.closed = true;
                    std::mem::take(&mut members.queries)
                };
                let answers = Arc::new(send(connection, at, &members).await);
                // Members that stopped waiting do not matter.
                let _ = sender.send(Some(Arc::clone(&answers)));
                Some(answers)
            }
            None => {
                let mut receiver = pending.answers.clone();
                let answered = receiver.wait_for(Option::is_some).await;
                answered.ok().and_then(|a| a.clone())
            }
        };
        match answers {
            Some(answers) => queries
                .into_iter()
                .map(|member| {
                    let sample = answers.get(&member.query).cloned();
                    let sample = sample.unwrap_or_else(|| lost(&member.query));
                    (member.query, sample)
                })
                .collect(),
            // The sender was cancelled (its reconcile ended): ask alone.
            None => rerun(connection, at, &queries).await,
        }
    }

    /// Joins the open batch of `key`, or opens one (and then sends it: the sender): when
    /// there is none, or it is full or already leaving.
    fn enter(&self, key: Key, queries: &[Member]) -> (Arc<Pending>, Option<Publish>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = pending.get(&key) {
            if open.join(queries) {
                return (Arc::clone(open), None);
            }
        }
        let (sender, answers) = watch::channel(None);
        let open = Arc::new(Pending {
            members: Mutex::new(Members::default()),
            answers,
        });
        open.join(queries);
        pending.insert(key, Arc::clone(&open));
        (open, Some(sender))
    }
}

/// The instant of an evaluation whose clock reading rounds up to `aligned`, when its
/// connection's latest instant is `last` (with whether its batch has left): `aligned`
/// after `spacing` of quiet (leading edge), else the latest instant while it is ahead
/// and its batch has not left (join it), else one `spacing` after it. (An evaluation
/// whose clock was read a while ago can find its window's batch gone: it takes the next
/// instant rather than a batch of its own.) Never earlier than `aligned`; `aligned` when
/// the addition overflows. Pure.
pub fn next_instant(
    aligned: Timestamp,
    last: Option<(Timestamp, bool)>,
    spacing: chrono::Duration,
) -> Timestamp {
    match last {
        Some((last, false)) if last >= aligned => last,
        Some((last, _)) => last
            .checked_add_signed(spacing)
            .map_or(aligned, |next| next.max(aligned)),
        None => aligned,
    }
}

/// Closes a batch to newcomers when its sender stops waiting, even when cancelled.
struct Leave<'a> {
    batcher: &'a Batcher,
    key: Key,
    pending: &'a Arc<Pending>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        {
            // Whoever reserves this instant from now on takes the next one.
            let mut last = self
                .batcher
                .last
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((at, sent)) = last.instants.get_mut(&self.key.0) {
                if at.timestamp_millis() == self.key.1 {
                    *sent = true;
                }
            }
        }
        let mut open = self
            .batcher
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open
            .get(&self.key)
            .is_some_and(|p| Arc::ptr_eq(p, self.pending))
        {
            open.remove(&self.key);
        }
    }
}

/// A query the batch's answer does not mention (cannot happen: every member is
/// classified); said as such rather than as a number.
fn lost(query: &str) -> Sample {
    Sample::Invalid {
        message: format!("query `{query}` was not answered by its batch"),
    }
}

/// The one PromQL query of a batch: every planned query ([`grouping::plan`]), labelled
/// with its index, joined by `or`.
pub(crate) fn combined_query(planned: &[Planned]) -> String {
    let mut out = String::new();
    for (i, one) in planned.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!(
            "label_replace({}, \"{BATCH_LABEL}\", \"{i}\", \"\", \"\")",
            one.query
        ));
    }
    out
}

/// Sends the batch and classifies its answer per member.
async fn send(connection: &Arc<Connection>, at: Timestamp, members: &[Member]) -> Answers {
    if let [member] = members {
        // Alone: the query as it is.
        let answer = connection.fetch(&member.query, at).await;
        let sample = connection.classify(&answer, &member.query, member.kind.interpret());
        return HashMap::from([(member.query.clone(), sample)]);
    }
    let planned = grouping::plan(members);
    let combined = combined_query(&planned);
    let answer = connection.fetch(&combined, at).await;
    tracing::debug!(
        members = members.len(),
        queries = planned.len(),
        address = %connection.address(),
        "prometheus batch"
    );
    match split(&answer, &planned, members.len(), connection.address()) {
        Split::PerMember(bodies) => members
            .iter()
            .zip(bodies)
            .map(|(member, body)| {
                (
                    member.query.clone(),
                    member.kind.interpret()(200, &body, &member.query, connection.address()),
                )
            })
            .collect(),
        Split::Rerun => rerun(connection, at, members).await,
        Split::Shared => members
            .iter()
            .map(|member| {
                (
                    member.query.clone(),
                    connection.classify(&answer, &member.query, member.kind.interpret()),
                )
            })
            .collect(),
    }
}

/// What a batch's answer means for its members.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Split {
    /// One answer body per member, as if it had been asked alone.
    PerMember(Vec<Vec<u8>>),
    /// Prometheus refused the batch (a member's query, its size, a warning): ask each
    /// member alone.
    Rerun,
    /// The same failure for every member (timeout, unreachable, an HTTP error).
    Shared,
}

/// Splits the answer of [`combined_query`] of `planned` (the plan of `members` members)
/// into one body per member. Pure.
pub(crate) fn split(
    answer: &RawAnswer,
    planned: &[Planned],
    members: usize,
    address: &str,
) -> Split {
    let RawAnswer::Http { status, body } = answer else {
        return Split::Shared;
    };
    match super::prometheus::result_data(*status, body, "batch", address) {
        Ok(prometheus_http_query::response::Data::Vector(_)) => {}
        Ok(_) => return Split::Rerun,
        Err(Sample::Invalid { .. }) if matches!(status, 200 | 400 | 422) => return Split::Rerun,
        Err(_) => return Split::Shared,
    }
    let Ok(mut envelope) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Split::Rerun;
    };
    let Some(series) = envelope
        .pointer_mut("/data/result")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return Split::Rerun;
    };
    let mut per_planned: Vec<Vec<serde_json::Value>> = vec![Vec::new(); planned.len()];
    for mut one in std::mem::take(series) {
        let index = one
            .get_mut("metric")
            .and_then(serde_json::Value::as_object_mut)
            .and_then(|labels| labels.remove(BATCH_LABEL))
            .and_then(|i| i.as_str().and_then(|i| i.parse::<usize>().ok()));
        match index.and_then(|i| per_planned.get_mut(i)) {
            Some(query) => query.push(one),
            // A series of no query: the answer cannot be trusted to be split right.
            None => return Split::Rerun,
        }
    }
    Split::PerMember(
        grouping::route(planned, per_planned, members)
            .into_iter()
            .map(|result| {
                serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "vector", "result": result}
                })
                .to_string()
                .into_bytes()
            })
            .collect(),
    )
}

/// Each query alone, a few at a time.
async fn rerun(connection: &Arc<Connection>, at: Timestamp, queries: &[Member]) -> Answers {
    let owned: Vec<(String, Kind)> = queries.iter().map(|m| (m.query.clone(), m.kind)).collect();
    let samples: Vec<Sample> = stream::iter(owned)
        .map(|(query, kind)| {
            let connection = Arc::clone(connection);
            async move {
                match kind {
                    Kind::Value => connection.query(&query, at).await,
                    Kind::Histogram => connection.query_histogram(&query, at).await,
                }
            }
        })
        .buffered(MAX_CONCURRENT_RERUNS)
        .collect()
        .await;
    queries
        .iter()
        .map(|m| m.query.clone())
        .zip(samples)
        .collect()
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
