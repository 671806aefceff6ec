//! Reading sample timestamps from Prometheus (a child of `prometheus`, which owns the
//! connection): the I/O half of [`crate::metrics::freshness`]. The phase is learned per
//! group of rollouts ([`PhaseGroup`], whose module says which key and why): a raw-sample
//! query for the group's period, one instant query for every member's newest sample
//! and the targets' scrape durations.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::metrics::freshness::{
    ingest_margin, learn, timestamp_batches, Ask, PhaseGroup, ScrapePhase, LEARN_RANGE,
};
use crate::metrics::queries::freshness_query;

/// Scrape phases per group of rollouts, shared by every policy of one source.
#[derive(Debug, Default)]
pub struct SharedPhases {
    groups: Mutex<HashMap<GroupKey, PhaseGroup>>,
    queries: AtomicU64,
}

impl SharedPhases {
    /// The queries sent to learn phases so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// (connection, namespace, request counter): see `freshness_group`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct GroupKey {
    /// The connection's identity: connections (with their credentials) are built once
    /// and kept, so two policies share one only when they reach Prometheus alike.
    connection: usize,
    namespace: String,
    counter: String,
}

/// One raw series: its labels and its samples' timestamps (milliseconds).
type RawSeries = (HashMap<String, String>, Vec<i64>);

impl Connection {
    /// The answer to the instant query `query` at `at`; `None` on any failure (the
    /// phase stays unknown, which only means evaluations are not aligned to scrapes).
    async fn instant_data(
        &self,
        query: &str,
        at: Timestamp,
    ) -> Option<prometheus_http_query::response::Data> {
        let time = format!("{}.{:03}", at.timestamp(), at.timestamp_subsec_millis());
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let request = self
            .client
            .query(query)
            .query("time", time)
            .timeout(timeout_ms);
        let answer = async {
            let response = request.post_raw().await.ok()?;
            let status = response.status().as_u16();
            let body = response.bytes().await.ok()?;
            Some((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, answer).await.ok()??;
        result_data(status, &body, query, &self.address).ok()
    }

    /// Every raw sample `query` (a range selector) returns at `at`, per series.
    async fn raw_series(&self, query: &str, at: Timestamp) -> Option<Vec<RawSeries>> {
        match self.instant_data(query, at).await? {
            prometheus_http_query::response::Data::Matrix(series) => Some(
                series
                    .iter()
                    .map(|s| {
                        let times = s
                            .samples()
                            .iter()
                            .map(|sample| (sample.timestamp() * 1000.0).round() as i64)
                            .collect();
                        (s.metric().clone(), times)
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The labels and value of every series of an instant query's answer.
    async fn labelled_values(
        &self,
        query: &str,
        at: Timestamp,
    ) -> Option<Vec<(HashMap<String, String>, f64)>> {
        let prometheus_http_query::response::Data::Vector(series) =
            self.instant_data(query, at).await?
        else {
            return None;
        };
        Some(
            series
                .iter()
                .map(|s| (s.metric().clone(), s.sample().value()))
                .collect(),
        )
    }
}

impl PrometheusSource {
    /// See [`MetricSource::scrape_phase`].
    pub(super) async fn learn_scrape_phase(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
    ) -> Option<ScrapePhase> {
        let range = freshness_query(policy, spec)?;
        // The member's instant selector: the range selector without its range.
        let selector = range.strip_suffix(&format!("[{LEARN_RANGE}]"))?.to_owned();
        let connection = self
            .connect_for(policy, spec.analysis.prometheus.as_deref())
            .await
            .ok()?;
        let key = GroupKey {
            connection: Arc::as_ptr(&connection) as usize,
            namespace: policy.namespace.clone(),
            counter: selector.split('{').next().unwrap_or_default().to_owned(),
        };
        let ask = {
            let mut groups = self.phases.groups.lock().ok()?;
            groups.entry(key.clone()).or_default().ask(&selector, at)
        };
        let (period, members) = match ask {
            Ask::Known(phase) => return phase,
            Ask::Query { period, members } => (period, members),
        };
        let learned = match period {
            true => Some(self.learn_period(&connection, &range, at).await),
            false => None,
        };
        let targets = learned
            .as_ref()
            .and_then(|l| l.as_ref())
            .and_then(|(_, targets)| targets.clone());
        let mut latest = HashMap::new();
        let mut longest_scrape: Option<f64> = None;
        for batch in timestamp_batches(&members, targets.as_deref()) {
            self.phases.queries.fetch_add(1, Ordering::Relaxed);
            let Some(series) = connection.labelled_values(&batch.query, at).await else {
                continue;
            };
            let (newest, duration) = batch.read(&series);
            for (member, seconds) in newest {
                if let Some(time) = timestamp_of(seconds) {
                    latest.insert(member, time);
                }
            }
            if duration.is_some() {
                longest_scrape = duration;
            }
        }
        // The asking member's newest sample is in its raw samples, should the batch fail.
        if let Some(Some((phase, _))) = &learned {
            latest.entry(selector.clone()).or_insert(phase.latest);
        }
        let period = learned.map(|l| {
            l.map(|(phase, _)| (phase.period, ingest_margin(longest_scrape, phase.period)))
        });
        let mut groups = self.phases.groups.lock().ok()?;
        let group = groups.entry(key).or_default();
        group.answer(period, &members, &latest);
        let phase = group.known(&selector);
        tracing::debug!(selector, ?phase, members = members.len(), "scrape phase");
        phase
    }

    /// The period from `range`'s raw samples, with the scrape targets (`job` and
    /// `instance` matchers) whose durations tell the ingest margin.
    async fn learn_period(
        &self,
        connection: &Connection,
        range: &str,
        at: Timestamp,
    ) -> Option<(ScrapePhase, Option<String>)> {
        self.phases.queries.fetch_add(1, Ordering::Relaxed);
        let series = connection.raw_series(range, at).await?;
        let times: Vec<Vec<i64>> = series.iter().map(|(_, t)| t.clone()).collect();
        let phase = learn(&times)?;
        let targets = series
            .iter()
            .filter_map(|(labels, _)| {
                let job = escape::string_content(labels.get("job")?, '"').ok()?;
                let instance = escape::string_content(labels.get("instance")?, '"').ok()?;
                Some(format!(r#"job="{job}",instance="{instance}""#))
            })
            .next();
        Some((phase, targets))
    }

    /// The queries sent to learn scrape phases so far.
    pub fn phase_queries(&self) -> u64 {
        self.phases.queries()
    }
}

fn timestamp_of(seconds: f64) -> Option<Timestamp> {
    if !seconds.is_finite() {
        return None;
    }
    chrono::DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64)
}
