//! Reading sample timestamps from Prometheus (a child of `prometheus`, which owns the
//! connection): the I/O half of [`crate::metrics::freshness`].

use super::*;
use crate::metrics::freshness::{learn, ScrapePhase};
use crate::metrics::queries::freshness_query;

impl Connection {
    /// The timestamps (milliseconds) of every raw sample `query` (a range selector)
    /// returns at `at`, per series; `None` on any failure (the phase stays unknown, which
    /// only means evaluations are not aligned to scrapes).
    pub async fn sample_times(&self, query: &str, at: Timestamp) -> Option<Vec<Vec<i64>>> {
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
        match result_data(status, &body, query, &self.address) {
            Ok(prometheus_http_query::response::Data::Matrix(series)) => Some(
                series
                    .iter()
                    .map(|s| {
                        s.samples()
                            .iter()
                            .map(|sample| (sample.timestamp() * 1000.0).round() as i64)
                            .collect()
                    })
                    .collect(),
            ),
            _ => None,
        }
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
        let query = freshness_query(policy, spec)?;
        let connection = self
            .connect_for(policy, spec.analysis.prometheus.as_ref())
            .await
            .ok()?;
        let times = connection.sample_times(&query, at).await?;
        let phase = learn(&times);
        tracing::debug!(query, ?phase, "scrape phase");
        phase
    }
}
